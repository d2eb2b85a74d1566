"""What the training loop reads from an environment before tracing: its spaces, info keys and factors.

Action factors (``env.action_dims(params)``, e.g. MultiUAV's ``(5, 5, 5, 5)``) and, optionally, what
each factor's choice does to the observation (``env.afterstate_observations(obs, params)`` ->
``[sum_i n_i, *obs_shape]``: row ``offset_i + m`` is ``obs`` after choice ``m`` of factor ``i`` alone,
the rows in the branch order of :func:`dtrl_jax.agents.networks.split_branches`) are read here and
handed to the agent as plain values / a function of the observation, so agents import no env code.

``inspect_env`` runs nothing: it reads the spaces and traces ``reset``/``step`` abstractly
(``jax.eval_shape``). It lives with the environments (it imports no agent, twin or loop code), so the
loop, the memory estimate and the benchmarks share one reading.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

#: What a built-in environment's ``step_env`` accepts as its action (gymnax passes ints, floats or arrays).
Action = int | float | jax.Array
#: ``step_env``'s result in gymnax's order: ``(obs, state, reward, terminated, info)``.
StepResult = tuple[Any, Any, jax.Array, jax.Array, dict[str, Any]]


@struct.dataclass
class EnvSpec:
    """What the loop needs to know about an environment, read once before tracing."""

    num_actions: int = struct.field(pytree_node=False)
    num_states: int | None = struct.field(pytree_node=False)
    obs_shape: tuple = struct.field(pytree_node=False)
    obs_dtype: Any = struct.field(pytree_node=False)
    has_violation: bool = struct.field(pytree_node=False)
    name: str = struct.field(pytree_node=False)
    can_observe: bool = struct.field(pytree_node=False)
    action_dims: tuple | None = struct.field(pytree_node=False, default=None)
    afterstates: Callable[[Any], jax.Array] | None = struct.field(pytree_node=False, default=None)
    """``obs -> [sum_i n_i, *obs_shape]`` single-factor afterstate observations (the env's
    ``afterstate_observations`` with the params given to :func:`inspect_env`), or None."""

    def obs_example(self):
        return jnp.zeros(self.obs_shape, self.obs_dtype)


def inspect_env(env, env_params) -> EnvSpec:
    """Read spaces and the ``info`` keys of ``env`` (abstractly, without running it)."""
    name = getattr(env, "name", type(env).__name__)
    action_space = env.action_space(env_params)
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(
            f"env {name!r} has action space {action_space!r}; Q-learning and DQN need a "
            "gymnax spaces.Discrete action space"
        )
    obs_space = env.observation_space(env_params)
    num_states = int(obs_space.n) if isinstance(obs_space, spaces.Discrete) else None
    key = jax.random.key(0)
    obs, state = jax.eval_shape(env.reset, key, env_params)
    out = jax.eval_shape(env.step, key, state, jnp.int32(0), env_params)
    info = out[5]
    try:  # can the twin re-read observations from (noisy) states?
        jax.eval_shape(lambda s: env.get_obs(s, env_params), state)
        can_observe = True
    except Exception:  # noqa: BLE001 - any failure means: no usable get_obs
        can_observe = False
    action_dims = tuple(env.action_dims(env_params)) if callable(getattr(env, "action_dims", None)) else None
    afterstates = _read_afterstates(env, env_params, name, obs, action_dims)
    return EnvSpec(
        num_actions=int(action_space.n),
        num_states=num_states,
        obs_shape=tuple(obs.shape),
        obs_dtype=obs.dtype,
        has_violation="violation" in info,
        name=str(name),
        can_observe=can_observe,
        action_dims=action_dims,
        afterstates=afterstates,
    )


def _read_afterstates(env, env_params, name: str, obs, action_dims):
    """``env.afterstate_observations`` bound to ``env_params`` (None if the env has none), its output
    shape checked abstractly against the factors and the observation."""
    method = getattr(env, "afterstate_observations", None)
    if not callable(method):
        return None
    if action_dims is None:
        raise ValueError(
            f"env {name!r} declares afterstate_observations but no action_dims(params); the afterstate "
            "rows are indexed by (factor, choice), so expected both"
        )
    fn = partial(method, params=env_params)
    want = (int(sum(action_dims)), *obs.shape)
    got = jax.eval_shape(fn, obs)
    if tuple(got.shape) != want:
        raise ValueError(
            f"env {name!r}: afterstate_observations(obs) has shape {tuple(got.shape)}; expected {want} "
            f"(one row per choice of each factor {tuple(action_dims)}, each shaped like the observation)"
        )
    return fn

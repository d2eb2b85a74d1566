"""Tiny environments with known answers, used by the loop, agent and twin tests."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class ChainState(environment.EnvState):
    pos: jax.Array
    time: int


@struct.dataclass
class ChainParams(environment.EnvParams):
    length: int = struct.field(pytree_node=False, default=5)
    max_steps_in_episode: int = 50
    features: bool = struct.field(pytree_node=False, default=False)


class Chain(environment.Environment[ChainState, ChainParams]):
    """States 0 .. L-1, start at 0. Action 1 moves right, action 0 stays.

    Reaching L-1 gives reward 1 and terminates; every other step gives reward 0.1 * pos so that
    rewards differ along a trajectory (useful for discounting checks). Deterministic, so the optimal
    Q-values and every k-step return have closed forms. ``info["violation"]`` is True when action 0
    is taken in the last-but-one state (a "risky" action for shield tests).
    """

    @property
    def default_params(self) -> ChainParams:
        return ChainParams()

    def step_env(self, key, state, action, params):
        move = (action == 1).astype(jnp.int32)
        pos = jnp.minimum(state.pos + move, params.length - 1)
        goal = pos == params.length - 1
        reward = jnp.where(goal, 1.0, 0.1 * state.pos.astype(jnp.float32))
        violation = jnp.logical_and(action == 0, state.pos == params.length - 2)
        new = ChainState(pos=pos, time=state.time + 1)
        return self.get_obs(new, params), new, reward, goal, {"violation": violation}

    def reset_env(self, key, params):
        state = ChainState(pos=jnp.int32(0), time=0)
        return self.get_obs(state, params), state

    def get_obs(self, state, params=None, key=None):
        if params is not None and params.features:
            return jax.nn.one_hot(state.pos, params.length)
        return state.pos

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        if params.features:
            return spaces.Box(0.0, 1.0, (params.length,), jnp.float32)
        return spaces.Discrete(params.length)

    @property
    def name(self) -> str:
        return "Chain"

    @property
    def num_actions(self) -> int:
        return 2


def chain_q_star(length: int, gamma: float):
    """Optimal Q-values of ``Chain`` (no truncation), as nested lists [s][a]."""
    import numpy as np

    v = np.zeros(length)
    for _ in range(1000):
        q = np.zeros((length, 2))
        for s in range(length - 1):
            for a in range(2):
                nxt = min(s + a, length - 1)
                goal = nxt == length - 1
                r = 1.0 if goal else 0.1 * s
                q[s, a] = r + (0.0 if goal else gamma * v[nxt])
        v = q.max(axis=1)
    return q


def tree_equal(a: Any, b: Any) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y, equal_nan=True)), a, b)))


#: A registered id for ``Chain`` (fast to compile): the CLI code paths are env-agnostic.
CHAIN_ID = "TestChain-v0"

#: CLI flags of a tiny run on ``CHAIN_ID``.
TINY_CLI_RUN = ["--total-timesteps", "40", "--log-every", "10", "--epsilon-decay-steps", "30",
                "--env-param", "max_steps_in_episode=12"]


@contextlib.contextmanager
def chain_env_registered():
    """``CHAIN_ID`` registered with dtrl_jax (and gymnax) while the block runs, unless it already was."""
    import dtrl_jax as dt
    from dtrl_jax.envs import register, registry

    added = CHAIN_ID not in dt.registered_envs()
    if added:
        register(CHAIN_ID, lambda **kw: (Chain(), ChainParams(**kw)), "5-state chain from tests/helpers.py")
    try:
        yield CHAIN_ID
    finally:
        if added:
            registry.unregister(CHAIN_ID)


def subprocess_env(*, cache: bool = True, extra_xla_flags: str = "", **variables: str) -> dict[str, str]:
    """The environment for a test's subprocess: this session's settings (``tests/conftest.py``) plus ``variables``.

    ``extra_xla_flags`` are appended to ``XLA_FLAGS`` (never replacing the session's flags);
    ``cache=False`` drops the shared compilation cache, so the subprocess compiles for itself.
    """
    env = dict(os.environ, **variables)
    if extra_xla_flags:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {extra_xla_flags}".strip()
    if not cache:
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env

"""The identical domain's global view: the agent's observation augmented with the global state.

For an environment whose agent sees only part of the world (e.g. ``MultiUAVPartial-v0``) the
identical domain, which mirrors the physical state, can read the global observation through the
environment's ``global_observation(state, params)`` method. ``GlobalObservation`` wraps such an
environment so that its observation is ``concat(obs, scale * global_observation(state))``; the
training loop sets ``scale`` to 1 once the twin is ready (0 before, so the input shape never
changes). Because the wrapper goes through gymnax's own ``step``, the pre-reset
``final_observation`` carries the global part too, so bootstrapping stays correct.

Known limitation: the global part is read from the physical state that the identical domain
mirrors, so twin noise (``state_noise_std``, ``obs_noise_std``) and mismatched ``twin_params`` do
not reach it; it models a twin whose global view is exact.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class GlobalObsParams:
    inner: object
    scale: jax.Array = 1.0


def has_global_observation(env: environment.Environment) -> bool:
    return callable(getattr(env, "global_observation", None))


class GlobalObservation(environment.Environment):
    """Wrap ``env`` so its observation carries the identical domain's global observation."""

    def __init__(self, env: environment.Environment) -> None:
        super().__init__()
        if not has_global_observation(env):
            raise ValueError(
                f"TwinConfig.share_global_obs=True needs an env with a global_observation(state, params) "
                f"method; {getattr(env, 'name', type(env).__name__)!r} has none"
            )
        self.inner = env
        if callable(getattr(env, "action_dims", None)):  # product action spaces keep their factors
            self.action_dims = lambda params: env.action_dims(params.inner)

    def wrap_params(self, params: environment.EnvParams) -> GlobalObsParams:
        return GlobalObsParams(inner=params, scale=jnp.float32(1.0))

    @property
    def default_params(self) -> GlobalObsParams:
        return self.wrap_params(self.inner.default_params)

    def _augment(self, obs: jax.Array, state: environment.EnvState, params: GlobalObsParams) -> jax.Array:
        glob = self.inner.global_observation(state, params.inner)
        return jnp.concatenate([jnp.reshape(obs, (-1,)).astype(jnp.float32),
                                params.scale * jnp.reshape(glob, (-1,)).astype(jnp.float32)])

    def step_env(self, key: jax.Array, state: environment.EnvState, action: Any, params: GlobalObsParams) -> tuple:
        obs, state, reward, terminated, info = self.inner.step_env(key, state, action, params.inner)
        return self._augment(obs, state, params), state, reward, terminated, info

    def reset_env(self, key: jax.Array, params: GlobalObsParams) -> tuple[jax.Array, environment.EnvState]:
        obs, state = self.inner.reset_env(key, params.inner)
        return self._augment(obs, state, params), state

    def get_obs(self, state: environment.EnvState, params: GlobalObsParams | None = None,
                key: jax.Array | None = None) -> jax.Array:
        params = self.default_params if params is None else params
        return self._augment(self.inner.get_obs(state, params.inner), state, params)

    def is_truncated(self, state: environment.EnvState, params: GlobalObsParams) -> jax.Array:
        return self.inner.is_truncated(state, params.inner)

    def action_space(self, params: GlobalObsParams | None = None) -> spaces.Space:
        return self.inner.action_space(None if params is None else params.inner)

    def observation_space(self, params: GlobalObsParams) -> spaces.Box:
        obs, state = jax.eval_shape(self.inner.reset_env, jax.random.key(0), params.inner)
        size = int(jnp.prod(jnp.array(obs.shape))) + int(
            jax.eval_shape(self.inner.global_observation, state, params.inner).size
        )
        return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

    @property
    def name(self) -> str:
        return f"{getattr(self.inner, 'name', type(self.inner).__name__)}+global"

    @property
    def num_actions(self) -> int:
        return self.inner.num_actions

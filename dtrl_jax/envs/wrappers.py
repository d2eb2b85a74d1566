"""Observation views as plain gymnax wrappers: per-entity features for a CNN, a window of past
observations for a GRU. The loop carries no recurrent state, so the twin (trials, look-ahead, noise)
runs on a wrapped env unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces


@dataclasses.dataclass(frozen=True)
class EntityLayout:
    """How a flat observation splits into entities, for the CNN.

    The flat observation is ``groups`` blocks of ``count x features`` values (row-major), then
    ``num_globals`` trailing values. The entity view is ``[sum(count), max(features) + len(groups)
    + num_globals]``: each entity's features (zero-padded), a one-hot of its group, and the global
    values repeated on every entity.

    Attributes:
      groups: ``((count, features), ...)``, e.g. MultiUAV ``((num_uavs, 2), (num_users, 2))``.
      num_globals: trailing global values (MultiUAV: 1, the time).
    """

    groups: tuple[tuple[int, int], ...]
    num_globals: int = 0

    def __post_init__(self):
        if not self.groups:
            raise ValueError("EntityLayout.groups is empty; expected ((count, features), ...)")
        for g in self.groups:
            if len(g) != 2 or any(not isinstance(v, (int, np.integer)) or v < 1 for v in g):
                raise ValueError(f"EntityLayout.groups entry {g!r}: expected (count >= 1, features >= 1)")
        if not isinstance(self.num_globals, (int, np.integer)) or self.num_globals < 0:
            raise ValueError(f"EntityLayout.num_globals={self.num_globals!r}: expected an int >= 0")

    @classmethod
    def multi_uav(cls, params) -> EntityLayout:
        """The layout of ``MultiUAV-v0``'s observation: UAVs (x, y), users (x, y), then the time."""
        return cls(groups=((int(params.num_uavs), 2), (int(params.num_users), 2)), num_globals=1)

    @property
    def flat_size(self) -> int:
        return sum(c * f for c, f in self.groups) + self.num_globals

    @property
    def shape(self) -> tuple[int, int]:
        feats = max(f for _, f in self.groups)
        return sum(c for c, _ in self.groups), feats + len(self.groups) + self.num_globals

    def to_entities(self, flat: jax.Array) -> jax.Array:
        """One flat observation ``[flat_size]`` -> ``[entities, features]`` (float32)."""
        flat = jnp.reshape(jnp.asarray(flat, jnp.float32), (-1,))
        feats = max(f for _, f in self.groups)
        glob = flat[self.flat_size - self.num_globals :]
        rows, start = [], 0
        for gi, (count, f) in enumerate(self.groups):
            block = jnp.reshape(flat[start : start + count * f], (count, f))
            block = jnp.pad(block, ((0, 0), (0, feats - f)))
            onehot = jnp.broadcast_to(jax.nn.one_hot(gi, len(self.groups)), (count, len(self.groups)))
            rows.append(jnp.concatenate([block, onehot, jnp.broadcast_to(glob, (count, self.num_globals))], 1))
            start += count * f
        return jnp.concatenate(rows, 0)

    def to_flat(self, ent: jax.Array) -> jax.Array:
        """Inverse of :meth:`to_entities` for one observation."""
        feats = max(f for _, f in self.groups)
        parts, start = [], 0
        for count, f in self.groups:
            parts.append(jnp.reshape(ent[start : start + count, :f], (-1,)))
            start += count
        parts.append(ent[0, feats + len(self.groups) :])
        return jnp.concatenate(parts)


class _Wrapper(environment.Environment):
    """Shared plumbing of the observation wrappers (params are the inner env's, unchanged)."""

    def __init__(self, env):
        super().__init__()
        self.inner = env
        if callable(getattr(env, "action_dims", None)):  # product action spaces keep their factors
            self.action_dims = env.action_dims

    @property
    def default_params(self):
        return self.inner.default_params

    def action_space(self, params=None):
        return self.inner.action_space(params)

    @property
    def num_actions(self) -> int:
        return self.inner.action_space(self.inner.default_params).n

    def is_terminated(self, state, params):
        return self.inner.is_terminated(self._inner_state(state), params)

    def _inner_state(self, state):
        return state


class EntityObservation(_Wrapper):
    """``env`` with observations reshaped to ``[entities, features]`` by an :class:`EntityLayout`.

    Stateless: the state is the inner env's, so twin noise and params act exactly as unwrapped.
    """

    def __init__(self, env, layout: EntityLayout):
        super().__init__(env)
        self.layout = layout

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = self.inner.step_env(key, state, action, params)
        return self.layout.to_entities(obs), state, reward, terminated, info

    def reset_env(self, key, params):
        obs, state = self.inner.reset_env(key, params)
        return self.layout.to_entities(obs), state

    def get_obs(self, state, params=None, key=None):
        return self.layout.to_entities(self.inner.get_obs(state, params))

    def is_truncated(self, state, params):
        return self.inner.is_truncated(state, params)

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, self.layout.shape, jnp.float32)

    @property
    def name(self) -> str:
        return f"{getattr(self.inner, 'name', type(self.inner).__name__)}+entities"


@struct.dataclass
class HistoryState:
    """State of :class:`ObservationHistory`: the inner state and the window ``[W, *obs]``, oldest first."""

    inner: Any
    history: Any
    time: Any


class ObservationHistory(_Wrapper):
    """``env`` whose observation is the window of its last ``window`` observations, oldest first.

    Made for the GRU (the loop carries no recurrent state, so memory must live in the observation).
    At reset the window is the first observation repeated. The window is part of the state, so a
    twin that copies the physical state copies the history too (and its sensor noise, if any,
    touches the remembered observations as well as the inner state). ``info['final_observation']``
    is the pre-reset window, so bootstrapping stays correct.
    """

    def __init__(self, env, window: int):
        super().__init__(env)
        if not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(f"ObservationHistory.window={window!r}: expected an int >= 1")
        self.window = int(window)

    def _inner_state(self, state):
        return state.inner

    def step_env(self, key, state, action, params):
        obs, inner, reward, terminated, info = self.inner.step_env(key, state.inner, action, params)
        history = jax.tree.map(lambda h, o: jnp.concatenate([h[1:], o[None]], 0), state.history, obs)
        new = HistoryState(inner=inner, history=history, time=getattr(inner, "time", 0))
        return history, new, reward, terminated, info

    def reset_env(self, key, params):
        obs, inner = self.inner.reset_env(key, params)
        history = jax.tree.map(lambda o: jnp.broadcast_to(o, (self.window, *jnp.shape(o))), obs)
        return history, HistoryState(inner=inner, history=history, time=getattr(inner, "time", 0))

    def get_obs(self, state, params=None, key=None):
        return state.history

    def is_truncated(self, state, params):
        return self.inner.is_truncated(state.inner, params)

    def observation_space(self, params):
        obs = jax.eval_shape(self.inner.reset_env, jax.random.key(0), params)[0]
        return spaces.Box(-jnp.inf, jnp.inf, (self.window, *obs.shape), obs.dtype)

    @property
    def name(self) -> str:
        return f"{getattr(self.inner, 'name', type(self.inner).__name__)}+history{self.window}"

"""Flax Q-networks and observation encoders.

Every network maps ONE encoded observation (no batch axis; callers ``vmap``) to Q-values ``[A]``:

* ``"mlp"``  (:class:`MLPQNetwork`): flattens its input, then dense layers ``hidden_sizes``.
* ``"cnn"``  (:class:`CNNQNetwork`): a 1-D CNN over per-entity features. A rank-2 input is read as
  ``[entities, features]`` (e.g. MultiUAV's UAV and user coordinates, see
  ``dtrl_jax.envs.wrappers.EntityObservation``); a rank-1 input ``[F]`` as ``F`` entities with one
  feature each.
* ``"gru"``  (:class:`GRUQNetwork`): a GRU over a fixed window. A rank-2 input is read as
  ``[window, features]``, the last ``W`` observations oldest first (see
  ``dtrl_jax.envs.wrappers.ObservationHistory``); a rank-1 input as a window of one. The training loop
  carries no recurrent state, so the GRU restarts from a zero state on every window: memory is
  exactly the window, and every replayed transition is self-contained.

``hidden_sizes`` (``DQNConfig.hidden_sizes``) means, per architecture: MLP, the dense widths; CNN,
the convolution channels (all widths but the last) followed by one dense layer of the last width
(a single width: one convolution, no extra dense layer); GRU, the GRU state size (first width)
followed by dense layers of the remaining widths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

#: Architecture names accepted by :func:`build_network` (and ``DQNConfig.network``).
NETWORKS = ("mlp", "cnn", "gru")


class MLPQNetwork(nn.Module):
    """A multilayer perceptron mapping an encoded observation (any shape, flattened) to Q-values ``[A]``."""

    hidden_sizes: Sequence[int]
    num_actions: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.reshape(x, (-1,))
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)


def _as_matrix(x: jax.Array, what: str) -> jax.Array:
    """Rank-1 ``[F]`` -> ``[F, 1]``; rank 2 unchanged; anything else raises (a static shape error)."""
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        return x
    raise ValueError(f"{what} expects one observation of rank 1 or 2 ({what} layout), got shape {x.shape}")


class CNNQNetwork(nn.Module):
    """1-D CNN over entities: ``[E, F]`` (or ``[F]`` = ``[F, 1]``) -> Q-values ``[A]``.

    Each convolution has kernel ``kernel_size`` along the entity axis (default 1: one filter bank
    shared by every entity, so all UAVs / users are embedded the same way), ReLU, ``SAME`` padding.
    The per-entity embeddings are then flattened (entity identity, hence order, is kept: the joint
    action names UAVs by index) and go through the dense layer and the output layer.
    """

    hidden_sizes: Sequence[int]
    num_actions: int
    kernel_size: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _as_matrix(x, "cnn [entities, features]")
        widths = tuple(self.hidden_sizes)
        convs, dense = (widths[:-1], widths[-1:]) if len(widths) > 1 else (widths, ())
        for channels in convs:
            x = nn.relu(nn.Conv(channels, kernel_size=(self.kernel_size,), padding="SAME")(x))
        x = jnp.reshape(x, (-1,))
        for width in dense:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)


class GRUQNetwork(nn.Module):
    """GRU over a fixed observation window: ``[W, F]`` (or ``[F]`` = ``[1, F]``) -> Q-values ``[A]``.

    The GRU (state size ``hidden_sizes[0]``) starts from zeros, reads the window oldest first, and
    its last state goes through dense layers ``hidden_sizes[1:]`` and the output layer. The window
    is short and static, so the recurrence is unrolled (one shared cell).
    """

    hidden_sizes: Sequence[int]
    num_actions: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"gru expects one observation window [window, features], got shape {x.shape}")
        widths = tuple(self.hidden_sizes)
        cell = nn.GRUCell(features=widths[0])
        h = jnp.zeros((widths[0],), x.dtype)
        for t in range(x.shape[0]):
            h, _ = cell(h, x[t])
        for width in widths[1:]:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(self.num_actions)(h)


def make_obs_encoder(num_states: int | None) -> Callable[[jax.Array], jax.Array]:
    """Observation -> float32 array for a network.

    ``num_states`` given: observations are discrete indices and are one-hot encoded (``[S]``);
    None: array observations are cast to float32 and keep their shape (the MLP flattens them, the
    CNN and GRU read rank-2 observations as ``[entities, features]`` / ``[window, features]``).
    """
    if num_states is not None:
        return lambda obs: jax.nn.one_hot(obs, num_states, dtype=jnp.float32)
    return lambda obs: jnp.asarray(obs, jnp.float32)


def build_network(name: str, hidden_sizes: Sequence[int], num_actions: int) -> nn.Module:
    """The Q-network called ``name`` (one of :data:`NETWORKS`).

    Raises:
      ValueError: an unknown name (the message lists the known ones) or empty ``hidden_sizes``.
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; expected one of {list(NETWORKS)}")
    widths = tuple(int(w) for w in hidden_sizes)
    if not widths:
        raise ValueError(f"network {name!r} needs at least one hidden size, got {hidden_sizes!r}")
    if name == "mlp":
        return MLPQNetwork(hidden_sizes=widths, num_actions=num_actions)
    if name == "cnn":
        return CNNQNetwork(hidden_sizes=widths, num_actions=num_actions)
    return GRUQNetwork(hidden_sizes=widths, num_actions=num_actions)

"""Flax Q-networks and observation encoders."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPQNetwork(nn.Module):
    """A multilayer perceptron mapping an encoded observation ``[F]`` to Q-values ``[A]``."""

    hidden_sizes: Sequence[int]
    num_actions: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)


def make_obs_encoder(num_states: int | None) -> Callable[[jax.Array], jax.Array]:
    """Observation -> float32 vector for a network.

    ``num_states`` given: observations are discrete indices and are one-hot encoded; None: array
    observations are flattened to float32.
    """
    if num_states is not None:
        return lambda obs: jax.nn.one_hot(obs, num_states, dtype=jnp.float32)
    return lambda obs: jnp.reshape(jnp.asarray(obs, jnp.float32), (-1,))


def build_network(name: str, hidden_sizes: Sequence[int], num_actions: int) -> nn.Module:
    if name == "mlp":
        return MLPQNetwork(hidden_sizes=tuple(hidden_sizes), num_actions=num_actions)
    raise ValueError(f"unknown network {name!r}; expected one of ['mlp']")

"""Action selection shared by every agent: the epsilon schedule and epsilon-greedy with random ties."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def linear_epsilon(step, start, end, decay_steps):
    """Epsilon decaying linearly from ``start`` to ``end`` over ``decay_steps`` physical steps."""
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / jnp.asarray(decay_steps, jnp.float32), 0.0, 1.0)
    return jnp.asarray(start, jnp.float32) + frac * (jnp.asarray(end, jnp.float32) - jnp.asarray(start, jnp.float32))


def greedy_action(key: jax.Array, q_values: jax.Array) -> jax.Array:
    """Argmax of ``q_values`` ``[A]`` with ties broken uniformly at random.

    Random tie-breaking matters for tabular agents whose Q-table starts constant: a plain argmax
    would always pick action 0 and never discover the others when epsilon is small.
    """
    chex.assert_rank(q_values, 1)
    best = q_values >= jnp.max(q_values)
    noise = jax.random.uniform(key, q_values.shape)
    return jnp.argmax(jnp.where(best, noise, -1.0)).astype(jnp.int32)


def explore_flags_and_actions(key: jax.Array, q_values: jax.Array, epsilon):
    """Epsilon-greedy that also reports whether it explored and what the greedy action was.

    Returns ``(action, explored, greedy)``; ``explored`` is True when the random branch was taken
    (the random action may still coincide with the greedy one). The shield needs all three.
    """
    chex.assert_rank(q_values, 1)
    k_explore, k_random, k_tie = jax.random.split(key, 3)
    random_action = jax.random.randint(k_random, (), 0, q_values.shape[0], dtype=jnp.int32)
    explore = jax.random.uniform(k_explore) < epsilon
    greedy = greedy_action(k_tie, q_values)
    return jnp.where(explore, random_action, greedy), explore, greedy


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon) -> jax.Array:
    """With probability ``epsilon`` a uniform action, else the greedy one. ``q_values``: ``[A]``."""
    return explore_flags_and_actions(key, q_values, epsilon)[0]

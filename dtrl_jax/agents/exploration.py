"""Action selection shared by every agent: the epsilon schedule and epsilon-greedy with random ties.

Cost matters here: these functions run for every physical environment at every step and, inside the
twin, for every look-ahead rollout step of every domain. Each call therefore draws a fixed, tiny
number of random words (one threefry call) whatever the number of actions, instead of one uniform
per action: with 625 joint UAV actions the per-action draw was most of a look-ahead step's cost.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def linear_epsilon(step, start, end, decay_steps):
    """Epsilon decaying linearly from ``start`` to ``end`` over ``decay_steps`` physical steps."""
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / jnp.asarray(decay_steps, jnp.float32), 0.0, 1.0)
    return jnp.asarray(start, jnp.float32) + frac * (jnp.asarray(end, jnp.float32) - jnp.asarray(start, jnp.float32))


def _unit_interval(bits: jax.Array) -> jax.Array:
    """A uint32 word as a float32 in [0, 1) with 24 random bits (exact in float32)."""
    return (bits >> jnp.uint32(8)).astype(jnp.float32) * jnp.float32(2.0**-24)


def _below(bits: jax.Array, n) -> jax.Array:
    """A uint32 word mapped to ``{0, ..., n - 1}`` (modulo bias at most n / 2**32)."""
    return (bits % jnp.asarray(n, jnp.uint32)).astype(jnp.int32)


def greedy_from_bits(bits: jax.Array, q_values: jax.Array) -> jax.Array:
    """Argmax of ``q_values`` ``[A]``, ties broken uniformly by one random uint32 word ``bits``.

    Picks the r-th maximal entry, r uniform over the number of ties: O(A) arithmetic and no
    per-action randomness.
    """
    chex.assert_rank(q_values, 1)
    best = q_values >= jnp.max(q_values)
    count = jnp.maximum(jnp.sum(best.astype(jnp.int32)), 1)
    rank = _below(bits, count)
    return jnp.argmax(jnp.cumsum(best.astype(jnp.int32)) > rank).astype(jnp.int32)


def greedy_action(key: jax.Array, q_values: jax.Array) -> jax.Array:
    """Argmax of ``q_values`` ``[A]`` with ties broken uniformly at random.

    Random tie-breaking matters for tabular agents whose Q-table starts constant: a plain argmax
    would always pick action 0 and never discover the others when epsilon is small.
    """
    return greedy_from_bits(jax.random.bits(key, (), jnp.uint32), q_values)


def explore_flags_and_actions(key: jax.Array, q_values: jax.Array, epsilon):
    """Epsilon-greedy that also reports whether it explored and what the greedy action was.

    Returns ``(action, explored, greedy)``; ``explored`` is True when the random branch was taken
    (the random action may still coincide with the greedy one). The shield needs all three.
    """
    return explore_flags_from_bits(jax.random.bits(key, (3,), jnp.uint32), q_values, epsilon)


def explore_flags_from_bits(bits: jax.Array, q_values: jax.Array, epsilon):
    """:func:`explore_flags_and_actions` driven by three given random uint32 words ``bits``.

    Lets a caller draw the words of a whole batch in one call (``jax.random.bits(key, (B, 3))``)
    and ``vmap`` this over rows, instead of splitting B keys.
    """
    chex.assert_shape(bits, (3,))
    chex.assert_rank(q_values, 1)
    explore = _unit_interval(bits[0]) < epsilon
    random_action = _below(bits[1], q_values.shape[0])
    greedy = greedy_from_bits(bits[2], q_values)
    return jnp.where(explore, random_action, greedy), explore, greedy


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon) -> jax.Array:
    """With probability ``epsilon`` a uniform action, else the greedy one. ``q_values``: ``[A]``."""
    return explore_flags_and_actions(key, q_values, epsilon)[0]

"""Per-example TD targets and losses (rlax style: one example, shape-checked, vmapped by the caller)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def branch_target(
    returns: jax.Array, discounts: jax.Array, bootstrap_values: jax.Array, weights: jax.Array
) -> jax.Array:
    """TD target as a weighted average over M bootstrap branches.

    ``sum_m weights[m] (returns[m] + discounts[m] * bootstrap_values[m])``: with M = 1 and
    ``discounts = gamma * (1 - terminated)`` this is the ordinary Q-learning target; with k-step
    twin rollouts ``discounts[m] = gamma**j`` (j steps until the bootstrap, 0 after a termination).

    Args:
      returns: ``[M]`` discounted reward sums.
      discounts: ``[M]`` bootstrap multipliers.
      bootstrap_values: ``[M]`` e.g. ``max_a Q_target(next_obs[m], a)``.
      weights: ``[M]`` summing to 1 (uniform = the paper's average over domains). Branches with
        weight 0 contribute exactly 0, so a one-hot weight reproduces a single branch bit for bit.
    Returns:
      scalar target.
    """
    chex.assert_rank(returns, 1)
    chex.assert_equal_shape([returns, discounts, bootstrap_values, weights])
    return jnp.sum(weights * (returns + discounts * bootstrap_values))


def double_q_bootstrap(q_target_next: jax.Array, q_online_next: jax.Array) -> jax.Array:
    """Double-DQN bootstrap value: the target network's value of the online network's argmax. ``[A]``."""
    chex.assert_rank(q_target_next, 1)
    chex.assert_equal_shape([q_target_next, q_online_next])
    return q_target_next[jnp.argmax(q_online_next)]


def td_loss(td_error: jax.Array, kind: str) -> jax.Array:
    """Elementwise loss of TD errors: ``'mse'`` = 0.5 e**2, ``'huber'`` = Huber with delta 1."""
    if kind == "mse":
        return 0.5 * jnp.square(td_error)
    if kind == "huber":
        abs_e = jnp.abs(td_error)
        return jnp.where(abs_e <= 1.0, 0.5 * jnp.square(td_error), abs_e - 0.5)
    raise ValueError(f"unknown TD loss {kind!r}; expected 'mse' or 'huber'")

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
    if returns.shape == (1,):
        # The same value without the [M] reduction, which costs ~10 % of a small network's update on a CPU.
        return weights[0] * (returns[0] + discounts[0] * bootstrap_values[0])
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


def n_step_return(rewards: jax.Array, discounts: jax.Array, continues: jax.Array):
    """n-step return of the first transition of a window of n consecutive 1-step transitions.

    Transition j of the window (j = 0 is the one the return belongs to) has reward ``rewards[j]``
    and bootstrap multiplier ``discounts[j]`` (``gamma`` or 0 after a termination).
    ``continues[j]`` (j >= 1) says that transition j follows transition j - 1 in the same episode;
    ``continues[0]`` is ignored. The return stops at the first break (an episode end by
    termination or truncation), so a window that crosses an episode boundary gives a shorter
    return::

        m = number of leading transitions of the same episode (1 <= m <= n)
        R = sum_{j < m} (prod_{i < j} discounts[i]) rewards[j]
        D = prod_{j < m} discounts[j]           (gamma**m, or 0 if a termination is included)

    The target is ``R + D max_a Q(s', a)`` with ``s'`` the bootstrap observation of transition
    ``m - 1`` (its pre-reset ``final_observation``: a truncated episode bootstraps from its true
    last state).

    Args:
      rewards, discounts: float ``[n]``.
      continues: bool ``[n]``.
    Returns:
      ``(R, D, m)``: float32 scalars and the int32 count of included transitions.
    """
    chex.assert_rank(rewards, 1)
    chex.assert_equal_shape([rewards, discounts, continues])
    included = jnp.cumprod(jnp.asarray(continues, jnp.float32).at[0].set(1.0))  # [n] 1, ..., 1, 0, ...
    before = jnp.concatenate([jnp.ones((1,), jnp.float32), jnp.cumprod(discounts.astype(jnp.float32))[:-1]])
    ret = jnp.sum(included * before * rewards.astype(jnp.float32))
    m = jnp.sum(included).astype(jnp.int32)
    disc = jnp.prod(jnp.where(included > 0, discounts.astype(jnp.float32), 1.0))
    return ret, disc, m


def normalised_returns(returns: jax.Array, discounts: jax.Array, scale, offset) -> jax.Array:
    """Reward sums of a target in the units of a network that learns ``scale * (Q - offset)``.

    With ``Q' = scale (Q - offset)`` the target ``R + D max Q(s')`` becomes
    ``scale (R - offset (1 - D)) + D max Q'(s')``, exactly, whatever the number of steps or a
    termination inside ``R``. With ``offset = shift / (1 - gamma)`` a 1-step target is that of the
    rewards ``scale (r - shift)``. Shapes: ``returns`` and ``discounts`` alike (``[M]``).
    """
    chex.assert_equal_shape([returns, discounts])
    return scale * (returns - offset * (1.0 - discounts))

"""The unit of experience that flows from the physical and digital spaces to storage and agents.

A ``Transition`` generalises (s, a, r, s') to a look-ahead target with M bootstrap branches: branch m
holds the discounted reward sum of one (twin) trajectory that starts with the transition, the
discount that multiplies its bootstrap value (``gamma**j`` after j steps, 0 after a termination),
and the observation to bootstrap from. The TD target is the mean over branches of
``returns[m] + discounts[m] * max_a Q_target(next_obs[m], a)`` under ``weights`` (uniform 1/M when
averaging over domains; one-hot when one branch is used alone). A plain 1-step transition is the
case M = 1: ``returns = [r]``, ``discounts = [gamma * (1 - terminated)]``, ``next_obs = [s']``,
``weights = [1]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """Experience with M bootstrap branches (leading batch axes, if any, come first).

    Attributes:
      obs: observation the action was taken in, shape ``[*obs_shape]``.
      action: int32 action, shape ``[]``.
      returns: float32 ``[M]`` discounted reward sums, the first reward included.
      discounts: float32 ``[M]`` multipliers of the bootstrap values.
      next_obs: ``[M, *obs_shape]`` observations to bootstrap from.
      weights: float32 ``[M]`` branch weights summing to 1.
    """

    obs: Any
    action: jax.Array
    returns: jax.Array
    discounts: jax.Array
    next_obs: Any
    weights: jax.Array


def one_step_transition(obs, action, reward, terminated, bootstrap_obs, gamma) -> Transition:
    """A 1-step transition (M = 1) for one example.

    ``bootstrap_obs`` must be the observation *before* any auto-reset (gymnax's
    ``info["final_observation"]``), so a truncated episode bootstraps from its true last state and a
    terminated one does not bootstrap at all.
    """
    discount = jnp.asarray(gamma, jnp.float32) * (1.0 - jnp.asarray(terminated, jnp.float32))
    return Transition(
        obs=obs,
        action=jnp.asarray(action, jnp.int32),
        returns=jnp.asarray(reward, jnp.float32)[None],
        discounts=discount[None],
        next_obs=jax.tree.map(lambda x: x[None], bootstrap_obs),
        weights=jnp.ones((1,), jnp.float32),
    )


def pad_branches(t: Transition, m: int) -> Transition:
    """A 1-branch transition (no batch axes) as M branches with one-hot weights: the same target, bit
    for bit, in a storage whose transitions have M branches (a look-ahead twin's)."""
    rep = lambda x: jnp.repeat(x, m, axis=0)  # noqa: E731
    return t.replace(
        returns=rep(t.returns),
        discounts=rep(t.discounts),
        next_obs=jax.tree.map(rep, t.next_obs),
        weights=jnp.zeros((m,), jnp.float32).at[0].set(1.0),
    )

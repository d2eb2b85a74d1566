"""Simultaneous trials on different actions (the paper's first benefit).

From the physical state s_t the physical action is executed physically; the n - 1 other distinct
actions are executed in n - 1 different domains that hold a copy of s_t (see
``DigitalSpace.trials``). Each yields a 1-step transition for storage (DQN) or a direct Q update
(tabular). This module chooses the actions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def trial_actions(key: jax.Array, physical_action: jax.Array, num_actions: int, num_trials: int) -> jax.Array:
    """``num_trials - 1`` distinct actions, all different from ``physical_action``.

    Uniform over subsets: a random subset of the ``num_actions - 1`` non-physical offsets. With
    ``num_trials == num_actions`` every other action is tried (a full sweep).

    Returns:
      int32 ``[num_trials - 1]``.
    """
    offsets = 1 + jax.random.choice(key, num_actions - 1, (num_trials - 1,), replace=False)
    return ((physical_action + offsets) % num_actions).astype(jnp.int32)

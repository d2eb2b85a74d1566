"""Simultaneous trials on different actions (the paper's first benefit).

From the physical state s_t the physical action is executed physically; the n - 1 other distinct
actions are executed in n - 1 different domains that hold a copy of s_t. Each yields a 1-step
transition for storage (DQN) or a direct Q update (tabular).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from dtrl_jax.transition import Transition, one_step_transition
from dtrl_jax.twin.domains import replicate, step_domains


def trial_actions(key: jax.Array, physical_action: jax.Array, num_actions: int, num_trials: int) -> jax.Array:
    """``num_trials - 1`` distinct actions, all different from ``physical_action``.

    Uniform over subsets: a random subset of the ``num_actions - 1`` non-physical offsets. With
    ``num_trials == num_actions`` every other action is tried (a full sweep).

    Returns:
      int32 ``[num_trials - 1]``.
    """
    offsets = 1 + jax.random.choice(key, num_actions - 1, (num_trials - 1,), replace=False)
    return ((physical_action + offsets) % num_actions).astype(jnp.int32)


def run_action_trials(
    env,
    key: jax.Array,
    obs: Any,
    state: Any,
    physical_action: jax.Array,
    params: Any,
    *,
    num_actions: int,
    num_trials: int,
    gamma,
) -> tuple[Transition, jax.Array]:
    """Execute the non-physical trial actions from ``state`` in ``num_trials - 1`` domains.

    Args:
      obs, state: the physical observation and state s_t (one environment, no batch axis).
      params: the twin's ``EnvParams`` (shared by the domains).
    Returns:
      ``(transitions, info)``: a ``Transition`` with leading ``[num_trials - 1]`` axis, M = 1, and the
      domains' step ``info`` dicts (leading domain axis).
    """
    k_actions, k_steps = jax.random.split(key)
    actions = trial_actions(k_actions, physical_action, num_actions, num_trials)
    n = num_trials - 1
    states = replicate(state, n)
    _, _, reward, terminated, _, info = step_domains(env, jax.random.split(k_steps, n), states, actions, params)
    final_obs = info["final_observation"]
    obs_n = replicate(obs, n)
    transitions = jax.vmap(one_step_transition, in_axes=(0, 0, 0, 0, 0, None))(
        obs_n, actions, reward, terminated, final_obs, gamma
    )
    return transitions, info

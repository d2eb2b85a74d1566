"""Training improvement with prediction: k-step look-ahead TD targets from twin rollouts.

For a physical transition (s_t, a_t, r_t, s_{t+1}) each of M domains copies s_{t+1} and rolls the
twin agent's policy forward for k - 1 steps. Branch m then holds

    G_m = r_t + gamma r_{t+1} + ... + gamma^{j-1} r_{t+j-1},   discount_m = gamma^j,

bootstrapping from s_{t+j} with j = k unless the episode ended earlier: a termination at step j
sets discount_m = 0 (no bootstrap); a truncation at step j bootstraps from the pre-reset observation
with gamma^j. The agent's target is ``mean_m (G_m + discount_m max_a Q_target(s^m_{t+j}, a))``.
Averaging over M rollouts is the paper's "average long-term gain of different trajectories", which
n-step learning on a single physical trajectory cannot give. ``DigitalSpace.rollouts`` runs one
``rollout_branch`` per domain and builds the averaged ``Transition``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp



def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def rollout_branch(
    env,
    policy: Callable[[jax.Array, Any], jax.Array],
    key: jax.Array,
    state: Any,
    obs: Any,
    params: Any,
    *,
    first_reward,
    first_terminated,
    first_truncated,
    first_final_obs,
    steps: int,
    gamma,
):
    """One look-ahead branch: ``steps`` = k - 1 twin steps after the physical one.

    Args:
      policy: ``policy(key, obs) -> action`` for one observation (the twin agent).
      state, obs: the physical post-step state and observation s_{t+1} (already auto-reset by gymnax
        if the physical step ended the episode; the first_* flags mask that case).
      first_*: the physical step's reward, termination, truncation and pre-reset observation.
    Returns:
      ``(return, discount, bootstrap_obs)`` for this branch.
    """
    gamma = jnp.asarray(gamma, jnp.float32)
    first_done = jnp.logical_or(first_terminated, first_truncated)
    carry = dict(
        state=state,
        obs=obs,
        alive=jnp.logical_not(first_done),
        ret=jnp.asarray(first_reward, jnp.float32),
        scale=gamma,  # gamma^j for the reward of the next twin step j = 1, 2, ...
        discount=jnp.where(first_terminated, 0.0, gamma),
        boot_obs=jax.tree.map(lambda f, o: jnp.where(first_done, f, o), first_final_obs, obs),
    )

    def twin_step(c, k):
        k_act, k_env = jax.random.split(k)
        action = policy(k_act, c["obs"])
        obs, state, reward, term, trunc, info = env.step(k_env, c["state"], action, params)
        alive = c["alive"]
        ret = c["ret"] + jnp.where(alive, c["scale"] * reward, 0.0)
        next_scale = c["scale"] * gamma
        discount = jnp.where(alive, jnp.where(term, 0.0, next_scale), c["discount"])
        done = jnp.logical_or(term, trunc)
        boot_obs = _select(alive, _select(done, info["final_observation"], obs), c["boot_obs"])
        new = dict(
            state=state,
            obs=obs,
            alive=jnp.logical_and(alive, jnp.logical_not(done)),
            ret=ret,
            scale=next_scale,
            discount=discount,
            boot_obs=boot_obs,
        )
        return new, None

    carry, _ = jax.lax.scan(twin_step, carry, jax.random.split(key, steps))
    return carry["ret"], carry["discount"], carry["boot_obs"]

"""Tabular Q-learning: a Q-table updated online from physical and twin transitions."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

from dtrl_jax.agents.base import Experience, LearnStats
from dtrl_jax.agents.td import branch_target
from dtrl_jax.transition import Transition


@struct.dataclass
class TabularState:
    """Q-table ``[num_states, num_actions]`` (float32)."""

    q: jax.Array


def averaged_q_update(q: jax.Array, states, actions, targets, learning_rate, mask=None) -> jax.Array:
    """Q-learning step for a batch, averaging the updates that hit the same (s, a).

    ``Q[s, a] += lr * mean_{i: (s_i, a_i) = (s, a)} (target_i - Q[s, a])`` with every TD error taken
    against the table *before* the step, so a batch of B copies of one transition moves Q exactly as
    one transition does. One scatter-add of errors and one of counts: O(B), never O(|S||A|) work
    beyond the add into the table.

    Args:
      q: ``[S, A]``; states, actions: int ``[B]``; targets: float ``[B]``.
      mask: optional ``[B]`` of 0/1 (bool or float): items with 0 are ignored exactly, even when
        their target is not finite (they are selected out with ``where``, never multiplied by 0,
        since ``0 * nan = nan``).
    """
    chex.assert_rank(q, 2)
    chex.assert_rank([states, actions, targets], 1)
    num_actions = q.shape[1]
    flat = states.astype(jnp.int32) * num_actions + actions.astype(jnp.int32)
    q_flat = q.reshape(-1)
    errors = targets - q_flat[flat]
    if mask is None:
        weight = jnp.ones_like(errors)
    else:
        keep = jnp.asarray(mask) > 0
        errors = jnp.where(keep, errors, 0.0)
        weight = keep.astype(errors.dtype)
    sums = jnp.zeros_like(q_flat).at[flat].add(errors)
    counts = jnp.zeros_like(q_flat).at[flat].add(weight)
    return (q_flat + learning_rate * sums / jnp.maximum(counts, 1.0)).reshape(q.shape)


class TabularQAgent:
    """Tabular Q-learning over a ``Discrete(num_states)`` observation and ``Discrete(num_actions)``."""

    def __init__(self, num_states: int, num_actions: int, config):
        self.num_states = int(num_states)
        self.num_actions = int(num_actions)
        self.config = config

    def init(self, key: jax.Array) -> TabularState:
        del key
        q = jnp.full((self.num_states, self.num_actions), self.config.q_init, jnp.float32)
        return TabularState(q=q)

    def q_values(self, agent_state: TabularState, obs) -> jax.Array:
        return agent_state.q[jnp.asarray(obs, jnp.int32)]

    def init_storage(self, example: Transition, twin_example: Transition | None):
        return None  # tabular Q-learning learns online; it keeps no replay

    def _targets(self, q: jax.Array, t: Transition) -> jax.Array:
        boot = jnp.max(q[t.next_obs.astype(jnp.int32)], axis=-1)  # [B, M]
        return jax.vmap(branch_target)(t.returns, t.discounts, boot, t.weights)

    def learn(self, agent_state, storage, experience: Experience, key):
        physical, twin, twin_ready = experience.physical, experience.twin, experience.twin_mask
        steps_before, steps_after = experience.steps_before, experience.steps_after
        del steps_before, steps_after, key
        parts = [physical]
        masks = [jnp.ones(physical.action.shape, jnp.float32)]
        if twin is not None:  # [domains, envs, ...] -> [domains * envs, ...]
            flat = jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), twin)
            parts.append(flat)
            # twin_ready: one flag, one per env ([num_envs]) or per domain and env ([domains, num_envs])
            ready = jnp.broadcast_to(jnp.asarray(twin_ready, jnp.float32), twin.action.shape[:2])
            masks.append(ready.reshape(-1))
        q = agent_state.q
        states = jnp.concatenate([p.obs.astype(jnp.int32) for p in parts])
        actions = jnp.concatenate([p.action for p in parts])
        targets = jnp.concatenate([self._targets(q, p) for p in parts])
        mask = jnp.concatenate(masks)
        errors = jnp.where(mask > 0, targets - q[states, actions], 0.0)
        new_q = averaged_q_update(q, states, actions, targets, self.config.learning_rate, mask)
        loss = jnp.sum(0.5 * jnp.square(errors)) / jnp.sum(mask)
        stats = LearnStats(loss_sum=loss, updates=jnp.int32(1))
        return TabularState(q=new_q), storage, stats

"""Deep Q-learning: a flax Q-network, a target network, optax, and replay storage.

Physical transitions go to a physical ring buffer; twin transitions to per-domain buffers. Each
gradient step draws a static share of its batch from each (``TwinConfig.twin_data_fraction``); the
twin share counts only once the twin storage holds data, so before the twin is ready a batch is
purely physical and the loss is a plain DQN loss.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from dtrl_jax.agents.base import LearnStats
from dtrl_jax.agents.networks import build_network, make_obs_encoder
from dtrl_jax.agents.td import branch_target, double_q_bootstrap, td_loss
from dtrl_jax.storage import (
    DomainStorage,
    ReplayBuffer,
    buffer_add,
    buffer_init,
    buffer_sample,
    domain_storage_add,
    domain_storage_init,
    domain_storage_sample,
    twin_capacity_per_domain,
)
from dtrl_jax.transition import Transition


@struct.dataclass
class DQNState:
    params: Any
    target_params: Any
    opt_state: Any


@struct.dataclass
class DQNStorage:
    physical: ReplayBuffer
    twin: DomainStorage | None


def crossed(steps_before, steps_after, every: int):
    """True when a multiple of ``every`` lies in ``(steps_before, steps_after]``."""
    return (steps_after // every) > (steps_before // every)


class DQNAgent:
    """DQN over ``Discrete(num_actions)`` with a target network and optional double Q-learning."""

    def __init__(self, num_actions: int, obs_example, num_states: int | None, config):
        self.num_actions = int(num_actions)
        self.config = config
        self.encode = make_obs_encoder(num_states)
        self.network = build_network(config.network, config.hidden_sizes, self.num_actions)
        self.obs_example = obs_example
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm),
            optax.adam(learning_rate=config.learning_rate),
        )
        twin = config.twin
        self.twin_domains = twin.action_trials - 1 if twin is not None and twin.uses_trials else 0
        if self.twin_domains:
            fraction = twin.twin_data_fraction
            if fraction is None:
                fraction = self.twin_domains / twin.action_trials
            self.twin_batch = int(round(fraction * config.batch_size))
        else:
            self.twin_batch = 0
        self.physical_batch = config.batch_size - self.twin_batch
        # One gradient step per crossing of a multiple of train_every; with several crossings in
        # one vectorised step (num_envs > train_every), as many steps as crossings at most.
        self.updates_per_step = max(1, -(-config.num_envs // config.train_every))

    # -- acting ---------------------------------------------------------------------------------
    def apply(self, params, obs) -> jax.Array:
        return self.network.apply(params, self.encode(obs))

    def init(self, key: jax.Array) -> DQNState:
        params = self.network.init(key, self.encode(self.obs_example))
        return DQNState(params=params, target_params=params, opt_state=self.optimizer.init(params))

    def q_values(self, agent_state: DQNState, obs) -> jax.Array:
        return self.apply(agent_state.params, obs)

    # -- storage --------------------------------------------------------------------------------
    def init_storage(self, example: Transition, twin_example: Transition | None) -> DQNStorage:
        physical = buffer_init(example, self.config.buffer_size)
        twin = None
        if self.twin_domains and twin_example is not None:
            cfg = self.config
            per_domain = twin_capacity_per_domain(
                cfg.buffer_size, cfg.twin.twin_buffer_size, self.twin_domains, cfg.num_envs
            )
            twin = domain_storage_init(twin_example, self.twin_domains, per_domain)
        return DQNStorage(physical=physical, twin=twin)

    # -- learning -------------------------------------------------------------------------------
    def _per_example_loss(self, params, target_params, t: Transition) -> jax.Array:
        """Loss of one transition with M branches."""
        q = self.apply(params, t.obs)[t.action]
        q_next_target = jax.vmap(lambda o: self.apply(target_params, o))(t.next_obs)  # [M, A]
        if self.config.double_q:
            q_next_online = jax.vmap(lambda o: self.apply(params, o))(t.next_obs)
            boot = jax.vmap(double_q_bootstrap)(q_next_target, q_next_online)
        else:
            boot = jnp.max(q_next_target, axis=-1)
        target = jax.lax.stop_gradient(branch_target(t.returns, t.discounts, boot, t.weights))
        return td_loss(q - target, self.config.loss)

    def _batch_loss(self, params, target_params, batch: Transition) -> jax.Array:
        return jnp.sum(jax.vmap(self._per_example_loss, in_axes=(None, None, 0))(params, target_params, batch))

    def _sgd(self, agent_state: DQNState, loss_fn):
        loss, grads = jax.value_and_grad(loss_fn)(agent_state.params)
        updates, opt_state = self.optimizer.update(grads, agent_state.opt_state, agent_state.params)
        params = optax.apply_updates(agent_state.params, updates)
        return agent_state.replace(params=params, opt_state=opt_state), loss

    def _physical_step(self, agent_state: DQNState, storage: DQNStorage, key):
        """Plain DQN step: the whole batch from physical storage."""
        batch = buffer_sample(storage.physical, key, self.config.batch_size)
        loss_fn = lambda p: self._batch_loss(p, agent_state.target_params, batch) / self.config.batch_size  # noqa: E731
        return self._sgd(agent_state, loss_fn)

    def _mixed_step(self, agent_state: DQNState, storage: DQNStorage, k_phys, k_twin):
        """DT step: ``physical_batch`` physical and ``twin_batch`` twin transitions."""
        physical = buffer_sample(storage.physical, k_phys, self.physical_batch)
        twin = domain_storage_sample(storage.twin, k_twin, self.twin_batch)

        def loss_fn(p):
            total = self._batch_loss(p, agent_state.target_params, twin)
            if self.physical_batch:  # twin_data_fraction = 1 leaves no physical share
                total = total + self._batch_loss(p, agent_state.target_params, physical)
            return total / self.config.batch_size

        return self._sgd(agent_state, loss_fn)

    def _gradient_step(self, agent_state: DQNState, storage: DQNStorage, key, twin_ready):
        # The physical share is drawn with ``key`` itself whether or not a twin exists, so a twin that
        # is never ready leaves plain DQN's random stream (and result) unchanged, bit for bit.
        if storage.twin is None or not self.twin_batch:
            return self._physical_step(agent_state, storage, key)
        k_phys, k_twin = key, jax.random.fold_in(key, 1)
        # twin_ready also means this step's trials were just stored (``learn``), so the twin storage is
        # not empty; testing its size instead would make the branch data-dependent (a select under vmap).
        return jax.lax.cond(
            jnp.any(twin_ready),  # per-env flags (health check): mixed once any env's twin stored data
            lambda s: self._mixed_step(s, storage, k_phys, k_twin),
            lambda s: self._physical_step(s, storage, k_phys),
            agent_state,
        )

    def learn(self, agent_state, storage, physical, twin, steps_before, steps_after, key, twin_ready):
        cfg = self.config
        storage = storage.replace(physical=buffer_add(storage.physical, physical))
        if storage.twin is not None and twin is not None:
            # Before the twin is ready (or while it is unusable) its transitions are not stored.
            storage = storage.replace(twin=domain_storage_add(storage.twin, twin, twin_ready))

        def one_update(carry, xs):
            state, loss_sum, updates = carry
            k, before = xs
            after = jnp.minimum(before + cfg.train_every, steps_after)
            # A function of the step counts only (the physical buffer was just filled above), so
            # the cond stays a branch under vmap over seeds.
            due = crossed(before, after, cfg.train_every) & (after >= cfg.learning_starts)

            # Only what an update changes passes through the cond; the target parameters are
            # closed over (read-only), so XLA need not thread a copy of them through both branches.
            def do(trained):
                params, opt_state = trained
                new, loss = self._gradient_step(
                    state.replace(params=params, opt_state=opt_state), storage, k, twin_ready
                )
                return (new.params, new.opt_state), loss

            def skip(trained):
                return trained, jnp.float32(0.0)

            (params, opt_state), loss = jax.lax.cond(due, do, skip, (state.params, state.opt_state))
            state = state.replace(params=params, opt_state=opt_state)
            return (state, loss_sum + loss, updates + due.astype(jnp.int32)), None

        # Sub-steps of train_every inside this vectorised step, one possible update each (a scan
        # only when there can be several: a length-1 loop costs a few per cent of a CartPole step).
        carry = (agent_state, jnp.float32(0.0), jnp.int32(0))
        if self.updates_per_step == 1:
            (agent_state, loss_sum, updates), _ = one_update(carry, (key, steps_before))
        else:
            starts = steps_before + cfg.train_every * jnp.arange(self.updates_per_step)
            keys = jax.random.split(key, self.updates_per_step)
            (agent_state, loss_sum, updates), _ = jax.lax.scan(one_update, carry, (keys, starts))
        sync = crossed(steps_before, steps_after, cfg.target_update_every)
        target = optax.incremental_update(agent_state.params, agent_state.target_params, cfg.tau)
        target = jax.tree.map(lambda new, old: jnp.where(sync, new, old), target, agent_state.target_params)
        return agent_state.replace(target_params=target), storage, LearnStats(loss_sum, updates)

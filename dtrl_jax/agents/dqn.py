"""Deep Q-learning: a flax Q-network, a target network, optax, and replay storage.

Physical transitions go to a physical ring buffer; twin transitions to per-domain buffers. Each
gradient step draws a static share of its batch from each (``TwinConfig.twin_data_fraction``); the
twin share counts only once the twin storage holds data, so before the twin is ready a batch is
purely physical and the loss is a plain DQN loss.

Options, all agent-side (the loop sees only ``q_values`` ``[A]`` in env units and ``learn``):

* **Branching head** (``DQNConfig.head``): for an action space that is a product of factors
  (``action_dims``, declared by the env), one head per factor; the joint value is the mean of the
  branch values (:func:`dtrl_jax.agents.networks.joint_q_from_branches`). ``q_values`` returns that
  joint ``[A]``, so the loop's epsilon-greedy, the twin's trials and its greedy look-ahead work
  unchanged; the TD loss uses ``Q(s, a) = mean_i Q_i(s, a_i)`` and the bootstrap
  ``mean_i max Q_i(s', .)`` (double DQN: per branch), which are the joint table's values.
* **Afterstate head** (``DQNConfig.head='afterstate'``): for an env that also declares what each
  factor's choice does to the observation (``afterstate_observations``, read by
  :func:`dtrl_jax.envs.spec.inspect_env` into ``EnvSpec.afterstates``, a function of the observation:
  the agent imports no env), the network is ONE state-value network V, evaluated at the observation
  and at its ``sum n_i`` single-factor afterstates; the joint value is the first-order expansion
  ``Q(s, a) = V(s) + sum_i [V(s (+)_i a_i) - V(s)]``, written as branch values
  (:func:`dtrl_jax.agents.networks.afterstate_branch_values`), so every branching rule above (greedy
  action, bootstrap, double DQN, the joint ``[A]`` for the loop and the twin) applies unchanged. Why:
  when a move's effect on the return is a small difference between nearby positions (MultiUAV: 0.01-0.06
  Mbps against a state variation 3-7x larger), a head that outputs each move's value separately must
  learn those differences as separate outputs, while V only fits a function of the positions and the
  differences follow from its shape. Cost: ``1 + sum n_i`` evaluations of V per Q (21 on MultiUAV).
* **Value normalisation** (``reward_scale``, ``reward_shift``): the network's outputs ``Q'`` are
  ``scale (Q - offset)`` with ``offset = shift / (1 - gamma)``; targets are converted exactly
  (:func:`dtrl_jax.agents.td.normalised_returns`), ``q_values`` converts back. ``reward_shift=None``
  takes the shift from the data: the mean physical reward of the warm-up steps (before
  ``learning_starts``), kept in ``DQNState.reward_stats`` per seed and fixed from the first gradient
  step on (the loop hands the 1-step rewards over in ``Experience.rewards``, since a look-ahead
  twin's physical transitions carry k-step sums).
* **n-step** (``n_step``): each physical env keeps its last n 1-step transitions in
  :class:`NStepWindow` (part of the storage pytree); every step the window's oldest transition
  leaves as an n-step transition (shorter at an episode end, :func:`dtrl_jax.agents.td.n_step_return`),
  so the replay receives one transition per env and step, n - 1 steps late.
* **Shield** (``TwinConfig.shield``): the twin transitions of the exploratory actions the shield
  vetoed (the loop hands them over as the last twin domain, masked to the vetoed envs) go to a replay
  of their own, ``DQNStorage.vetoed`` (``buffer_size`` transitions, shaped like the physical ones).
  They stand for physical experience the agent did not take, so they are drawn like physical
  experience: each slot of a batch's physical share is a vetoed transition with probability
  ``n_vetoed / (n_vetoed + n_physical)`` (stored counts), a uniform one of them. With none stored the
  batch is bit for bit what it would be without the shield's replay. (``twin_data_fraction=1`` leaves
  no physical share, so vetoed transitions are then never drawn.)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from dtrl_jax.agents.base import Experience, LearnStats
from dtrl_jax.agents.networks import (
    afterstate_branch_values,
    branch_double_q,
    branch_max,
    branch_q_of_action,
    build_network,
    joint_q_from_branches,
    make_obs_encoder,
)
from dtrl_jax.agents.td import branch_target, double_q_bootstrap, n_step_return, normalised_returns, td_loss
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
from dtrl_jax.transition import Transition, pad_branches


@struct.dataclass
class DQNState:
    """Parameters, target parameters, optimiser state and, for ``reward_shift=None``, the warm-up
    reward statistics ``reward_stats = [sum, count]`` (float32 ``[2]``; zeros otherwise)."""

    params: Any
    target_params: Any
    opt_state: Any
    reward_stats: jax.Array


@struct.dataclass
class NStepWindow:
    """The last n physical 1-step transitions of every env (leaves ``[num_envs, n, ...]``, oldest first).

    ``filled`` counts the vectorised steps seen (saturating at n): the window's oldest entry is a
    real transition once ``filled == n``.
    """

    transitions: Transition
    filled: jax.Array


@struct.dataclass
class DQNStorage:
    """Replay storage: ``physical`` (ring buffer), ``twin`` (one ring buffer per trial domain, or
    None), ``window`` (n-step window, or None) and ``vetoed`` (the shield's vetoed transitions, or
    None)."""

    physical: ReplayBuffer
    twin: DomainStorage | None
    window: NStepWindow | None = None
    vetoed: ReplayBuffer | None = None


#: ``DQNConfig.head`` values.
HEADS = ("auto", "joint", "branching", "afterstate")


def resolve_head(head: str, action_dims, afterstates=None, dueling: bool = False) -> str:
    """The head ``DQNConfig.head`` means for an env with these declarations: 'joint', 'branching' or
    'afterstate'.

    'auto' is 'afterstate' when the env declares both its factors and their afterstates (on
    ``MultiUAV-v0`` it is the head that learns the per-UAV moves, measured in benchmarks/multi_uav.py)
    unless ``dueling`` is asked for (an afterstate head has no advantage stream), 'branching' when
    it declares factors only, else 'joint'. Raises ``ValueError`` (before anything
    is traced) when the head needs a declaration the env does not make.
    """
    if head not in HEADS:
        raise ValueError(f"DQNConfig.head={head!r}; expected one of {HEADS}")
    if head == "auto":
        if action_dims is None:
            return "joint"
        return "afterstate" if afterstates is not None and not dueling else "branching"
    if head in ("branching", "afterstate") and action_dims is None:
        raise ValueError(
            f"DQNConfig.head={head!r} needs an environment that declares its action factors "
            "(action_dims(params), e.g. MultiUAV's (5, 5, 5, 5)); this one declares none: use "
            "head='joint' or 'auto'"
        )
    if head == "afterstate" and afterstates is None:
        raise ValueError(
            "DQNConfig.head='afterstate' needs an environment that declares afterstate_observations(obs, "
            "params) (the observation after each factor's choice, read by inspect_env into "
            "EnvSpec.afterstates); this one declares none: use head='branching', 'joint' or 'auto'"
        )
    return head


def _same_episode(prev: Transition, cur: Transition) -> jax.Array:
    """Whether ``cur`` continues ``prev``'s episode: not terminated, and its obs is prev's next obs.

    The loop stores the pre-reset observation as ``next_obs``, so after a truncation (or a
    termination) the next transition starts from a reset observation that differs from it.
    """
    same = prev.discounts[0] > 0
    for a, b in zip(jax.tree.leaves(prev.next_obs), jax.tree.leaves(cur.obs)):
        same = same & jnp.all(a[0] == b)
    return same


def n_step_transition(window: Transition) -> Transition:
    """The n-step transition of a window's oldest entry (leaves ``[n, ...]``, M = 1 each)."""
    n = window.action.shape[0]
    cont = jnp.concatenate(
        [jnp.ones((1,), bool), jax.vmap(_same_episode)(
            jax.tree.map(lambda x: x[:-1], window), jax.tree.map(lambda x: x[1:], window))]
    )
    ret, disc, m = n_step_return(window.returns[:, 0], window.discounts[:, 0], cont)
    last = jnp.clip(m - 1, 0, n - 1)
    return Transition(
        obs=jax.tree.map(lambda x: x[0], window.obs),
        action=window.action[0],
        returns=ret[None],
        discounts=disc[None],
        next_obs=jax.tree.map(lambda x: x[last], window.next_obs),
        weights=window.weights[0],
    )


def _same_layout(a: Transition, b: Transition) -> bool:
    """Whether two batches of transitions can be concatenated: the same tree, leaf shapes (past the
    batch axis) and dtypes. With a look-ahead twin they differ (physical transitions have M bootstrap
    branches, trial transitions one), so the mixed step checks at trace time."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return (jax.tree.structure(a) == jax.tree.structure(b)
            and all(x.shape[1:] == y.shape[1:] and x.dtype == y.dtype for x, y in zip(la, lb)))


def crossed(steps_before, steps_after, every: int):
    """True when a multiple of ``every`` lies in ``(steps_before, steps_after]``."""
    return (steps_after // every) > (steps_before // every)


class DQNAgent:
    """DQN over ``Discrete(num_actions)`` with a target network and the options of the module docstring.

    Args:
      num_actions: size of the (joint) action space.
      obs_example: one observation (shapes for the network's init).
      num_states: for a ``Discrete`` observation space its size (one-hot input), else None.
      config: a ``DQNConfig``.
      action_dims: the env's action factors (their product is ``num_actions``), or None; used by
        ``config.head`` ('auto' branches exactly when they are given).
    """

    def __init__(self, num_actions: int, obs_example, num_states: int | None, config, action_dims=None,
                 afterstates=None):
        self.num_actions = int(num_actions)
        self.config = config
        self.encode = make_obs_encoder(num_states)
        self.head = resolve_head(config.head, action_dims, afterstates, config.dueling)
        self.action_dims = None if self.head == "joint" else tuple(int(n) for n in action_dims)
        self.afterstates = afterstates if self.head == "afterstate" else None
        if self.afterstates is not None:
            if int(np.prod(self.action_dims)) != self.num_actions:
                raise ValueError(
                    f"action_dims={self.action_dims!r}: expected positive factors whose product is the "
                    f"number of actions {self.num_actions}"
                )
            # One state-value network V; the branch values are built from V at the afterstates.
            self.network = build_network(config.network, config.hidden_sizes, 1)
        else:
            self.network = build_network(
                config.network, config.hidden_sizes, self.num_actions,
                action_dims=self.action_dims, dueling=config.dueling,
            )
        self.obs_example = obs_example
        adam = optax.adam(learning_rate=config.learning_rate)
        self.optimizer = adam if config.max_grad_norm is None else optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm), adam
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
        self.learns_vetoes = twin is not None and twin.uses_domains and twin.shield
        # One gradient step per crossing of a multiple of train_every; with several crossings in
        # one vectorised step (num_envs > train_every), as many steps as crossings at most.
        self.updates_per_step = max(1, -(-config.num_envs // config.train_every))

    # -- values ---------------------------------------------------------------------------------
    def reward_shift(self, agent_state: DQNState) -> jax.Array:
        """The reward shift in env units: ``config.reward_shift``, or with ``reward_shift=None`` the
        mean physical reward of the warm-up steps (those before ``learning_starts``, at least the
        first vectorised step), which is fixed from the first gradient step on; 0 before any reward
        was seen and whenever ``gamma >= 1`` (no finite value offset)."""
        if self.config.reward_shift is not None:
            return jnp.asarray(self.config.reward_shift, jnp.float32)
        total, count = agent_state.reward_stats[0], agent_state.reward_stats[1]
        gamma = jnp.asarray(self.config.gamma, jnp.float32)
        return jnp.where(gamma < 1.0, total / jnp.maximum(count, 1.0), 0.0)

    def _offset(self, shift):
        """Value offset ``shift / (1 - gamma)`` (0 when the shift is 0, whatever gamma)."""
        shift = jnp.asarray(shift, jnp.float32)
        one_minus = 1.0 - jnp.asarray(self.config.gamma, jnp.float32)
        return jnp.where(shift == 0, 0.0, shift / jnp.where(one_minus > 0, one_minus, 1.0))

    def to_env_units(self, q_normalised: jax.Array, shift) -> jax.Array:
        """Network values ``scale (Q - offset)`` -> ``Q`` in the env's reward units (``shift``: see
        :meth:`reward_shift`)."""
        return q_normalised / jnp.asarray(self.config.reward_scale, jnp.float32) + self._offset(shift)

    def raw(self, params, obs) -> jax.Array:
        """The head's values for one observation, network units: joint ``[A]`` or branch values
        ``[sum n_i]`` (branching, afterstate)."""
        if self.afterstates is None:
            return self.network.apply(params, self.encode(obs))
        rows = jax.tree.map(lambda o, a: jnp.concatenate([jnp.asarray(o)[None], a]), obs, self.afterstates(obs))
        values = jax.vmap(lambda o: self.network.apply(params, self.encode(o))[0])(rows)
        return afterstate_branch_values(values[0], values[1:], len(self.action_dims))

    def _joint(self, raw: jax.Array) -> jax.Array:
        return raw if self.action_dims is None else joint_q_from_branches(raw, self.action_dims)

    def apply(self, params, obs, shift) -> jax.Array:
        """Joint action values ``[A]`` of one observation, in env units (``shift``: the reward shift,
        :meth:`reward_shift` of the state the parameters belong to)."""
        return self.to_env_units(self._joint(self.raw(params, obs)), shift)

    def branch_values(self, agent_state: DQNState, obs) -> jax.Array:
        """Branch values ``[sum n_i]`` in env units (branching or afterstate head): the greedy joint
        action is their per-branch argmax."""
        if self.action_dims is None:
            raise ValueError("branch_values needs a branching or afterstate head (action factors declared)")
        return self.to_env_units(self.raw(agent_state.params, obs), self.reward_shift(agent_state))

    # -- acting ---------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> DQNState:
        params = self.network.init(key, self.encode(self.obs_example))
        return DQNState(params=params, target_params=params, opt_state=self.optimizer.init(params),
                        reward_stats=jnp.zeros((2,), jnp.float32))

    def q_values(self, agent_state: DQNState, obs) -> jax.Array:
        return self.apply(agent_state.params, obs, self.reward_shift(agent_state))

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
        window = None
        if self.config.n_step > 1:
            if example.returns.shape != (1,):
                raise ValueError(
                    f"DQNConfig.n_step={self.config.n_step} needs 1-branch physical transitions, got "
                    f"{example.returns.shape[0]} branches (a look-ahead twin)"
                )
            shape = (self.config.num_envs, self.config.n_step)
            window = NStepWindow(
                transitions=jax.tree.map(lambda x: jnp.zeros((*shape, *jnp.shape(x)), jnp.asarray(x).dtype), example),
                filled=jnp.int32(0),
            )
        vetoed = buffer_init(example, self.config.buffer_size) if self.learns_vetoes else None
        return DQNStorage(physical=physical, twin=twin, window=window, vetoed=vetoed)

    def push_n_step(self, window: NStepWindow, physical: Transition) -> tuple[NStepWindow, Transition, jax.Array]:
        """Append this step's 1-step transitions ``[num_envs]`` to the window; return the window, the
        n-step transitions of the entries that leave it ``[num_envs]`` and whether they are real."""
        shifted = jax.tree.map(
            lambda w, x: jnp.concatenate([w[:, 1:], x[:, None]], axis=1), window.transitions, physical
        )
        n = self.config.n_step
        filled = jnp.minimum(window.filled + 1, n)
        return NStepWindow(transitions=shifted, filled=filled), jax.vmap(n_step_transition)(shifted), filled >= n

    # -- learning -------------------------------------------------------------------------------
    def _q_of_action(self, raw: jax.Array, action) -> jax.Array:
        if self.action_dims is None:
            return raw[action]
        return branch_q_of_action(raw, action, self.action_dims)

    def _bootstrap(self, raw_target: jax.Array, raw_online: jax.Array | None) -> jax.Array:
        """``max_a Q_target(s', a)`` (or double DQN's) of one observation, in network units."""
        if self.action_dims is None:
            if raw_online is None:
                return jnp.max(raw_target)
            return double_q_bootstrap(raw_target, raw_online)
        if raw_online is None:
            return branch_max(raw_target, self.action_dims)
        return branch_double_q(raw_target, raw_online, self.action_dims)

    def _per_example_loss(self, params, target_params, t: Transition, shift) -> jax.Array:
        """Loss of one transition with M branches, in the network's (normalised) units (``shift``:
        the reward shift in env units, :meth:`reward_shift`)."""
        q = self._q_of_action(self.raw(params, t.obs), t.action)
        def per_branch(f):
            """``f`` of each bootstrap observation, stacked ``[M, ...]``: a vmap, except for one branch,
            which a small network's update on a CPU runs measurably faster without it (same values)."""
            if t.returns.shape == (1,):
                return f(jax.tree.map(lambda x: x[0], t.next_obs))[None]
            return jax.vmap(f)(t.next_obs)

        raw_next_target = per_branch(lambda o: self.raw(target_params, o))  # [M, out]
        if self.config.double_q:
            raw_next_online = per_branch(lambda o: self.raw(params, o))
            boot = jax.vmap(self._bootstrap)(raw_next_target, raw_next_online)
        else:
            boot = jax.vmap(lambda r: self._bootstrap(r, None))(raw_next_target)
        returns = t.returns
        if not self._identity_units():
            returns = normalised_returns(
                returns, t.discounts, jnp.asarray(self.config.reward_scale, jnp.float32), self._offset(shift)
            )
        target = jax.lax.stop_gradient(branch_target(returns, t.discounts, boot, t.weights))
        return td_loss(q - target, self.config.loss)

    def _identity_units(self) -> bool:
        """Whether the network learns in env units (scale 1, shift 0, known at trace time), so the
        returns need no normalisation."""
        scale, shift = self.config.reward_scale, self.config.reward_shift
        return shift is not None and isinstance(scale, (int, float)) and isinstance(shift, (int, float)) and scale == 1 and shift == 0

    def _batch_loss(self, params, target_params, batch: Transition, shift) -> jax.Array:
        return jnp.sum(
            jax.vmap(self._per_example_loss, in_axes=(None, None, 0, None))(params, target_params, batch, shift)
        )

    def _sgd(self, agent_state: DQNState, loss_fn):
        loss, grads = jax.value_and_grad(loss_fn)(agent_state.params)
        updates, opt_state = self.optimizer.update(grads, agent_state.opt_state, agent_state.params)
        params = optax.apply_updates(agent_state.params, updates)
        return agent_state.replace(params=params, opt_state=opt_state), loss

    def _physical_share(self, storage: DQNStorage, key, batch_size: int) -> Transition:
        """``batch_size`` physical transitions drawn with ``key``; with the shield's replay, each slot
        is a vetoed transition with probability ``n_vetoed / (n_vetoed + n_physical)`` (drawn with
        keys folded from ``key``, so the physical draw itself is unchanged)."""
        batch = buffer_sample(storage.physical, key, batch_size)
        if storage.vetoed is None:
            return batch
        k_pick, k_item = jax.random.fold_in(key, 2), jax.random.fold_in(key, 3)
        n_vetoed = storage.vetoed.size.astype(jnp.float32)
        share = n_vetoed / jnp.maximum(n_vetoed + storage.physical.size.astype(jnp.float32), 1.0)
        pick = jax.random.uniform(k_pick, (batch_size,)) < share
        vetoed = buffer_sample(storage.vetoed, k_item, batch_size)
        return jax.tree.map(
            lambda v, p: jnp.where(jnp.reshape(pick, (batch_size,) + (1,) * (p.ndim - 1)), v, p), vetoed, batch
        )

    def _batches_step(self, agent_state: DQNState, batches: list[Transition]):
        """One gradient step on the summed loss of ``batches`` (``batch_size`` transitions in all)."""
        shift = self.reward_shift(agent_state)

        def loss_fn(p):
            total = self._batch_loss(p, agent_state.target_params, batches[0], shift)
            for batch in batches[1:]:  # at trace time: at most two batches
                total = total + self._batch_loss(p, agent_state.target_params, batch, shift)
            return total / self.config.batch_size

        return self._sgd(agent_state, loss_fn)

    def _physical_step(self, agent_state: DQNState, storage: DQNStorage, key):
        """Plain DQN step: the whole batch from physical storage."""
        return self._batches_step(agent_state, [self._physical_share(storage, key, self.config.batch_size)])

    def _mixed_step(self, agent_state: DQNState, storage: DQNStorage, k_phys, k_twin):
        """DT step: ``physical_batch`` physical and ``twin_batch`` twin transitions."""
        physical = self._physical_share(storage, k_phys, self.physical_batch)
        twin = domain_storage_sample(storage.twin, k_twin, self.twin_batch)
        if not self.physical_batch:  # twin_data_fraction = 1 leaves no physical share
            return self._batches_step(agent_state, [twin])
        if _same_layout(twin, physical):
            # One batch of both shares: one pass of the network instead of two smaller ones (on a CPU
            # the second pass cost about as much as the first for a small MLP).
            return self._batches_step(agent_state, [jax.tree.map(lambda a, b: jnp.concatenate([a, b]), twin, physical)])
        return self._batches_step(agent_state, [twin, physical])

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

    def _store_vetoed(self, storage: DQNStorage, twin: Transition, twin_ready):
        """Split the shield's domain (the last of ``twin``, ``[domains, num_envs, ...]``) off the trial
        domains and add its vetoed envs' transitions to ``storage.vetoed``. Returns the storage, the
        trial domains (None without trials) and their mask."""
        domains, num_envs = twin.action.shape[:2]
        mask = jnp.broadcast_to(jnp.asarray(twin_ready), (domains, num_envs))
        vetoed = jax.tree.map(lambda x: x[-1], twin)
        branches = storage.vetoed.data.returns.shape[1]
        if branches > 1:  # a look-ahead twin's physical transitions have M branches
            vetoed = jax.vmap(lambda t: pad_branches(t, branches))(vetoed)
        storage = storage.replace(vetoed=buffer_add(storage.vetoed, vetoed, mask[-1]))
        if domains == 1:
            return storage, None, twin_ready
        return storage, jax.tree.map(lambda x: x[:-1], twin), mask[:-1]

    def _warmup_stats(self, stats: jax.Array, experience: Experience) -> jax.Array:
        """``[sum, count]`` of the physical rewards, adding this step's while it is a warm-up step
        (it starts before ``learning_starts``, or it is the first), so they are fixed by the time the
        first gradient step uses them."""
        if experience.rewards is None:
            raise ValueError(
                "DQNConfig.reward_shift=None (the warm-up mean) needs the physical 1-step rewards in "
                "Experience.rewards; got None"
            )
        rewards = jnp.asarray(experience.rewards, jnp.float32)
        warm = jnp.asarray(experience.steps_before) < max(self.config.learning_starts, 1)
        step = jnp.stack([jnp.sum(rewards), jnp.float32(rewards.size)])
        return stats + jnp.where(warm, step, 0.0)

    def learn(self, agent_state, storage, experience: Experience, key):
        physical, twin, twin_ready = experience.physical, experience.twin, experience.twin_mask
        steps_before, steps_after = experience.steps_before, experience.steps_after
        cfg = self.config
        if cfg.reward_shift is None:
            agent_state = agent_state.replace(reward_stats=self._warmup_stats(agent_state.reward_stats, experience))
        if storage.window is not None:
            window, physical, real = self.push_n_step(storage.window, physical)
            storage = storage.replace(window=window, physical=buffer_add(storage.physical, physical, real))
        else:
            storage = storage.replace(physical=buffer_add(storage.physical, physical))
        if storage.vetoed is not None and twin is not None:
            storage, twin, twin_ready = self._store_vetoed(storage, twin, twin_ready)
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
        # A branch, not a select over every parameter at every step: the crossing depends on the
        # step counts only, so it stays a branch under vmap over seeds.
        target = jax.lax.cond(
            crossed(steps_before, steps_after, cfg.target_update_every),
            lambda s: optax.incremental_update(s.params, s.target_params, cfg.tau),
            lambda s: s.target_params,
            agent_state,
        )
        return agent_state.replace(target_params=target), storage, LearnStats(loss_sum, updates)

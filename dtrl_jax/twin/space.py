"""The digital space of one physical environment: D domains with their own states.

Each domain keeps, in the carry, its own estimate of the current physical state. Domain 0 is the
*identical domain*: it copies the physical state after every physical step. The other, *different*
domains copy it only at synchronisation events (every ``sync_every`` physical steps); in between
they run on their own, simulating the physical agent's actions with their own randomness (and
their own, possibly mismatched, ``EnvParams``), as a real twin does between sensor updates.
Every copy passes through the twin's sensors: ``state_noise_std`` is added to float state leaves.

From these estimates the twin runs *what-if branches* that never overwrite them:
  * action trials from domains 1 .. n-1 (estimates of s_t),
  * look-ahead rollouts from domains 0 .. M-1 (estimates of s_{t+1}, after the advance),
  * the shield's check of an exploratory action in domain 0 (whose transition is learned when vetoed),
  * the health check: K draws of the physical step in domain 0, against the physical outcome.

All functions here act on one physical environment; the loop vmaps them over ``num_envs``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from dtrl_jax.transition import Transition, one_step_transition
from dtrl_jax.twin.domains import replicate, step_domains
from dtrl_jax.twin.lookahead import rollout_branch
from dtrl_jax.twin.noise import add_float_noise, is_zero
from dtrl_jax.twin.trials import trial_actions


@struct.dataclass
class DomainStates:
    """Per-domain estimates of the physical state: leaves ``[num_domains, ...]``."""

    states: Any
    obs: Any


#: Floor of the health check's p-value in ``surprise``: a non-finite twin outcome (p = 0) counts
#: as about 9.2, so one such step moves the running mean a lot without making it infinite.
MIN_P_VALUE = 1e-4


def surprise(p_value: jax.Array) -> jax.Array:
    """``-log(max(p, MIN_P_VALUE))``: Exp(1) (mean 1) for a right twin's uniform p-value.

    Fisher's combination: a running mean of it reacts to a twin that is sometimes clearly wrong
    (intermittent faults, e.g. mismatched rates that matter only inside coverage) much more than a
    mean of p does.
    """
    return -jnp.log(jnp.maximum(jnp.asarray(p_value, jnp.float32), MIN_P_VALUE))


def _take(tree: Any, idx: jax.Array) -> Any:
    return jax.tree.map(lambda x: x[idx], tree)


class DigitalSpace:
    """The digital domains of one physical environment (see the module docstring).

    Args:
      env: the gymnax environment twinned (the same object the physical space runs).
      env_params: the physical ``EnvParams``.
      twin_params: ``None`` (perfect twin: every domain uses ``env_params``) or a stack of
        ``EnvParams`` with a leading ``[num_domains]`` axis (mismatched twins).
      config: the ``TwinConfig``.
      can_observe: whether ``env.get_obs(state, params)`` works; without it, noisy states keep
        the physical observation.
    """

    def __init__(self, env: Any, env_params: Any, twin_params: Any, config: Any, *, can_observe: bool,
                 obs_is_float: bool) -> None:
        self.env = env
        self.config = config
        self.num_domains = config.num_domains
        self.params = env_params if twin_params is None else twin_params
        self.params_axis = None if twin_params is None else 0
        self.can_observe = can_observe
        self.obs_is_float = obs_is_float

    def with_params(self, params: Any) -> DigitalSpace:
        """This space with the domains stepping with ``params``, a ``[num_domains]`` stack (e.g. the
        in-loop calibration's current parameters, carried in the loop's state)."""
        out = copy.copy(self)
        out.params, out.params_axis = params, 0
        return out

    # -- helpers ----------------------------------------------------------------------------------
    def _domain_params(self, idx: jnp.ndarray) -> tuple[Any, Any]:
        if self.params_axis is None:
            return self.params
        return _take(self.params, idx)

    def _step(self, keys: jax.Array, states: Any, actions: jax.Array, idx: jax.Array) -> tuple:
        """``env.step`` in the domains ``idx`` (static int array) from ``states`` (leading axis = len(idx))."""
        return step_domains(self.env, keys, states, actions, self._domain_params(idx), self.params_axis)

    def _observe(self, states: Any, fallback_obs: Any, idx: jax.Array) -> Any:
        if not self.can_observe:
            return fallback_obs
        return jax.vmap(lambda s, p: self.env.get_obs(s, p), in_axes=(0, self.params_axis))(
            states, self._domain_params(idx)
        )

    def obs_noise(self, key: jax.Array, obs: Any) -> Any:
        """Observation noise of the twin's sensors (float observations only)."""
        if not self.obs_is_float:
            return obs
        return add_float_noise(key, obs, self.config.obs_noise_std)

    # -- synchronisation ------------------------------------------------------------------------
    def copy_physical(self, key: jax.Array, phys_state: Any, phys_obs: Any, noise_std: Any) -> DomainStates:
        """Every domain receives a (noisy) copy of the physical state."""
        idx = jnp.arange(self.num_domains)
        states = replicate(phys_state, self.num_domains)
        if is_zero(noise_std):  # exact copies: their observations are the physical one
            return DomainStates(states=states, obs=replicate(phys_obs, self.num_domains))
        states = jax.vmap(add_float_noise, in_axes=(0, 0, None))(
            jax.random.split(key, self.num_domains), states, noise_std
        )
        # The time counter is integer and never noised; observations are re-read from the noisy
        # states so the twin's view is consistent with its own state.
        obs = self._observe(states, replicate(phys_obs, self.num_domains), idx)
        return DomainStates(states=states, obs=obs)

    def advance(self, key: jax.Array, current: DomainStates, action: jax.Array, phys_next_state: Any,
                phys_next_obs: Any, sync_now: Any, noise_std: Any) -> DomainStates:
        """Move every estimate from s_t to s_{t+1}.

        Domain 0 and, when ``sync_now``, all domains copy the physical s_{t+1}; otherwise the
        different domains simulate the physical action from their own estimate. ``sync_now`` is a
        traced bool, or the Python ``True`` when every step synchronises (no simulation is built).
        """
        k_copy, k_sim = jax.random.split(key)
        synced = self.copy_physical(k_copy, phys_next_state, phys_next_obs, noise_std)
        if sync_now is True or self.config.sync_every == 1:
            return synced
        idx = jnp.arange(self.num_domains)
        actions = jnp.broadcast_to(action, (self.num_domains,))
        sim_obs, sim_states, *_ = self._step(jax.random.split(k_sim, self.num_domains), current.states, actions, idx)
        simulated = DomainStates(states=sim_states, obs=sim_obs)
        take_copy = jnp.logical_or(sync_now, idx == 0)  # the identical domain mirrors every step

        def pick(copy, sim):
            mask = jnp.reshape(take_copy, (-1,) + (1,) * (jnp.ndim(copy) - 1))
            return jnp.where(mask, copy, sim)

        return jax.tree.map(pick, synced, simulated)

    # -- what-if branches -----------------------------------------------------------------------
    def trials(self, key: jax.Array, domains: DomainStates, physical_action: jax.Array, *, num_actions: int,
               gamma: Any) -> Transition:
        """Action trials: domain i (1 .. n-1) tries a distinct non-physical action from its estimate."""
        n = self.config.action_trials - 1
        k_act, k_env, k_noise = jax.random.split(key, 3)
        idx = jnp.arange(1, n + 1)
        actions = trial_actions(k_act, physical_action, num_actions, self.config.action_trials)
        states, obs = _take(domains.states, idx), _take(domains.obs, idx)
        _, _, reward, terminated, _, info = self._step(jax.random.split(k_env, n), states, actions, idx)
        k1, k2 = jax.random.split(k_noise)
        return jax.vmap(one_step_transition, in_axes=(0, 0, 0, 0, 0, None))(
            self.obs_noise(k1, obs), actions, reward, terminated,
            self.obs_noise(k2, info["final_observation"]), gamma,
        )

    def identical_step(self, key: jax.Array, domains: DomainStates, action: jax.Array) -> tuple:
        """The identical domain's prediction of one physical step: ``(final_obs, info)`` for ``action``."""
        idx = jnp.arange(1)
        out = self._step(key[None], _take(domains.states, idx), jnp.reshape(action, (1,)), idx)
        info = jax.tree.map(lambda x: x[0], out[5])
        return info["final_observation"], info

    def shield_check(self, key: jax.Array, domains: DomainStates, action: jax.Array, *,
                     gamma: Any) -> tuple[jax.Array, Transition]:
        """The shield's look at ``action`` in the identical domain (its estimate of s_t).

        Returns ``(violation, transition)``: whether the twin shows ``info["violation"]``, and the
        twin transition itself (through the twin's sensors, like a trial), so that a vetoed action's
        consequence can be learned without taking it physically.
        """
        k_step, k_noise = jax.random.split(key)
        idx = jnp.arange(1)
        _, _, reward, terminated, _, info = self._step(
            k_step[None], _take(domains.states, idx), jnp.reshape(action, (1,)), idx
        )
        k1, k2 = jax.random.split(k_noise)
        obs = jax.tree.map(lambda x: x[0], domains.obs)
        final = jax.tree.map(lambda x: x[0], info["final_observation"])
        transition = one_step_transition(
            self.obs_noise(k1, obs), action, reward[0], terminated[0], self.obs_noise(k2, final), gamma
        )
        return info["violation"][0], transition

    def shield_violation(self, key: jax.Array, domains: DomainStates, action: jax.Array) -> jax.Array:
        """Does the identical domain predict a violation for ``action`` from its estimate of s_t?"""
        return self.identical_step(key, domains, action)[1]["violation"]

    def health_check(self, key: jax.Array, domains: DomainStates, action: jax.Array, physical_outcome: tuple,
                     obs_scale: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Is the physical outcome of this step plausible under the identical domain?

        The identical domain draws K = ``config.health_draws`` independent outcomes ``(final
        observation, reward, terminated)`` of ``action`` from its estimate of s_t. With the physical
        outcome they make K + 1 outcomes. Per scalar component c, ``d_c(x_i, x_j)`` is the absolute
        difference (float) or the mismatch, 0 or 1 (integer and boolean: a discrete observation index
        is compared as a label), divided by its mean over all pairs; outcome i's score is
        ``max_c sum_j d_c(x_i, x_j)``, how atypical it is in its most atypical component. The
        randomised rank p-value of the physical score,
        ``p = (#{i: s_i > s_phys} + u #{i: s_i = s_phys}) / (K + 1)`` with u ~ U(0, 1), is exactly
        uniform on (0, 1) when the twin is right (the identical domain holds s_t and the twin's
        step has the physical step's distribution: the K + 1 outcomes are then exchangeable), on a
        deterministic env as on a stochastic one; a physical outcome that is atypical of the twin's
        drives it towards 0. It needs no threshold in the env's units: the loop keeps a running mean
        of ``surprise(p)`` per env and compares it with ``health_threshold``.

        Args:
          physical_outcome: ``(final_obs, reward, terminated)`` of the physical step.
          obs_scale: the global-view scale of the physical env's observation (``share_global_obs``),
            so the twin observes as the physical env does; None otherwise.
        Returns:
          ``(p_value, nearest)``: float32 scalars; ``nearest`` is the max over components of the
          unscaled difference from the physical outcome to the closest twin draw (what
          ``max_divergence`` bounds). A non-finite twin outcome gives
          ``p = 0`` and ``nearest = inf``.
        """
        k = self.config.health_draws
        k_step, k_tie = jax.random.split(key)
        params = _take(self.params, 0) if self.params_axis is not None else self.params
        if obs_scale is not None:
            params = params.replace(scale=jnp.asarray(obs_scale, jnp.float32))
        state = _take(domains.states, 0)
        _, _, reward, terminated, _, info = jax.vmap(self.env.step, in_axes=(0, None, None, None))(
            jax.random.split(k_step, k), state, action, params
        )
        twin = (info["final_observation"], reward, terminated)
        outcomes = jax.tree.map(lambda p, t: jnp.concatenate([jnp.asarray(p)[None], t]), physical_outcome, twin)
        diffs, finite = [], jnp.asarray(True)
        for leaf in jax.tree.leaves(outcomes):
            x = jnp.reshape(leaf, (k + 1, -1))
            if jnp.issubdtype(x.dtype, jnp.floating):
                x = x.astype(jnp.float32)
                finite = finite & jnp.all(jnp.isfinite(x))
                x = jnp.where(jnp.isfinite(x), x, 0.0)
                diffs.append(jnp.abs(x[:, None, :] - x[None, :, :]))
            else:
                diffs.append((x[:, None, :] != x[None, :, :]).astype(jnp.float32))
        diff = jnp.concatenate(diffs, axis=-1)  # [K + 1, K + 1, components]
        # Each component's distances in units of their mean over the K + 1 outcomes (a symmetric
        # function of the set, so exchangeability and the p-value's exactness are kept): a component
        # that is random in both worlds does not drown one in which the twin is consistently off.
        scale = jnp.mean(diff, axis=(0, 1))
        atypical = jnp.sum(diff, axis=1) / jnp.where(scale > 0, scale, 1.0)  # [K + 1, components]
        scores = jnp.max(atypical, axis=1)
        above = jnp.sum(scores > scores[0])
        ties = jnp.sum(scores == scores[0])
        u = jax.random.uniform(k_tie)
        p = jnp.where(finite, (above + u * ties) / (k + 1), 0.0)
        nearest = jnp.where(finite, jnp.min(jnp.max(diff[0, 1:], axis=-1)), jnp.inf)
        return p.astype(jnp.float32), nearest

    def rollouts(self, key: jax.Array, domains: DomainStates, policy: Callable[[jax.Array, Any], jax.Array], *,
                 obs: Any, action: jax.Array, reward: jax.Array, terminated: jax.Array, truncated: jax.Array,
                 final_obs: Any, gamma: Any) -> Transition:
        """M look-ahead branches of k - 1 twin steps from domains 0 .. M-1 (estimates of s_{t+1})."""
        m = self.config.lookahead_rollouts
        idx = jnp.arange(m)
        k_roll, k_noise = jax.random.split(key)
        params = self._domain_params(idx)

        def branch(k, s, o, p):
            return rollout_branch(
                self.env, policy, k, s, o, p,
                first_reward=reward, first_terminated=terminated, first_truncated=truncated,
                first_final_obs=final_obs, steps=self.config.lookahead - 1, gamma=gamma,
            )

        returns, discounts, boot_obs = jax.vmap(branch, in_axes=(0, 0, 0, self.params_axis))(
            jax.random.split(k_roll, m), _take(domains.states, idx), _take(domains.obs, idx), params
        )
        weights = jnp.full((m,), 1.0 / m, jnp.float32)
        if not self.config.average_rollouts:
            # One domain's prediction alone (chosen at random): the unaveraged estimate.
            pick = jax.random.randint(k_noise, (), 0, m)
            weights = jax.nn.one_hot(pick, m, dtype=jnp.float32)
        # The twin's sensors noise what the twin produced; when the physical step itself ended the
        # episode, every branch bootstraps from the physical pre-reset observation, which is not the
        # twin's and stays exact.
        first_done = jnp.logical_or(terminated, truncated)
        noisy = self.obs_noise(jax.random.fold_in(k_noise, 1), boot_obs)
        next_obs = jax.tree.map(lambda n, b: jnp.where(first_done, b, n), noisy, boot_obs)
        return Transition(
            obs=obs,
            action=jnp.asarray(action, jnp.int32),
            returns=returns,
            discounts=discounts,
            next_obs=next_obs,
            weights=weights,
        )

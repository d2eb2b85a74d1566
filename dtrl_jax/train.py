"""The loop: environment + digital twin + agent + storage composed into one pure ``train(key)``.

``make_train(config, env, env_params)`` validates everything it can before tracing and returns
``train``, a :class:`Trainer`: a pure function ``key -> TrainResult`` that compiles to one XLA program. Read top to
bottom, the program is::

    train(key)
      reset num_envs physical environments; init agent and storage
      scan over logging intervals:                      (metrics: one row per interval)
        scan over vectorised physical steps (``iteration``; each line is a named phase below):
          schedule       step counts, keys, twin readiness / outages, epsilon
          act            epsilon-greedy physical action a_t from the agent's Q(s_t)
          shield_phase   if on: an exploratory a_t the identical domain flags as a violation -> greedy
          physical_step  -> (s_{t+1}, r_t, terminated, truncated, info) and 1-step transitions
          health_phase   if on: is the physical outcome plausible under the twin? (per env)
          twin_step      if on and ready: trials of n - 1 other actions from the domains' estimates
                         of s_t; advance the domains to s_{t+1} (copy = sync, or simulate between
                         syncs); M look-ahead rollouts of k - 1 steps -> averaged k-step target
          learn_phase    agent.learn(physical, twin and vetoed transitions)  (tabular or replay + SGD)
          calibration    if on: record (s_t, a_t, o_{t+1}, r_t) in a ring buffer; every
                         calibrate_every steps fit the domains' EnvParams to it (dtrl_jax.twin.online)
          bookkeeping    episode returns, violations, exact twin-step counts, the IntervalSums

With ``twin=None`` (or every twin feature off) the same program is plain physical RL. Twin agents
act with ``agent_state`` itself, the physical agent's current parameters: parameter sync is
structural, there is no copy that can go stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from dtrl_jax.agents.base import Experience
from dtrl_jax.agents.dqn import DQNAgent, crossed
from dtrl_jax.agents.exploration import (
    epsilon_greedy,
    explore_flags_from_bits,
    greedy_action,
    linear_epsilon,
)
from dtrl_jax.agents.tabular import TabularQAgent
from dtrl_jax.config import DQNConfig, QLearningConfig
from dtrl_jax.envs.spec import EnvSpec, inspect_env  # noqa: F401 - inspect_env re-exported
from dtrl_jax.evaluate import episode_limit, evaluate
from dtrl_jax.host_callback import once_per_batch
from dtrl_jax.memory import check_fits, describe, estimate_from_runner
from dtrl_jax.metrics import METRIC_NAMES, check_metric_names  # noqa: F401 - METRIC_NAMES re-exported
from dtrl_jax.sharding import DomainSharding, validate_mesh
from dtrl_jax._checks import is_concrete
from dtrl_jax.transition import Transition, one_step_transition, pad_branches
from dtrl_jax.twin import online
from dtrl_jax.twin.calibration import check_config
from dtrl_jax.twin.domains import replicate
from dtrl_jax.twin.global_obs import GlobalObservation, GlobalObsParams
from dtrl_jax.twin.noise import state_noise_std
from dtrl_jax.twin.space import DigitalSpace, surprise


#: Folded into the key given to ``train`` to make the evaluation stream (ASCII "eval"): distinct from
#: the streams ``split(key, 3)`` hands to initialisation, resets and the loop, so evaluating changes
#: no other random number.
EVAL_STREAM = 0x6576616C

#: Folded into the evaluation key to make the ``twin_error`` metric's stream (ASCII "terr").
TWIN_ERROR_STREAM = 0x74657272

logger = logging.getLogger("dtrl_jax")

NUMERIC_FAULTS = {1: "observation", 2: "reward", 3: "Q-values", 4: "loss"}


def in_windows(steps, windows) -> jax.Array:
    """Whether ``steps`` lies in any ``[start, end)`` window (a static tuple)."""
    inside = jnp.asarray(False)
    for window in windows:
        inside = inside | ((steps >= window[0]) & (steps < window[1]))
    return inside


def burst_std(steps, windows) -> jax.Array:
    """Extra state-noise std of the ``(start, end, std)`` burst windows active at ``steps``."""
    extra = jnp.float32(0.0)
    for start, end, std in windows:
        extra = extra + jnp.where((steps >= start) & (steps < end), jnp.float32(std), 0.0)
    return extra


def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def numeric_fault_code(obs, reward, q_values, loss) -> jax.Array:
    """0 if all finite, else the code (``NUMERIC_FAULTS``) of the first non-finite quantity in data-flow order."""
    checks = [_all_finite(obs), _all_finite(reward), _all_finite(q_values), _all_finite(loss)]
    code = jnp.int32(0)
    for i in reversed(range(4)):
        code = jnp.where(checks[i], code, jnp.int32(i + 1))
    return code


def raise_on_numeric_fault(fault) -> None:
    """Host side of ``check_numerics``: raise naming the first non-finite quantity and its step."""
    import numpy as np

    steps = np.atleast_1d(np.asarray(fault["step"])).reshape(-1)
    codes = np.atleast_1d(np.asarray(fault["code"])).reshape(-1)
    bad = np.flatnonzero(steps >= 0)
    if bad.size:
        i = bad[np.argmin(steps[bad])]
        raise FloatingPointError(
            f"check_numerics: non-finite {NUMERIC_FAULTS[int(codes[i])]} at physical step {int(steps[i])}"
            + (f" (run {int(i)} of the vmapped batch)" if steps.size > 1 else "")
        )


#: Exact counts are ``hi * COUNT_BASE + lo`` with int32 ``0 <= lo < COUNT_BASE`` (float32 loses
#: integers above 2**24 and int32 overflows at 2**31; JAX has no int64 without x64 mode).
COUNT_BASE = 2**30


def count_add(hi: jax.Array, lo: jax.Array, increment) -> tuple[jax.Array, jax.Array]:
    """``(hi, lo) + increment`` for an exact ``hi * COUNT_BASE + lo`` count (0 <= increment < 2**30)."""
    total = lo + jnp.asarray(increment, jnp.int32)
    return hi + total // COUNT_BASE, total % COUNT_BASE


def count_value(hi, lo) -> jax.Array:
    """The float32 value of a ``(hi, lo)`` count (exact below 2**24, then to float32 rounding)."""
    return jnp.asarray(hi, jnp.float32) * COUNT_BASE + jnp.asarray(lo, jnp.float32)


def exact_twin_transitions(metrics) -> "np.ndarray":
    """The exact cumulative twin transitions of ``train(key).metrics`` (or a metrics row) as int64."""
    import numpy as np

    hi = np.asarray(metrics["twin_transitions_hi"], np.int64)
    return hi * COUNT_BASE + np.asarray(metrics["twin_transitions_lo"], np.int64)


#: The twin's random roles in one physical step; each gets its own stream (``step_keys``).
TWIN_KEY_ROLES = ("trials", "shield", "health", "advance", "lookahead")


def step_keys(loop_key: jax.Array, t, num_envs: int) -> dict[str, jax.Array]:
    """The random keys of vectorised physical step ``t``: one independent stream per role.

    ``act`` (exploration bits), ``learn`` and ``calibrate`` are single keys, ``env`` and every twin role in
    ``TWIN_KEY_ROLES`` are ``[num_envs]`` keys. JAX's ``fold_in(k, i)`` equals ``split(k, n)[i]``, so
    a role key must never be made by ``fold_in`` of a key that is also split per environment: here
    each role has its own parent key, split once into per-env keys. The physical keys are those of
    the first design (``act``, ``env``, ``learn`` = parts 0, 1, 4 of ``split(fold_in(loop_key, t), 5)``)
    so physical randomness, and any physical-only result, is unchanged; ``calibrate`` (the in-loop
    calibration phase) is part 3, unused before, so calibration changes no other stream.
    """
    key = jax.random.fold_in(loop_key, t)
    k_act, k_env, k_twin, k_calibrate, k_learn = jax.random.split(key, 5)
    keys = dict(act=k_act, env=jax.random.split(k_env, num_envs), learn=k_learn, calibrate=k_calibrate)
    for name, k in zip(TWIN_KEY_ROLES, jax.random.split(k_twin, len(TWIN_KEY_ROLES))):
        keys[name] = jax.random.split(k, num_envs)
    return keys


#: Most vectorised steps whose keys ``make_train``'s loop derives at once (``key_block``).
KEY_BLOCK = 64


def key_block(iterations: int, most: int = KEY_BLOCK) -> int:
    """Steps per block of key derivation: the largest divisor of ``iterations`` up to ``most`` (so
    blocks tile an interval exactly and the step body is traced once; the keys of a block take
    ``block * (5 * num_envs + 3)`` keys of memory per seed)."""
    return max(b for b in range(1, min(iterations, most) + 1) if iterations % b == 0)


@struct.dataclass
class RunnerState:
    """Everything the loop carries from one physical step to the next.

    Attributes:
      env_state, obs: the ``num_envs`` physical environments (leading axis ``[num_envs]``).
      agent_state: Q-table or network parameters, target parameters and optimiser state.
      storage: the storage space (replay), or None for tabular Q-learning.
      episode_return: float32 ``[num_envs]`` return of the running episodes.
      steps, episodes, violations: int32 cumulative physical counters.
      twin_transitions_hi, twin_transitions_lo: int32 exact cumulative number of twin env steps,
        ``hi * COUNT_BASE + lo`` (``twin_transitions`` is its float32 value).
      updates: int32 cumulative gradient/table updates.
      shielded, sync_events: int32 cumulative shield replacements and synchronisation events.
      twin_faults: int32 vectorised steps the twin was ready but unusable (outage or divergence).
      fault_step, fault_code: first physical step with a non-finite quantity (-1: none) and which
        one (see ``NUMERIC_FAULTS``); tracked when ``check_numerics`` is on.
      loop_key: the key whose ``fold_in`` with the step index drives each physical step.
      eval_key: the key whose ``fold_in`` with the interval index drives that interval's greedy
        evaluation (carried even when evaluation is off, so the state is the same either way).
      domains: the digital domains' state estimates (leading ``[num_envs, num_domains]``), or None.
      health: float32 ``[num_envs]`` running mean of each env's health-check surprise -log(p)
        (``dtrl_jax.twin.space.surprise``; 1 = a right twin's mean, the start value).
      healthy: bool ``[num_envs]`` the last health verdict per env (True without a check).
      calibration: ``dtrl_jax.twin.online.LoopCalibration`` (the recent physical transitions and the
        domains' current ``EnvParams``) when ``TwinConfig.calibrate_buffer`` > 0, else None.
    """

    env_state: Any
    obs: Any
    agent_state: Any
    storage: Any
    episode_return: jax.Array
    steps: jax.Array
    episodes: jax.Array
    violations: jax.Array
    twin_transitions_hi: jax.Array
    twin_transitions_lo: jax.Array
    updates: jax.Array
    shielded: jax.Array
    sync_events: jax.Array
    twin_faults: jax.Array
    fault_step: jax.Array
    fault_code: jax.Array
    domains: Any
    loop_key: jax.Array
    eval_key: jax.Array
    health: jax.Array
    healthy: jax.Array
    calibration: Any = None

    @property
    def twin_transitions(self) -> jax.Array:
        """Cumulative twin env steps as float32 (exact ones: ``twin_transitions_hi``/``_lo``)."""
        return count_value(self.twin_transitions_hi, self.twin_transitions_lo)


@struct.dataclass
class StepSchedule:
    """What the schedules say at one vectorised step (``make_train``'s ``schedule`` phase).

    Attributes:
      steps, steps_after: physical steps (summed over envs) before and after this step.
      keys: the step's random keys by role (``step_keys``).
      ready: the twin is built (``ready_after`` passed); available: ready and not in an outage window;
      usable: available and, with a health check, healthy at the last check (scalar or ``[num_envs]``).
      epsilon: the exploration rate.
    """

    steps: jax.Array
    steps_after: jax.Array
    keys: dict[str, jax.Array]
    ready: jax.Array
    available: jax.Array
    usable: jax.Array
    epsilon: jax.Array


@struct.dataclass
class PhysicalStep:
    """What the physical envs did this step (``[num_envs]`` leaves) and its 1-step transitions."""

    next_obs: Any
    next_state: Any
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    info: dict[str, Any]
    final_obs: Any
    transitions: Transition


@struct.dataclass
class IntervalSums:
    """The scan's accumulator over one logging interval (becomes the interval's metrics row)."""

    return_sum: jax.Array
    finished: jax.Array
    loss_sum: jax.Array
    updates: jax.Array
    epsilon: jax.Array
    ready: jax.Array

    @classmethod
    def zeros(cls) -> IntervalSums:
        return cls(return_sum=jnp.float32(0.0), finished=jnp.int32(0), loss_sum=jnp.float32(0.0),
                   updates=jnp.int32(0), epsilon=jnp.float32(0.0), ready=jnp.asarray(False))


@struct.dataclass
class TrainResult:
    """Output of ``train(key)``.

    Attributes:
      runner_state: the final ``RunnerState`` (agent parameters / Q-table, optimiser, replay).
      metrics: dict of arrays with one row per logging interval (``log_every`` physical steps),
        exactly the names of ``dtrl_jax.metrics.METRICS`` (which says what each one measures).
    """

    runner_state: RunnerState
    metrics: dict[str, jax.Array]


def _validate(config, spec: EnvSpec, env, env_params, twin_params) -> None:
    o = type(config).__name__
    if isinstance(config, QLearningConfig) and spec.num_states is None:
        raise ValueError(
            f"{o} needs a Discrete observation space (a state index), but env {spec.name!r} gives "
            f"array observations of shape {spec.obs_shape}; use DQNConfig, or an observation mode "
            "that yields a discrete index (e.g. dt.make('AccessPointSelection-v0'))"
        )
    twin = config.twin
    if twin is not None and twin.action_trials > spec.num_actions:
        raise ValueError(
            f"TwinConfig.action_trials={twin.action_trials} exceeds the {spec.num_actions} actions "
            f"of env {spec.name!r}; expected action_trials <= {spec.num_actions} "
            "(= number of actions is a full sweep)"
        )
    if twin is None:
        if twin_params is not None:
            raise ValueError("twin_params was given but config.twin is None; set a TwinConfig")
        return
    if twin.shield and not spec.has_violation:
        raise ValueError(
            f"TwinConfig.shield=True needs an env whose step info has a 'violation' flag; env "
            f"{spec.name!r} reports none"
        )
    if twin.share_global_obs and not callable(getattr(env, "global_observation", None)):
        raise ValueError(
            f"TwinConfig.share_global_obs=True needs an env with a global_observation(state, params) "
            f"method (e.g. MultiUAVPartial-v0); env {spec.name!r} has none"
        )
    if is_concrete(twin.obs_noise_std) and float(twin.obs_noise_std) > 0 and spec.num_states is not None:
        raise ValueError(
            f"TwinConfig.obs_noise_std={twin.obs_noise_std} cannot apply to the discrete observations of "
            f"env {spec.name!r}; use state_noise_std (noise on the twin's state) instead"
        )
    if twin.calibrate_buffer and twin.calibrate_buffer < config.num_envs:
        raise ValueError(
            f"TwinConfig.calibrate_buffer={twin.calibrate_buffer} is below num_envs={config.num_envs}; each "
            f"vectorised step writes num_envs transitions, so expected calibrate_buffer >= {config.num_envs}"
        )
    if twin.calibrates:
        check_config(env_params if twin_params is None else twin_params, twin.calibration_config)
    if twin_params is not None:
        ref = jax.tree.structure(env_params)
        if jax.tree.structure(twin_params) != ref:
            raise ValueError(
                "twin_params must be a stack of the env's EnvParams with the same static fields; got "
                f"{type(twin_params).__name__} with a different structure"
            )
        for path, leaf in jax.tree_util.tree_leaves_with_path(twin_params):
            shape = jnp.shape(leaf)
            if not shape or shape[0] != twin.num_domains:
                raise ValueError(
                    f"twin_params{jax.tree_util.keystr(path)} has shape {shape}; expected a leading "
                    f"axis of num_domains={twin.num_domains} (one EnvParams per domain)"
                )


def build_agent(config, spec: EnvSpec):
    """The agent object for ``config`` (one loop serves every agent through ``agents.base.Agent``)."""
    if isinstance(config, QLearningConfig):
        return TabularQAgent(spec.num_states, spec.num_actions, config)
    if isinstance(config, DQNConfig):
        return DQNAgent(spec.num_actions, spec.obs_example(), spec.num_states, config, spec.action_dims,
                        spec.afterstates)
    raise TypeError(f"config must be a QLearningConfig or DQNConfig, got {type(config).__name__}")


def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def _select_envs(pred, a, b):
    """``_select`` with a scalar or per-env ``[num_envs]`` ``pred`` over leaves ``[num_envs, ...]``."""
    pred = jnp.asarray(pred)
    return jax.tree.map(lambda x, y: jnp.where(jnp.reshape(pred, pred.shape + (1,) * (x.ndim - pred.ndim)), x, y), a, b)


def twin_learning_batch(trials, vetoed, twin_on, replace):
    """The twin transitions handed to ``agent.learn`` and their mask.

    ``trials``: ``[domains, num_envs]`` transitions or None; ``vetoed``: the shield's ``[num_envs]``
    twin transitions of the exploratory actions it checked, or None; ``twin_on``: scalar or
    ``[num_envs]``; ``replace``: ``[num_envs]`` which of them the shield vetoed. A vetoed action's
    transition is learned as one more twin domain, masked to the vetoed envs. Returns
    ``(batch, mask)`` with a mask broadcastable to ``[domains, num_envs]``.
    """
    if vetoed is None:
        return trials, twin_on
    vetoed = jax.tree.map(lambda x: x[None], vetoed)
    if trials is None:
        return vetoed, replace[None]
    batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b.astype(a.dtype)]), trials, vetoed)
    domains, num_envs = trials.action.shape[:2]
    mask = jnp.concatenate([jnp.broadcast_to(twin_on, (domains, num_envs)), replace[None]])
    return batch, mask


class Trainer:
    """The training program of one config on one env, as ``make_train`` returns it.

    Call it as ``train(key) -> TrainResult`` (pure: wrap it in ``jax.jit``, ``jax.vmap`` over keys,
    embed it in a larger program), or in two parts: ``init(key) -> (runner_state, interval_indices)``
    and ``run(runner_state, interval_indices) -> (runner_state, metrics)``, e.g. to run a long job
    in chunks of intervals with checkpoints between them (``dtrl_jax.experiment.runs``). Under
    ``jax.vmap`` over seeds, ``jax.vmap(train.run, in_axes=(0, None))`` shares the interval indices.

    Attributes:
      init, run: the two parts above (pure functions).
      config: the ``QLearningConfig`` / ``DQNConfig``.
      env, env_params: the environment as the loop runs it (wrapped by ``GlobalObservation`` when
        ``share_global_obs`` is on).
      agent: the agent object (``TabularQAgent`` or ``DQNAgent``).
    """

    def __init__(self, *, init: Callable, run: Callable, config, env, env_params, agent) -> None:
        self.init, self.run = init, run
        self.config, self.env, self.env_params, self.agent = config, env, env_params, agent

    def __call__(self, key: jax.Array) -> TrainResult:
        runner, intervals = self.init(key)
        runner, metrics = self.run(runner, intervals)
        return TrainResult(runner_state=runner, metrics=metrics)

    def estimate_memory(self, num_seeds: int = 1) -> dict[str, Any]:
        """This run's memory from shapes alone (see :func:`estimate_memory`)."""
        if isinstance(num_seeds, bool) or int(num_seeds) != num_seeds or int(num_seeds) < 1:
            raise ValueError(f"estimate_memory: num_seeds={num_seeds!r} must be an integer >= 1")
        num_seeds = int(num_seeds)
        runner, _ = jax.eval_shape(self.init, jax.random.key(0))
        return estimate_from_runner(self.config, self.env, self.env_params, runner, num_seeds=num_seeds)

    def __repr__(self) -> str:
        return f"Trainer({type(self.config).__name__} on {getattr(self.env, 'name', type(self.env).__name__)})"


def make_train(
    config: QLearningConfig | DQNConfig,
    env: Any,
    env_params: Any,
    *,
    twin_params: Any = None,
    on_interval: Callable[[dict[str, jax.Array]], None] | None = None,
    mesh: Any = None,
    check_memory: bool = True,
) -> Trainer:
    """Build the pure training function for ``config`` on ``env`` (any gymnax-1.x environment).

    Args:
      config: ``QLearningConfig`` or ``DQNConfig`` (with ``twin=None`` or a ``TwinConfig``).
      env: a gymnax ``Environment`` with a ``Discrete`` action space.
      env_params: its ``EnvParams``; the digital domains use them too unless ``twin_params`` is given.
      twin_params: optional stack of ``EnvParams`` with a leading ``[num_domains]`` axis: a
        mismatched (imperfect) twin, one parameter set per domain (see
        ``dtrl_jax.twin.mismatch.perturb_params``), or other scenarios per domain.
      on_interval: optional host function ``f(metrics_row)`` called from inside the compiled
        program at the end of every logging interval (progress bars, live logs). It fires once
        per interval however many ``vmap``s wrap ``train``; leaves then carry the batch axes,
        except those equal for every batch member (e.g. ``physical_steps`` under ``vmap`` over
        keys), which JAX may pass unbatched: use ``np.broadcast_to`` or reduce with ``np.mean``.
        None (default) adds nothing to the program.
      mesh: optional ``jax.sharding.Mesh``. With a ``"domains"`` axis the digital-domain axis (domain
        states, trials, rollouts, per-domain storage) is sharded over it (see ``dtrl_jax.sharding``);
        a ``"seeds"`` axis is used by ``dtrl_jax.distributed.shard_seeds`` to shard vmapped keys.
        Results match the unsharded program up to float reduction order.
      check_memory: when ``init`` is traced (so before compiling), estimate the run's memory from
        the shapes of its state (``dtrl_jax.memory``; logged at INFO on the ``dtrl_jax`` logger)
        and raise ``ValueError`` with the numbers if one run cannot fit the device. The estimate is
        per run: for ``jax.vmap`` over seeds use ``train.estimate_memory(num_seeds)`` (or ``dtrl_jax.estimate_memory(...,
        num_seeds=S)`` with ``check_fits`` (the CLI does).
    Returns:
      A :class:`Trainer`: ``train(key) -> TrainResult``, pure and jittable; ``jax.vmap(train)`` runs
      seeds in parallel.
      ``train.init(key) -> (runner_state, intervals)`` and
      ``train.run(runner_state, intervals) -> (runner_state, metrics)`` split it at interval
      boundaries: ``intervals`` are the indices of the logging intervals to run, and running
      ``intervals[:i]`` then ``intervals[i:]`` equals one full run, which is what
      checkpoint/resume builds on. With ``jax.vmap`` over seeds, vmap ``run`` with
      ``in_axes=(0, None)`` (intervals shared by all seeds) so updates stay conditional branches. The random stream of physical step t is
      ``fold_in(loop_key, t)``, so results do not depend on ``log_every``.
      ``train.env``/``train.env_params`` are the environment the loop runs (wrapped when
      ``share_global_obs``), ``train.agent`` the agent object, ``train.config`` the config.
    Raises:
      ValueError/TypeError: before any tracing, for a config the environment cannot support; and
        ``ValueError`` from ``init`` (before compiling) for a run that cannot fit in memory.
    """
    if not isinstance(config, (QLearningConfig, DQNConfig)):
        raise TypeError(f"config must be a QLearningConfig or DQNConfig, got {type(config).__name__}")
    if not isinstance(check_memory, bool):
        raise TypeError(f"make_train: check_memory={check_memory!r}: expected a bool")
    twin = config.twin
    spec = inspect_env(env, env_params)
    _validate(config, spec, env, env_params, twin_params)
    if mesh is not None:
        validate_mesh(mesh, twin)
    shard = DomainSharding(mesh)
    use_global = twin is not None and twin.share_global_obs
    if use_global:
        env = GlobalObservation(env)
        env_params = env.wrap_params(env_params)
        if twin_params is not None:
            twin_params = env.wrap_params(twin_params).replace(
                scale=jnp.ones((twin.num_domains,), jnp.float32)
            )
        spec = inspect_env(env, env_params)
    agent = build_agent(config, spec)
    use_space = twin is not None and twin.uses_domains
    use_trials = use_space and twin.uses_trials
    use_lookahead = use_space and twin.uses_lookahead
    use_shield = use_space and twin.shield
    num_envs = config.num_envs
    gamma = config.gamma
    space = None
    if use_space:
        space = DigitalSpace(
            env, env_params, twin_params, twin,
            can_observe=spec.can_observe, obs_is_float=spec.num_states is None,
        )
    # Twin env steps per environment and vectorised step, by what they depend on (item counts
    # are exact: see count_add). "available": the twin is built and not in an outage; "usable":
    # available and healthy before the step (shield); "on": available and healthy after it.
    health_checked = use_space and twin.health_checked
    health_steps = twin.health_draws if health_checked else 0
    always_sync = not use_space or twin.sync_every <= num_envs
    simulated_steps = 0 if always_sync else twin.num_domains - 1
    on_steps = 0
    if use_space:
        on_steps = (twin.action_trials - 1 if use_trials else 0) + (
            twin.lookahead_rollouts * (twin.lookahead - 1) if use_lookahead else 0
        )
    use_calibration = use_space and twin.calibrate_buffer > 0
    calibration_prior = None
    if use_calibration:  # the initial per-domain params: the bounds of every phase
        calibration_prior = replicate(env_params, twin.num_domains) if twin_params is None else twin_params

    def domain_space(runner: RunnerState) -> DigitalSpace:
        """The digital space stepping with the carried (calibrated) params, or with the given ones."""
        return space.with_params(runner.calibration.params) if use_calibration else space

    def calibration_step(runner: RunnerState, actions: jax.Array, final_obs: Any, reward: jax.Array,
                         steps: jax.Array, steps_after: jax.Array, key: jax.Array) -> Any:
        """Record this step's physical transitions; a calibration phase when ``calibrate_every`` is crossed.

        ``steps`` comes from the scan index, so under ``jax.vmap`` over seeds the ``lax.cond`` stays
        a branch (the phase runs only at its steps)."""
        if not use_calibration:
            return None
        state_t = jax.tree.map(lambda x: x[:, 0], runner.domains.states)  # the identical domain's s_t
        cal = online.record(runner.calibration, steps, state_t, actions, final_obs, reward)
        if not twin.calibrates:
            return cal

        def fit(c):
            return online.phase(env, c, calibration_prior, key, twin.calibration_config, twin.calibrate_per_domain)

        now = crossed(steps, steps_after, twin.calibrate_every)
        if twin.calibrate_until is not None:
            now = now & (steps < twin.calibrate_until)
        return jax.lax.cond(now, fit, lambda c: c, cal)

    def twin_error_metric(runner: RunnerState, index: jax.Array) -> jax.Array:
        if not use_calibration:
            return jnp.float32(jnp.nan)
        key = jax.random.fold_in(jax.random.fold_in(runner.eval_key, TWIN_ERROR_STREAM), index)
        return online.buffer_twin_error(env, runner.calibration, key, twin.calibration_samples)

    if num_envs * (health_steps + simulated_steps + 1 + on_steps) >= COUNT_BASE:
        raise ValueError("twin steps per vectorised step exceed 2**30; reduce num_envs or num_domains")

    def gated_params(params: Any, ready: jax.Array) -> Any:
        """With a global view, its features are zero until the twin is ready."""
        if not use_global:
            return params
        scale = jnp.asarray(ready, jnp.float32)
        return params.replace(scale=jnp.broadcast_to(scale, jnp.shape(params.scale)))

    def twin_policy(agent_state: Any, epsilon: jax.Array) -> Callable[[jax.Array, Any], jax.Array]:
        """The twin agent: the physical agent's current parameters, greedy or epsilon-greedy."""

        def policy(key, obs):
            q = agent.q_values(agent_state, obs)
            if twin.lookahead_policy == "epsilon":
                return epsilon_greedy(key, q, epsilon)
            return greedy_action(key, q)

        return policy

    def physical_env_params(gate: jax.Array) -> tuple[Any, Any]:
        """The physical ``EnvParams`` and their vmap axis; ``gate`` scales the global view (scalar or
        per env, ``[num_envs]``: then each env's view is on while its own twin is usable)."""
        if not use_global or jnp.ndim(gate) == 0:
            return gated_params(env_params, gate), None
        params = env_params.replace(scale=jnp.asarray(gate, jnp.float32))
        return params, GlobalObsParams(inner=None, scale=0)

    # ---------------------------------------------------------------------------------------------
    # One vectorised physical step, in named phases. Each phase is a pure function of what the
    # phases before it produced; ``iteration`` below reads top to bottom as the paper's loop.
    # ---------------------------------------------------------------------------------------------
    def schedule(runner: RunnerState, t: jax.Array, keys: dict[str, jax.Array]) -> StepSchedule:
        """What the schedules say at vectorised step ``t``: step counts, keys, twin readiness, epsilon.

        Schedules (epsilon, readiness, outages, syncs, when to update) read the step count from the
        scan index t, never from the carried counter: under jax.vmap over seeds t is not batched,
        so the learner's lax.cond stays a branch instead of becoming a select that runs both.
        ``keys`` are ``step_keys(runner.loop_key, t, num_envs)``, derived a block of steps at a time
        by ``interval``."""
        steps = t * num_envs  # == runner.steps
        ready = jnp.asarray(True) if twin is None else steps >= twin.ready_after
        available = ready & ~in_windows(steps, twin.outage_windows if twin is not None else ())
        # With a health check, the twin of each env is used only while its check passes: the shield
        # and the global view act before this step's check, so they read the previous verdict.
        usable = available & runner.healthy if health_checked else available
        return StepSchedule(
            steps=steps,
            steps_after=steps + num_envs,
            keys=keys,
            ready=ready,
            available=available,
            usable=usable,
            epsilon=linear_epsilon(steps, config.epsilon_start, config.epsilon_end, config.decay_steps),
        )

    def act(runner: RunnerState, sch: StepSchedule) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Epsilon-greedy actions of the physical agent: ``(q, actions, explored, greedy)``."""
        q = jax.vmap(agent.q_values, in_axes=(None, 0))(runner.agent_state, runner.obs)
        actions, explored, greedy = jax.vmap(explore_flags_from_bits, in_axes=(0, 0, None))(
            jax.random.bits(sch.keys["act"], (num_envs, 3), jnp.uint32), q, sch.epsilon
        )
        return q, actions, explored, greedy

    def shield_phase(space: DigitalSpace, runner: RunnerState, sch: StepSchedule, actions: jax.Array,
                     explored: jax.Array, greedy: jax.Array) -> tuple[jax.Array, Any, Any, jax.Array]:
        """The shield: an exploratory action the identical domain flags is replaced by the greedy one.
        Returns ``(actions, vetoed transitions or None, replaced [num_envs] or None, count)``."""
        if not use_shield:
            return actions, None, None, jnp.int32(0)
        flagged, vetoed = jax.vmap(lambda k, d, a: space.shield_check(k, d, a, gamma=gamma))(
            sch.keys["shield"], runner.domains, actions
        )
        replace = sch.usable & explored & (actions != greedy) & flagged
        return jnp.where(replace, greedy, actions), vetoed, replace, jnp.sum(replace.astype(jnp.int32))

    def physical_step(runner: RunnerState, sch: StepSchedule, actions: jax.Array) -> PhysicalStep:
        """Step the physical envs (the global view gated per env) and form the 1-step transitions."""
        phys_params, params_axis = physical_env_params(sch.usable)
        next_obs, next_state, reward, terminated, truncated, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, params_axis)
        )(sch.keys["env"], runner.env_state, actions, phys_params)
        final_obs = info["final_observation"]
        transitions = jax.vmap(one_step_transition, in_axes=(0, 0, 0, 0, 0, None))(
            runner.obs, actions, reward, terminated, final_obs, gamma
        )
        return PhysicalStep(next_obs=next_obs, next_state=next_state, reward=reward, terminated=terminated,
                            truncated=truncated, info=info, final_obs=final_obs, transitions=transitions)

    def health_phase(space: DigitalSpace, runner: RunnerState, sch: StepSchedule, actions: jax.Array,
                     ps: PhysicalStep) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Is each env's twin plausible given what the physical env just did? ``(twin_on, healthy,
        health)``; without a health check the twin is on wherever it is available."""
        if not health_checked:
            return sch.available, runner.healthy, runner.health
        health = runner.health
        scale = jnp.broadcast_to(jnp.asarray(sch.usable, jnp.float32), (num_envs,)) if use_global else None
        p_value, nearest = jax.vmap(
            lambda k, d, a, o, s: space.health_check(k, d, a, o, s), in_axes=(0, 0, 0, 0, 0 if use_global else None)
        )(sch.keys["health"], runner.domains, actions, (ps.final_obs, ps.reward, ps.terminated), scale)
        healthy = jnp.ones((num_envs,), bool)
        if twin.health_samples:
            update = health + (surprise(p_value) - health) / twin.health_window
            # Clipped as far above the threshold as a right twin's mean (1) is below it, so a
            # twin that is right again is trusted again after about health_window * log(2) steps.
            update = jnp.minimum(update, 2.0 * twin.health_threshold - 1.0)
            health = jnp.where(sch.available, update, health)
            healthy = health <= twin.health_threshold
        if twin.max_divergence is not None:
            healthy = healthy & (nearest <= twin.max_divergence)
        return sch.available & healthy, healthy, health  # twin_on: [num_envs]

    def twin_step(space: DigitalSpace, runner: RunnerState, sch: StepSchedule, actions: jax.Array,
                  ps: PhysicalStep, twin_on: jax.Array) -> tuple[Any, Any, jax.Array, Transition]:
        """The digital domains: action trials from s_t, advance to s_{t+1} (sync or simulate), and the
        look-ahead rollouts that replace the physical transitions' targets where the twin is on.
        Returns ``(trials [domains, num_envs] or None, domains, sync_now, physical transitions)``."""
        physical = ps.transitions
        if not use_space:
            return None, runner.domains, jnp.asarray(False), physical
        trials = None
        if use_trials:
            trials = jax.vmap(
                lambda k, d, a: space.trials(k, d, a, num_actions=spec.num_actions, gamma=gamma)
            )(sch.keys["trials"], runner.domains, actions)
            # [num_envs, domains, ...] -> [domains, num_envs, ...]: storage is per domain.
            trials = shard.constrain(jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), trials), 0)
        # Like every other schedule: a sync when the physical step count (summed over envs)
        # crosses a multiple of sync_every; with sync_every <= num_envs that is every step.
        sync_now = jnp.asarray(True) if always_sync else crossed(sch.steps, sch.steps_after, twin.sync_every)
        noise = state_noise_std(twin, sch.steps)
        if twin.burst_windows:
            noise = noise + burst_std(sch.steps, twin.burst_windows)
        domains = jax.vmap(
            lambda k, d, a, s, o: space.advance(k, d, a, s, o, True if always_sync else sync_now, noise)
        )(sch.keys["advance"], runner.domains, actions, ps.next_state, ps.next_obs)
        domains = shard.constrain(domains, 1)
        if use_lookahead:
            policy = twin_policy(runner.agent_state, sch.epsilon)
            looked = jax.vmap(
                lambda k, d, o, a, r, te, tr, fo: space.rollouts(
                    k, d, policy, obs=o, action=a, reward=r, terminated=te, truncated=tr,
                    final_obs=fo, gamma=gamma,
                )
            )(sch.keys["lookahead"], domains, runner.obs, actions, ps.reward,
              ps.terminated, ps.truncated, ps.final_obs)
            looked = looked.replace(
                returns=shard.constrain(looked.returns, 1),
                discounts=shard.constrain(looked.discounts, 1),
                next_obs=shard.constrain(looked.next_obs, 1),
            )
            padded = jax.vmap(lambda t: pad_branches(t, twin.lookahead_rollouts))(physical)
            physical = _select_envs(twin_on, looked, padded)
        return trials, domains, sync_now, physical

    def learn_phase(runner: RunnerState, sch: StepSchedule, physical: Transition, trials: Transition | None,
                    vetoed: Transition | None, twin_on: jax.Array, replace: jax.Array | None,
                    rewards: jax.Array) -> tuple[Any, Any, Any]:
        """``agent.learn`` on this step's physical and twin transitions: ``(agent_state, storage, stats)``.

        The vetoed actions' twin transitions are learned as one more twin domain (the last), masked
        to the vetoed envs: tabular Q updates on them, DQN keeps them in a replay of its own."""
        twin_batch, twin_mask = twin_learning_batch(trials, vetoed, twin_on, replace)
        experience = Experience(physical=physical, twin=twin_batch, twin_mask=twin_mask,
                                steps_before=sch.steps, steps_after=sch.steps_after, rewards=rewards)
        agent_state, storage, stats = agent.learn(runner.agent_state, runner.storage, experience, sch.keys["learn"])
        if use_trials and getattr(storage, "twin", None) is not None:
            storage = storage.replace(twin=shard.constrain(storage.twin, 0))
        return agent_state, storage, stats

    def twin_step_count(sch: StepSchedule, sync_now: jax.Array, twin_on: jax.Array) -> jax.Array:
        """Twin env steps of this vectorised step, exactly (see the counts above ``schedule``)."""
        if not use_space:
            return jnp.int32(0)
        per_env = (
            jnp.where(sch.available, health_steps + jnp.where(sync_now, 0, simulated_steps), 0)
            + jnp.where(sch.usable, 1 if use_shield else 0, 0)
            + jnp.where(twin_on, on_steps, 0)
        )
        return jnp.sum(jnp.broadcast_to(per_env, (num_envs,)).astype(jnp.int32))

    def iteration(carry: tuple[RunnerState, IntervalSums], xs: tuple[jax.Array, dict[str, jax.Array]]):
        """One vectorised physical step: act, shield, physical step, health check, twin step, learn,
        calibrate, bookkeeping. ``xs`` is the step index and its keys (``step_keys``)."""
        runner, acc = carry
        t, keys = xs
        space = domain_space(runner)
        sch = schedule(runner, t, keys)
        q, actions, explored, greedy = act(runner, sch)
        actions, vetoed, replace, shielded = shield_phase(space, runner, sch, actions, explored, greedy)
        ps = physical_step(runner, sch, actions)
        twin_on, healthy, health = health_phase(space, runner, sch, actions, ps)
        trials, domains, sync_now, physical = twin_step(space, runner, sch, actions, ps, twin_on)
        agent_state, storage, stats = learn_phase(runner, sch, physical, trials, vetoed, twin_on, replace, ps.reward)
        calibration = calibration_step(
            runner, actions, ps.final_obs, ps.reward, sch.steps, sch.steps_after, sch.keys["calibrate"]
        )

        # Bookkeeping: episode returns, counters, numerics, the interval's sums.
        done = jnp.logical_or(ps.terminated, ps.truncated)
        ep_return = runner.episode_return + ps.reward.astype(jnp.float32)
        violation = (
            jnp.sum(ps.info["violation"].astype(jnp.int32)) if spec.has_violation else jnp.int32(0)
        )
        finished = jnp.sum(done.astype(jnp.int32))
        twin_hi, twin_lo = count_add(
            runner.twin_transitions_hi, runner.twin_transitions_lo, twin_step_count(sch, sync_now, twin_on)
        )
        fault_step, fault_code = runner.fault_step, runner.fault_code
        if config.check_numerics:
            code = numeric_fault_code(ps.next_obs, ps.reward, q, stats.loss_sum)
            first = (fault_step < 0) & (code > 0)
            fault_step = jnp.where(first, sch.steps, fault_step)
            fault_code = jnp.where(first, code, fault_code)
        faults = jnp.sum(jnp.broadcast_to(sch.ready & ~twin_on, (num_envs,)).astype(jnp.int32))
        runner = runner.replace(
            env_state=ps.next_state,
            obs=ps.next_obs,
            agent_state=agent_state,
            storage=storage,
            episode_return=jnp.where(done, 0.0, ep_return),
            steps=sch.steps_after,
            episodes=runner.episodes + finished,
            violations=runner.violations + violation,
            twin_transitions_hi=twin_hi,
            twin_transitions_lo=twin_lo,
            updates=runner.updates + stats.updates,
            shielded=runner.shielded + shielded,
            sync_events=runner.sync_events + (sync_now & sch.available).astype(jnp.int32),
            twin_faults=runner.twin_faults + faults,
            fault_step=fault_step,
            fault_code=fault_code,
            domains=domains,
            health=health,
            healthy=healthy,
            calibration=calibration,
        )
        acc = IntervalSums(
            return_sum=acc.return_sum + jnp.sum(jnp.where(done, ep_return, 0.0)),
            finished=acc.finished + finished,
            loss_sum=acc.loss_sum + stats.loss_sum,
            updates=acc.updates + stats.updates,
            epsilon=sch.epsilon,
            ready=sch.ready,
        )
        return (runner, acc), None

    def interval(runner: RunnerState, index: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        acc = IntervalSums.zeros()
        per = config.iterations_per_interval
        first = jnp.asarray(index, jnp.int32) * per
        block = key_block(per)
        steps = (first + jnp.arange(per, dtype=jnp.int32)).reshape(per // block, block)

        def steps_block(carry, ts):
            # The keys of a block of steps in one vectorised derivation: the same bits as deriving
            # them step by step (threefry is elementwise), at one threefry loop per block instead of
            # several per step, which is a visible share of a small network's step on a CPU.
            keys = jax.vmap(step_keys, in_axes=(None, 0, None))(carry[0].loop_key, ts, num_envs)
            return jax.lax.scan(iteration, carry, (ts, keys))

        (runner, acc), _ = jax.lax.scan(steps_block, (runner, acc), steps)
        metrics = dict(
            physical_steps=runner.steps,
            physical_episodes=runner.episodes,
            episode_return=jnp.where(
                acc.finished > 0, acc.return_sum / jnp.maximum(acc.finished, 1), jnp.nan
            ),
            episodes_finished=acc.finished,
            twin_transitions=runner.twin_transitions,
            twin_transitions_hi=runner.twin_transitions_hi,
            twin_transitions_lo=runner.twin_transitions_lo,
            loss=acc.loss_sum / jnp.maximum(acc.updates, 1).astype(jnp.float32),
            updates=runner.updates,
            epsilon=acc.epsilon,
            violations=runner.violations,
            shielded=runner.shielded,
            twin_ready=acc.ready.astype(jnp.int32) if twin is not None else jnp.int32(0),
            sync_events=runner.sync_events,
            twin_faults=runner.twin_faults,
            **evaluation(runner, index),
            twin_error=twin_error_metric(runner, index),
        )
        check_metric_names(metrics)
        if numerics_reporter is not None:
            numerics_reporter({"step": runner.fault_step, "code": runner.fault_code})
        if reporter is not None:
            reporter(metrics)
        return runner, metrics

    eval_limit = episode_limit(env, env_params, config.eval_max_steps) if config.eval_episodes else 0

    def evaluation(runner: RunnerState, index) -> dict[str, jax.Array]:
        """Greedy episodes on fresh physical envs with the current parameters (own key stream)."""
        if not config.eval_episodes:
            nan = jnp.float32(jnp.nan)
            return dict(eval_return=nan, eval_length=nan)
        ready = jnp.asarray(True) if twin is None else runner.steps >= twin.ready_after
        params = gated_params(env_params, ready)  # the view the physical agent has at this point
        result = evaluate(
            jax.random.fold_in(runner.eval_key, index), agent, runner.agent_state, env, params,
            config.eval_episodes, epsilon=config.eval_epsilon, max_steps=eval_limit,
        )
        return dict(
            eval_return=jnp.mean(result.returns),
            eval_length=jnp.mean(result.lengths.astype(jnp.float32)),
        )

    reporter = None if on_interval is None else once_per_batch(on_interval)
    numerics_reporter = once_per_batch(raise_on_numeric_fault) if config.check_numerics else None

    def guard_memory(key):
        """Shapes of the state, without allocating it: refuse a run that cannot fit."""
        runner, _ = jax.eval_shape(build_state, key)
        estimate = estimate_from_runner(config, env, env_params, runner, spec=spec)
        logger.info("%s on %s: %s", type(config).__name__, spec.name, describe(estimate))
        check_fits(estimate)

    def init(key: jax.Array) -> tuple[RunnerState, jax.Array]:
        if check_memory:
            guard_memory(key)
        return build_state(key)

    def build_state(key: jax.Array):
        k_init, k_reset, k_loop = jax.random.split(key, 3)
        ready0 = jnp.asarray(True) if twin is None else 0 >= jnp.asarray(twin.ready_after)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, num_envs), gated_params(env_params, ready0)
        )
        agent_state = agent.init(k_init)
        example = one_step_transition(spec.obs_example(), 0, 0.0, False, spec.obs_example(), gamma)
        physical_example = pad_branches(example, twin.lookahead_rollouts) if use_lookahead else example
        storage = agent.init_storage(physical_example, example if use_trials else None)
        domains = None
        if use_space:
            k_dom = jax.random.fold_in(k_init, 1)
            domains = jax.vmap(space.copy_physical, in_axes=(0, 0, 0, None))(
                jax.random.split(k_dom, num_envs), env_state, obs, state_noise_std(twin, 0)
            )
            domains = shard.constrain(domains, 1)
        runner = RunnerState(
            env_state=env_state,
            obs=obs,
            agent_state=agent_state,
            storage=storage,
            episode_return=jnp.zeros((num_envs,), jnp.float32),
            steps=jnp.int32(0),
            episodes=jnp.int32(0),
            violations=jnp.int32(0),
            twin_transitions_hi=jnp.int32(0),
            twin_transitions_lo=jnp.int32(0),
            updates=jnp.int32(0),
            shielded=jnp.int32(0),
            sync_events=jnp.int32(0),
            twin_faults=jnp.int32(0),
            fault_step=jnp.int32(-1),
            fault_code=jnp.int32(0),
            domains=domains,
            loop_key=k_loop,
            eval_key=jax.random.fold_in(key, EVAL_STREAM),
            health=jnp.ones((num_envs,), jnp.float32),
            healthy=jnp.ones((num_envs,), bool),
            calibration=online.init_calibration(jax.tree.map(lambda x: x[0], env_state), spec.obs_example(),
                                                calibration_prior, twin.calibrate_buffer) if use_calibration else None,
        )
        return runner, jnp.arange(config.num_intervals, dtype=jnp.int32)

    def run(runner: RunnerState, intervals: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        """Run the logging intervals whose indices are ``intervals`` (a slice of ``init``'s output).

        Under ``jax.vmap`` over seeds, pass ``intervals`` unbatched (``in_axes=(0, None)``): the
        step schedules then stay unbatched and the update's ``lax.cond`` stays a real branch.
        """
        return jax.lax.scan(interval, runner, intervals)

    return Trainer(init=init, run=run, config=config, env=env, env_params=env_params, agent=agent)


def estimate_memory(config, env, env_params, *, twin_params=None, num_seeds: int = 1) -> dict[str, Any]:
    """Bytes a run of ``config`` on ``env`` needs, from shapes alone (``jax.eval_shape``; nothing allocated).

    Args:
      config: a ``DQNConfig`` or ``QLearningConfig``.
      env, env_params: the physical environment (any gymnax environment) and its parameters.
      twin_params: the optional per-domain ``EnvParams`` stack given to ``make_train``.
      num_seeds: runs vmapped together (``jax.vmap(train)`` over that many keys); every part scales
        with it.
    Returns:
      A dict of ints (bytes), per seed unless named ``total``: ``replay_physical_bytes`` (physical
      replay storage), ``replay_twin_bytes`` (the twin's per-domain storage and the shield's vetoed transitions), ``domain_states_bytes``
      (the digital domains' states and observations), ``agent_bytes`` (parameters, target parameters,
      optimiser state or Q-table), ``env_states_bytes`` (physical environments and their
      observations), ``metrics_bytes`` (one row per logging interval), ``twin_step_bytes`` (one
      vectorised step's twin temporaries), ``calibration_bytes`` (in-loop calibration's buffer, parameter
      stack and one phase's temporaries; 0 without it), ``per_seed_bytes`` (their sum), ``num_seeds`` and
      ``total_bytes`` (``per_seed_bytes * num_seeds``), plus ``num_domains``, ``buffer_size`` and
      ``twin_buffer_size`` (transitions per domain) for the message of ``dtrl_jax.memory.check_fits``.
    """
    return make_train(config, env, env_params, twin_params=twin_params, check_memory=False).estimate_memory(num_seeds)

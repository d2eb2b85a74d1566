"""Typed, frozen, validated configs: ``TwinConfig``, ``QLearningConfig`` and ``DQNConfig``.

Each config is a ``flax.struct.dataclass`` and therefore a pytree. Fields that fix array shapes or
program structure (counts, sizes, switches) are *static* (``pytree_node=False``): changing one
recompiles. Every other field (learning rate, gamma, epsilon schedule, soft-update rate, ...) is a
*traced* leaf, so ``jax.vmap`` over it (a hyper-parameter sweep) compiles once::

    sweep = jax.vmap(lambda lr: make_train(cfg.replace(learning_rate=lr), env, params)(key))

Validation runs in ``__post_init__`` (so on construction and on ``.replace``) and raises
``ValueError``/``TypeError`` naming the field, the value and what is allowed. Traced values are
skipped: they cannot be inspected without breaking the single compilation. Checks that need the
environment (e.g. ``action_trials`` <= number of actions) run in ``make_train``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from flax import struct

from dtrl_jax._checks import check_choice, check_number, check_positive_int, check_windows, is_concrete


def _static(default: Any, doc: str):
    return struct.field(pytree_node=False, default=default, metadata={"doc": doc})


def _traced(default: Any, doc: str):
    return struct.field(pytree_node=True, default=default, metadata={"doc": doc})


def field_docs(config_cls: type) -> dict[str, str]:
    """``{field: one-line documentation}`` for a config class (used by docs and the CLI)."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(config_cls)}


@struct.dataclass
class TwinConfig:
    """The digital space: D digital domains that twin the physical environment and agent.

    Domain 0 is the identical domain (mirrors the physical state every step); the others are
    different domains, synchronised every ``sync_every`` steps. Every feature is off or neutral by
    default; only ``num_domains`` is set. See ``dtrl_jax.twin.space`` for the exact semantics.
    """

    num_domains: int = _static(1, "Number D of digital domains (the vmap axis of the digital space); >= 1.")
    action_trials: int = _static(
        1,
        "Simultaneous action trials n: from each physical state, n distinct actions (the physical one "
        "included) are executed, the n - 1 others in different domains; every twin transition goes to "
        "storage (DQN) or updates Q (tabular). 1 = off; n = number of actions is a full sweep. "
        "Requires n <= num_domains.",
    )
    lookahead: int = _static(
        0,
        "Look-ahead k: the TD target of each physical transition is the k-step discounted return, "
        "averaged over twin rollouts under the current policy, bootstrapped with gamma**k max_a "
        "Q_target(s_{t+k}, a). 0 or 1 = ordinary 1-step target.",
    )
    lookahead_rollouts: int = _static(
        1,
        "Number M of twin rollouts averaged for each look-ahead target (each in its own domain); "
        "requires M <= num_domains.",
    )
    lookahead_policy: str = _static(
        "greedy",
        "Policy of the twin agent during look-ahead rollouts: 'greedy' (the physical agent's current "
        "greedy policy; estimates the optimal value, matching the max bootstrap) or 'epsilon' (its "
        "current epsilon-greedy behaviour policy).",
    )
    twin_data_fraction: float | None = _static(
        None,
        "Share of twin transitions in each DQN batch, in [0, 1]; None = in proportion to the data the "
        "domains produce ((n - 1) / n with n action trials). Static: it fixes the batch split.",
    )
    twin_buffer_size: int | None = _static(
        None,
        "Capacity of the twin storage for DQN, all trial domains together (split evenly). None = "
        "buffer_size per trial domain: each twin buffer then spans the same last buffer_size / "
        "num_envs physical steps as the physical buffer, so twin data is neither staler nor fresher "
        "than physical data (dtrl_jax.storage.twin_capacity_per_domain).",
    )
    sync_every: int = _static(
        1,
        "Different domains copy the physical state every sync_every physical steps and otherwise "
        "simulate the physical agent's actions on their own (their trials and rollouts start from "
        "their own states); 1 = always synchronised. The identical domain 0 mirrors every step. "
        "Counted like every schedule in physical steps summed over num_envs: a sync at each "
        "vectorised step that crosses a multiple of sync_every, so each env syncs about every "
        "sync_every / num_envs of its own steps (every step when sync_every <= num_envs).",
    )
    state_noise_std: float = _traced(
        0.0, "Std of Gaussian noise added to every float leaf of the state copied at each sync; >= 0."
    )
    obs_noise_std: float = _traced(
        0.0,
        "Std of Gaussian noise on the twin's observations (trial transitions and look-ahead bootstrap "
        "observations); >= 0; float observations only.",
    )
    average_rollouts: bool = _static(
        True,
        "Average the look-ahead target over the M domains (the paper's mitigation of twin noise); "
        "False uses one randomly chosen domain's rollout per transition.",
    )
    ready_after: int = _traced(
        0,
        "Construction delay: physical steps before any twin feature is used; before that the loop is "
        "exactly physical RL. >= 0.",
    )
    build_steps: int = _traced(
        0,
        "Length of the twin's build period in physical steps: extra state noise build_noise_std at "
        "step 0 decays linearly to 0 over it. 0 = no build schedule.",
    )
    build_noise_std: float = _traced(0.0, "Extra state-noise std at step 0 of the build period; >= 0.")
    shield: bool = _static(
        False,
        "Safe exploration: an exploratory physical action is first tried in the identical domain; if "
        "the twin shows info['violation'], the greedy action is taken instead. Needs an env whose "
        "info has 'violation'.",
    )
    outage_windows: tuple = _static(
        (),
        "Twin outages for fault injection: ((start, end), ...) physical-step windows [start, end) in "
        "which the twin is unavailable; the loop falls back to physical-only updates there.",
    )
    burst_windows: tuple = _static(
        (),
        "Twin divergence injection: ((start, end, std), ...) windows [start, end) in which std is "
        "added to the state-noise std of every synchronisation.",
    )
    health_samples: int = _static(
        0,
        "Twin health check, per environment: each step the identical domain draws this many outcomes "
        "(next observation, reward, termination) of the physical action from its estimate of s_t; the "
        "rank of the physical outcome among them gives a p-value that is exactly uniform when the twin "
        "is right, on stochastic as on deterministic envs (DigitalSpace.health_check). When the running "
        "mean of its surprise -log(p) over about health_window steps exceeds health_threshold, that "
        "env's twin is unhealthy: its steps are physical-only and its shield and global view are off. "
        "Detects a wrong one-step outcome distribution (mismatched params of domain 0, a noisy, stale "
        "or broken identical-domain state, non-finite twin output); cannot detect errors that show only "
        "after several steps, in parts of the state no observation, reward or termination reveals "
        "within a step, or in the different domains' own params, nor shifts too small or rare to move "
        "the running mean within the window. 0 = off (unless max_divergence is set); 4 to 8 advised.",
    )
    health_window: float = _traced(
        200.0,
        "Time constant, in each env's own steps, of the running mean of the health check's surprise "
        "-log(p) (an exponential average with weight 1 / health_window, starting at 1 and clipped at "
        "2 * health_threshold - 1); >= 1. Longer: fewer false alarms and finer faults caught, slower "
        "detection (about health_window steps for a gross fault) and recovery (health_window * log 2 "
        "steps once the twin is right again).",
    )
    health_threshold: float = _traced(
        1.3,
        "An env's twin is unhealthy while the running mean surprise exceeds this; > 1. A right twin's "
        "surprise is Exp(1): mean 1, running-mean std about 1 / sqrt(2 * health_window) (0.05 at 200, "
        "so 1.3 is 6 std); a twin whose outcome never matches its K draws has mean 1 + log(K + 1).",
    )
    max_divergence: float | None = _static(
        None,
        "Hard per-step health bound, per environment: a step whose physical outcome is farther than "
        "this from every one of the identical domain's draws (max abs difference over float "
        "components; 1 for any mismatch of integer or boolean ones, so any value < 1 asks for an "
        "exact match of a discrete observation) is physical-only at once, with no running mean. "
        "Fit for deterministic envs and gross faults (bursts); on a stochastic env with discrete "
        "observations it fires whenever no draw matches. None = no bound.",
    )
    share_global_obs: bool = _static(
        False,
        "Augment the agent's observation with the global observation read from the identical domain "
        "(env.global_observation); zeros until the twin is ready. Needs an env that offers it.",
    )

    calibrate_every: int = _static(
        0,
        "In-loop calibration: every calibrate_every physical steps (summed over num_envs, a phase at each "
        "vectorised step that crosses a multiple) the twin's calibrate_fields are fitted to the last "
        "calibrate_buffer physical transitions, inside the compiled program "
        "(dtrl_jax.twin.online, dtrl_jax.twin.calibration.calibrate); the domains use the result from "
        "the next step on. Needs calibrate_fields, calibrate_buffer >= num_envs and a twin feature that "
        "runs the domains. 0 = off; >= 0.",
    )
    calibrate_until: int | None = _static(
        None,
        "Calibration phases only while the physical step count is below this (e.g. the end of the epsilon "
        "decay: later physical data come from a near-greedy policy and say little about the actions the "
        "twin's trials try); None = for the whole run. >= 1.",
    )
    calibrate_fields: tuple[str, ...] = _static(
        (),
        "EnvParams fields the in-loop calibration fits: traced float fields of the env's params (checked "
        "by make_train; dtrl_jax.twin.calibration lists which ones each env identifies). Non-empty exactly "
        "when calibrate_every > 0.",
    )
    calibrate_buffer: int = _static(
        0,
        "Ring buffer of the most recent physical transitions (s_t from the identical domain, a_t, o_{t+1}, "
        "r_t), all envs together, that calibration fits and the twin_error metric is measured on; "
        "0 = none (twin_error is NaN). With calibrate_every = 0 a buffer only monitors twin_error. >= 0.",
    )
    calibrate_per_domain: bool = _static(
        False,
        "False: one fit per phase, started from domain 0's params, whose calibrated fields are written "
        "into every domain. True: every domain is fitted from its own params (num_domains times the work).",
    )
    calibrate_options: tuple = _static(
        (),
        "Settings of each phase's fit: (name, value) pairs (or a dict) of CalibrationConfig fields other "
        "than fields (method, steps, population, num_samples, bounds, range_factor, ...); omitted ones "
        "take CalibrationConfig's defaults. num_samples also sets twin_error's samples per transition. "
        "Bounds default to a range around the initial twin params, fixed for the whole run. On the command "
        "line in the Python form: \"(('method', 'cem'), ('steps', 20))\".",
    )

    def __post_init__(self):
        o = "TwinConfig"
        self._check_calibration(o)
        check_positive_int(o, "num_domains", self.num_domains)
        check_positive_int(o, "action_trials", self.action_trials)
        check_positive_int(o, "lookahead", self.lookahead, minimum=0)
        check_positive_int(o, "lookahead_rollouts", self.lookahead_rollouts)
        check_choice(o, "lookahead_policy", self.lookahead_policy, ("greedy", "epsilon"))
        if self.action_trials > self.num_domains:
            raise ValueError(
                f"{o}.action_trials={self.action_trials} exceeds num_domains={self.num_domains}; "
                "each trial needs its own digital domain, so expected action_trials <= num_domains"
            )
        if self.lookahead_rollouts > self.num_domains:
            raise ValueError(
                f"{o}.lookahead_rollouts={self.lookahead_rollouts} exceeds num_domains="
                f"{self.num_domains}; expected lookahead_rollouts <= num_domains"
            )
        if self.twin_data_fraction is not None:
            check_number(o, "twin_data_fraction", self.twin_data_fraction, low=0.0, high=1.0)
        if self.twin_buffer_size is not None:
            check_positive_int(o, "twin_buffer_size", self.twin_buffer_size)
        check_positive_int(o, "sync_every", self.sync_every)
        check_number(o, "state_noise_std", self.state_noise_std, low=0.0)
        check_number(o, "obs_noise_std", self.obs_noise_std, low=0.0)
        check_number(o, "ready_after", self.ready_after, low=0, integer=True)
        check_number(o, "build_steps", self.build_steps, low=0, integer=True)
        check_number(o, "build_noise_std", self.build_noise_std, low=0.0)
        check_windows(o, "outage_windows", self.outage_windows, ("start", "end"))
        check_windows(o, "burst_windows", self.burst_windows, ("start", "end", "std"))
        for window in self.burst_windows:
            check_number(o, "burst_windows std", window[2], low=0.0)
        if self.max_divergence is not None:
            check_number(o, "max_divergence", self.max_divergence, low=0.0, low_open=True)
        check_positive_int(o, "health_samples", self.health_samples, minimum=0)
        check_number(o, "health_window", self.health_window, low=1.0)
        check_number(o, "health_threshold", self.health_threshold, low=1.0, low_open=True)
        for flag in ("average_rollouts", "shield", "share_global_obs"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{o}.{flag}={getattr(self, flag)!r}: expected a bool")

    def _check_calibration(self, o: str) -> None:
        from collections.abc import Mapping

        from dtrl_jax.twin.calibration import CalibrationConfig

        check_positive_int(o, "calibrate_every", self.calibrate_every, minimum=0)
        check_positive_int(o, "calibrate_buffer", self.calibrate_buffer, minimum=0)
        if self.calibrate_until is not None:
            check_positive_int(o, "calibrate_until", self.calibrate_until)
        if not isinstance(self.calibrate_per_domain, bool):
            raise TypeError(f"{o}.calibrate_per_domain={self.calibrate_per_domain!r}: expected a bool")
        fields = (self.calibrate_fields,) if isinstance(self.calibrate_fields, str) else self.calibrate_fields
        if not isinstance(fields, (tuple, list)) or not all(isinstance(f, str) for f in fields):
            raise ValueError(f"{o}.calibrate_fields={self.calibrate_fields!r}: expected a tuple of EnvParams field names")
        object.__setattr__(self, "calibrate_fields", tuple(fields))
        if bool(fields) != (self.calibrate_every > 0):
            raise ValueError(
                f"{o}.calibrate_fields={tuple(fields)!r} with calibrate_every={self.calibrate_every}: expected "
                "field names exactly when calibrate_every > 0 (calibration on)"
            )
        options = self.calibrate_options
        items = options.items() if isinstance(options, Mapping) else options
        try:
            opts = dict(items)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{o}.calibrate_options={options!r}: expected (name, value) pairs or a dict") from err
        allowed = sorted(f.name for f in dataclasses.fields(CalibrationConfig) if f.name != "fields")
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            raise ValueError(f"{o}.calibrate_options: unknown setting(s) {unknown}; allowed: {allowed}")
        try:  # CalibrationConfig's own validation, named after this field
            cfg = CalibrationConfig(fields=tuple(fields) or ("placeholder",), **opts)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{o}.calibrate_options={options!r}: {err}") from err
        object.__setattr__(self, "calibrate_options", tuple((k, getattr(cfg, k)) for k in sorted(opts)))
        if self.calibrate_every > 0 and self.calibrate_buffer < 1:
            raise ValueError(
                f"{o}.calibrate_buffer={self.calibrate_buffer} with calibrate_every={self.calibrate_every}: "
                "calibration fits the buffer's transitions; expected calibrate_buffer >= num_envs"
            )
        if self.calibrate_buffer > 0:
            if not self.uses_domains:
                raise ValueError(
                    f"{o}.calibrate_buffer={self.calibrate_buffer}: in-loop calibration and twin_error need the "
                    "digital domains (their identical domain holds s_t); expected action_trials > 1, "
                    "lookahead > 1, shield or a health check"
                )
            if self.share_global_obs:
                raise ValueError(
                    f"{o}.calibrate_buffer={self.calibrate_buffer} with share_global_obs=True is not supported "
                    "(the global view wraps the env's params); expected share_global_obs=False"
                )

    @property
    def calibrates(self) -> bool:
        """Whether in-loop calibration phases run."""
        return self.calibrate_every > 0

    @property
    def calibration_config(self):
        """The ``CalibrationConfig`` of each in-loop phase, or None when calibration is off."""
        if not self.calibrates:
            return None
        from dtrl_jax.twin.calibration import CalibrationConfig

        return CalibrationConfig(fields=self.calibrate_fields, **dict(self.calibrate_options))

    @property
    def calibration_samples(self) -> int:
        """Twin samples per transition of the ``twin_error`` metric (``calibrate_options`` num_samples)."""
        from dtrl_jax.twin.calibration import CalibrationConfig

        return dict(self.calibrate_options).get("num_samples", CalibrationConfig.num_samples)

    @property
    def uses_trials(self) -> bool:
        return self.action_trials > 1

    @property
    def uses_lookahead(self) -> bool:
        return self.lookahead > 1

    @property
    def uses_domains(self) -> bool:
        """Whether any feature needs the digital domains to run at all (a health check needs the
        identical domain, e.g. to gate the global view)."""
        return self.uses_trials or self.uses_lookahead or self.shield or self.health_checked

    @property
    def health_checked(self) -> bool:
        return self.health_samples > 0 or self.max_divergence is not None

    @property
    def health_draws(self) -> int:
        """Draws of the identical domain per health check (1 with only max_divergence set)."""
        return max(self.health_samples, 1)

    @property
    def branches(self) -> int:
        """Bootstrap branches per physical transition (M with look-ahead, else 1)."""
        return self.lookahead_rollouts if self.uses_lookahead else 1


@struct.dataclass
class _AgentConfig:
    """Fields shared by every agent: the run's length, logging, exploration and the twin."""

    total_timesteps: int = _static(
        100_000, "Physical environment steps in the whole run (summed over num_envs); the x-axis that matters."
    )
    num_envs: int = _static(1, "Parallel physical environments stepped together.")
    log_every: int = _static(
        1_000,
        "Physical steps per logging interval: metrics are aggregated inside the compiled program and "
        "returned with one row per interval. Must be a multiple of num_envs and divide total_timesteps.",
    )
    learning_rate: float = _traced(1e-3, "Step size (traced: a vmap over it compiles once).")
    gamma: float = _traced(0.99, "Discount factor in [0, 1].")
    epsilon_start: float = _traced(1.0, "Exploration rate at step 0, in [0, 1].")
    epsilon_end: float = _traced(0.05, "Exploration rate after the decay, in [0, 1].")
    exploration_fraction: float = _traced(
        0.5,
        "Share of total_timesteps over which epsilon decays linearly from epsilon_start to epsilon_end "
        "(as in CleanRL/SB3), in (0, 1]; used when epsilon_decay_steps is None. The default 0.5 keeps "
        "the former fixed 50,000-step decay for the default 100,000-step run.",
    )
    epsilon_decay_steps: float | None = _traced(
        None,
        "Physical steps over which epsilon decays linearly; > 0. None (default) = "
        "exploration_fraction * total_timesteps, so the schedule follows the run's length; an explicit "
        "value wins.",
    )
    eval_episodes: int = _static(
        0,
        "Greedy evaluation: episodes per seed played at the end of every logging interval on separate "
        "physical environment instances with the current parameters, inside the compiled program "
        "(metrics eval_return, eval_length; NaN when 0). Draws from its own key stream, so training is "
        "bit-identical with evaluation on or off. 0 = off; >= 0.",
    )
    eval_epsilon: float = _traced(
        0.0,
        "Exploration rate of the evaluation policy, in [0, 1]; 0 (default) = greedy (argmax Q, ties "
        "broken uniformly at random; see dtrl_jax.evaluate).",
    )
    eval_max_steps: int | None = _static(
        None,
        "Step bound of one evaluation episode; None = the env's max_steps_in_episode (an env without "
        "one needs this set). An episode still running at the bound counts with its partial return.",
    )
    check_numerics: bool = _static(
        False,
        "Stop the run (FloatingPointError, at the end of the logging interval) naming the first "
        "physical step and quantity (observation, reward, Q-values, loss) that was not finite.",
    )
    twin: TwinConfig | None = struct.field(
        pytree_node=True,
        default=None,
        metadata={"doc": "The digital twin (TwinConfig), or None for plain physical RL."},
    )

    def _check_common(self, o: str) -> None:
        check_positive_int(o, "total_timesteps", self.total_timesteps)
        check_positive_int(o, "num_envs", self.num_envs)
        check_positive_int(o, "log_every", self.log_every)
        if self.log_every % self.num_envs:
            raise ValueError(
                f"{o}.log_every={self.log_every} is not a multiple of num_envs={self.num_envs}; "
                "each logging interval must hold whole vectorised steps"
            )
        if self.total_timesteps % self.log_every:
            raise ValueError(
                f"{o}.total_timesteps={self.total_timesteps} is not a multiple of log_every="
                f"{self.log_every}; choose e.g. total_timesteps="
                f"{max(1, self.total_timesteps // self.log_every) * self.log_every}"
            )
        check_number(o, "learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_number(o, "gamma", self.gamma, low=0.0, high=1.0)
        check_number(o, "epsilon_start", self.epsilon_start, low=0.0, high=1.0)
        check_number(o, "epsilon_end", self.epsilon_end, low=0.0, high=1.0)
        check_number(o, "exploration_fraction", self.exploration_fraction, low=0.0, high=1.0, low_open=True)
        if self.epsilon_decay_steps is not None:
            check_number(o, "epsilon_decay_steps", self.epsilon_decay_steps, low=0.0, low_open=True)
        check_positive_int(o, "eval_episodes", self.eval_episodes, minimum=0)
        check_number(o, "eval_epsilon", self.eval_epsilon, low=0.0, high=1.0)
        if self.eval_max_steps is not None:
            check_positive_int(o, "eval_max_steps", self.eval_max_steps)
        if not isinstance(self.check_numerics, bool):
            raise TypeError(f"{o}.check_numerics={self.check_numerics!r}: expected a bool")
        if self.twin is not None and not isinstance(self.twin, TwinConfig):
            raise TypeError(f"{o}.twin={self.twin!r}: expected None or a TwinConfig")

    @property
    def decay_steps(self):
        """Physical steps of the epsilon decay: ``epsilon_decay_steps``, else ``exploration_fraction``
        of ``total_timesteps`` (traced when either field is traced)."""
        if self.epsilon_decay_steps is not None:
            return self.epsilon_decay_steps
        return self.exploration_fraction * self.total_timesteps

    @property
    def num_intervals(self) -> int:
        return self.total_timesteps // self.log_every

    @property
    def iterations_per_interval(self) -> int:
        return self.log_every // self.num_envs


@struct.dataclass
class QLearningConfig(_AgentConfig):
    """Tabular Q-learning (needs a ``Discrete`` observation space) with an optional digital twin.

    Several updates of the same (s, a) in one vectorised step (from parallel envs or twin trials)
    are averaged, so ``learning_rate`` keeps its meaning for any ``num_envs`` or trial count.
    """

    learning_rate: float = _traced(0.1, "Q-learning step size alpha in (0, 1].")
    q_init: float = _traced(0.0, "Initial value of every Q(s, a).")

    def __post_init__(self):
        o = "QLearningConfig"
        self._check_common(o)
        check_number(o, "learning_rate", self.learning_rate, low=0.0, high=1.0, low_open=True)
        check_number(o, "q_init", self.q_init)


@struct.dataclass
class DQNConfig(_AgentConfig):
    """Deep Q-learning (needs a ``Discrete`` action space) with replay, target network and a twin.

    Defaults follow common CartPole settings (10 envs, batch 64, one update per 10 env steps).
    """

    learning_rate: float = _traced(2.5e-4, "Adam step size; > 0.")
    num_envs: int = _static(10, "Parallel physical environments stepped together.")
    log_every: int = _static(1_000, "Physical steps per logging interval (multiple of num_envs).")
    buffer_size: int = _static(10_000, "Capacity of the physical replay storage (transitions).")
    batch_size: int = _static(64, "Transitions per gradient step; <= buffer_size.")
    learning_starts: int = _static(10_000, "Physical steps before the first gradient step.")
    train_every: int = _static(
        10, "Physical steps between gradient steps (one per crossing of a multiple of train_every)."
    )
    target_update_every: int = _static(500, "Physical steps between target-network updates.")
    tau: float = _traced(1.0, "Target update rate: target <- tau * online + (1 - tau) * target; 1 = hard copy.")
    double_q: bool = _static(False, "Double DQN: the online network picks the bootstrap action.")
    network: str = _static(
        "mlp",
        "Q-network architecture: 'mlp' (dense layers), 'cnn' (1-D CNN over per-entity features [E, F]) or "
        "'gru' (GRU over an observation window [W, F]); see dtrl_jax.agents.networks.",
    )
    hidden_sizes: tuple[int, ...] = _static((120, 84), "Hidden layer widths of the MLP.")
    max_grad_norm: float | None = _traced(
        10.0,
        "Global-norm gradient clipping threshold; > 0, or None for no clipping (as PureJaxRL; the "
        "global norm costs ~20 % of a small MLP's update on a CPU).",
    )
    loss: str = _static("mse", "TD loss: 'mse' or 'huber'.")
    head: str = _static(
        "auto",
        "Q-head: 'joint' (one output per action), 'branching' (one head per action factor on a shared "
        "torso, joint Q = mean of the branch Qs; needs an env that declares action_dims), 'afterstate' "
        "(one state-value network V evaluated at the observation after each factor's choice, "
        "Q(s, a) = V(s) + sum_i [V(s after a_i) - V(s)]; needs an env that also declares "
        "afterstate_observations) or 'auto' (afterstate when the env declares afterstates and dueling "
        "is off, else branching when it declares factors, else joint). See dtrl_jax.agents.networks.",
    )
    dueling: bool = _static(False, "Dueling head: a state value plus mean-centred advantages (per branch).")
    n_step: int = _static(
        1,
        "n-step returns for physical transitions (accumulated per env inside the agent; an episode end "
        "cuts the return short); 1 = ordinary 1-step targets. Not combinable with twin look-ahead "
        "(which already gives k-step targets).",
    )
    reward_scale: float = _traced(
        1.0,
        "The network learns scale * (Q - reward_shift / (1 - gamma)), i.e. the values of the rewards "
        "scale * (r - reward_shift); q_values, metrics and evaluation stay in env units. > 0.",
    )
    reward_shift: float | None = _traced(
        0.0,
        "See reward_scale; a number (nonzero needs gamma < 1), or None = the mean physical reward of "
        "the warm-up steps (those before learning_starts, at least the first vectorised step), fixed "
        "from the first gradient step on (0 when gamma >= 1): the network then learns the values of "
        "centred rewards, whose differences between actions are not swamped by the value level "
        "(MultiUAV: values ~70 at gamma 0.95 against 0.01-0.06 Mbps between moves).",
    )

    def __post_init__(self):
        o = "DQNConfig"
        self._check_common(o)
        check_positive_int(o, "buffer_size", self.buffer_size)
        check_positive_int(o, "batch_size", self.batch_size)
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"{o}.batch_size={self.batch_size} exceeds buffer_size={self.buffer_size}; "
                "expected batch_size <= buffer_size"
            )
        check_positive_int(o, "learning_starts", self.learning_starts, minimum=0)
        if self.learning_starts >= self.total_timesteps:
            raise ValueError(
                f"{o}.learning_starts={self.learning_starts} is not below total_timesteps="
                f"{self.total_timesteps}: no gradient step would ever happen; expected learning_starts < "
                f"total_timesteps (e.g. learning_starts={self.total_timesteps // 10})"
            )
        check_positive_int(o, "train_every", self.train_every)
        check_positive_int(o, "target_update_every", self.target_update_every)
        check_number(o, "tau", self.tau, low=0.0, high=1.0, low_open=True)
        check_choice(o, "network", self.network, ("mlp", "cnn", "gru"))
        if not isinstance(self.hidden_sizes, tuple) or not self.hidden_sizes:
            raise TypeError(f"{o}.hidden_sizes={self.hidden_sizes!r}: expected a non-empty tuple of ints")
        for width in self.hidden_sizes:
            check_positive_int(o, "hidden_sizes", width)
        if self.max_grad_norm is not None:
            check_number(o, "max_grad_norm", self.max_grad_norm, low=0.0, low_open=True)
        check_choice(o, "loss", self.loss, ("mse", "huber"))
        if not isinstance(self.double_q, bool):
            raise TypeError(f"{o}.double_q={self.double_q!r}: expected a bool")
        check_choice(o, "head", self.head, ("auto", "joint", "branching", "afterstate"))
        if not isinstance(self.dueling, bool):
            raise TypeError(f"{o}.dueling={self.dueling!r}: expected a bool")
        if self.dueling and self.head == "afterstate":
            raise ValueError(
                f"{o}.dueling=True with head='afterstate': an afterstate head has no advantage stream "
                "(every action value is a state value V); expected dueling=False, or head='branching'/'joint'"
            )
        check_positive_int(o, "n_step", self.n_step)
        if self.n_step > 1 and self.twin is not None and self.twin.uses_lookahead:
            raise ValueError(
                f"{o}.n_step={self.n_step} with twin.lookahead={self.twin.lookahead}: the look-ahead already "
                "gives k-step targets; expected n_step=1 with a look-ahead twin"
            )
        check_number(o, "reward_scale", self.reward_scale, low=0.0, low_open=True)
        if self.reward_shift is not None:
            check_number(o, "reward_shift", self.reward_shift)
        if self.reward_shift is not None and is_concrete(self.reward_shift) and is_concrete(self.gamma):
            if np.any(np.asarray(self.reward_shift) != 0.0) and np.any(np.asarray(self.gamma) >= 1.0):
                raise ValueError(
                    f"{o}.reward_shift={self.reward_shift} needs gamma < 1 (the value offset is "
                    f"reward_shift / (1 - gamma)); got gamma={self.gamma}"
                )

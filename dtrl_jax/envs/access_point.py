"""``AccessPointSelection-v0``: URLLC access-point selection for a vehicle on a straight road.

Paper case 1 ("DT-enhanced QL for access point selection", Cheng et al., IEEE Network 2024). A vehicle
drives along a straight road at a constant speed; every decision step a URLLC task appears and the agent
picks the access point (AP) that must carry it. APs differ in position, coverage radius, rate and cost.

Transmission rule (the paper's, computed analytically, no sub-stepping; see :func:`transmission_outcome`):

* the vehicle is inside the chosen AP's coverage: transmission starts at once;
* the vehicle has not reached the coverage yet: transmission starts when the vehicle enters it
  (waiting time = distance to the coverage edge / speed);
* the vehicle has already passed the coverage: the task fails;
* the vehicle leaves the coverage before the last bit is sent: the task fails;
* waiting + transmission time exceeds the task deadline: the task fails.

Every failure is a safety ``violation`` (``info["violation"]``), the signal the twin's shield uses.
Tasks are independent: each task has the chosen AP to itself (no queue across steps), so the action
changes the reward but not the next state. The problem is therefore a contextual bandit with a moving
context; tabular Q-learning still has to learn one value per (state, AP) pair, which is the paper's point.

Coverage is one-dimensional: an AP at road coordinate ``c`` with radius ``r`` covers ``[c - r, c + r]``
(the lateral offset of road-side units is folded into ``r``).

Default choices (the paper gives none of these numbers; each is a field of :class:`EnvParams`):

* ``road_length_m = 2000``: long enough for four small-cell coverages with gaps, short enough that an
  episode (road length / speed / ``step_s``) has 67 to 200 decisions, about 112 on average.
* ``speed_min_mps = 10``, ``speed_max_mps = 30`` (36 to 108 km/h, urban to highway), sampled
  uniformly once per episode: the speed sets both the waiting time before a coverage and how long the
  vehicle stays in it, so the best AP depends on it.
* ``step_s = 1``: one task per second; a vehicle moves 10 to 30 m between decisions, finer than a
  position bin, so every bin is visited.
* APs (index 0 is the macro cell, 1 to 4 are small cells in road order):
  ``ap_position_m = (1000, 250, 750, 1250, 1750)``, ``ap_radius_m = (1200, 150, 150, 150, 150)``:
  the macro cell covers the whole road; small cells cover ``[100, 400]``, ``[600, 900]``,
  ``[1100, 1400]``, ``[1600, 1900]``, i.e. 60 % of the road, with 200 m gaps between them (100 m at
  the two ends), so "wait for the next small cell" is a real option and "the cell already passed"
  a real mistake.
* ``ap_rate_mbps = (3, 12, 12, 12, 12)``: a vehicle's share of a loaded macro cell is four times
  slower than a road-side unit; with the task sizes below the macro cell cannot carry a large task
  before a tight deadline, so it cannot dominate.
* ``ap_cost = (0.8, 0.1, 0.1, 0.1, 0.1)``: licensed macro spectrum is expensive, road-side units cheap;
  with ``w_cost`` below a macro success is worth at most 0.6, a small-cell success at most 0.95.
* ``task_size_mbit = (1, 4, 12)``: three size classes (a status burst, a sensor snapshot, a LiDAR
  sweep); transmission takes 0.33 / 1.33 / 4 s on the macro cell and 0.083 / 0.33 / 1 s on a small
  cell, so a large task can fail by leaving a small cell's coverage (up to 30 m before its edge).
* ``task_deadline_s = (2, 4.5, 8)``: three deadline classes. 2 s forbids the macro cell for large
  tasks and allows at most 1 s of waiting for a small cell; 4.5 s lets the macro cell carry a large
  task, at a poor reward; 8 s allows waiting through most of a 200 m gap. Size and deadline classes
  are drawn independently and uniformly each step.
* Reward: success ``success_reward - w_latency * latency / deadline - w_cost * cost`` with
  ``success_reward = 1``, ``w_latency = 0.5``, ``w_cost = 0.5`` (a success is worth between 0.1 and
  0.95, more when fast and cheap, so waiting for a cheap small cell trades latency against cost);
  failure ``failure_reward = -1`` (a lost URLLC task costs more than any success earns). The paper states
  only the signs (positive in success, negative in latency and cost); the weights are our choice.
* ``num_position_bins = 200`` (10 m bins, aligned with every default coverage edge) and
  ``num_speed_bins = 4`` (5 m/s bins over ``[speed_min_mps, speed_max_mps]``), our choice for the regime:
  10 m is the distance the slowest vehicle covers between two decisions, so the table resolves every
  decision of every drive, and at this resolution the best tabular policy is within 1 % of the best
  policy on the exact state (72.6 vs 73.2, see below), so what limits a tabular learner is how often it
  has seen each (state, AP) pair, not what the table cannot represent. With the 3 x 3 task classes the
  table has 200 * 4 * 9 = 7,200 states and 36,000 Q-values; a drive of ~110 decisions visits a given state
  0.014 times on median (0.006 to 0.028), so even a full sweep of the 5 APs per visit needs hundreds of
  episodes before every state has been seen a few times, and one action per visit (physical Q-learning)
  five times as many per (state, AP): the visit-limited regime the paper's episode counts imply (its state
  is the vehicle's location; observing the speed bin is our addition, because the best AP depends on it).
  A coarser table (``num_position_bins=40, num_speed_bins=2``: 720 states, 0.16 visits per state per
  drive) is learnt after about one visit per state, and its optimum (70.5) is 2.7 below the oracle.
* Reference returns (:func:`reference_returns`, exact expectations by a midpoint rule over the speed,
  no sampling): uniform random -52.6, always macro 29.4, "small cell if inside its coverage, else macro"
  66.6, the best policy of the index observation 72.6 (the ceiling of tabular Q-learning), the best AP
  for the exact position and speed 73.2; ~110.4 decisions per drive. The paper's Fig. 4 returns (65 to
  85) are on its own, unstated reward scale.
* ``observation = "index"``: a discrete state index for tabular Q-learning; ``"features"`` gives a
  float32 vector for DQN (see :meth:`AccessPointSelection.get_obs`).
* ``max_steps_in_episode = 300``: 1.5 x the longest natural episode at default speeds, a safety
  truncation only.

Example::

    import dtrl_jax as dt
    env, params = dt.make("AccessPointSelection-v0")                        # index observation
    env, params = dt.make("AccessPointSelection-v0", observation="features")  # float32 features
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from dtrl_jax._checks import check_choice, check_number, check_positive_int, is_concrete
from dtrl_jax.envs.registry import build_params, register
from dtrl_jax.envs.spec import Action, StepResult

__all__ = [
    "EnvState",
    "EnvParams",
    "AccessPointSelection",
    "transmission_outcome",
    "failure_cause",
    "validate_params",
    "state_index",
    "heuristic_action",
    "RewardGrid",
    "reward_grid",
    "state_action_rewards",
    "visits_per_episode",
    "greedy_probs",
    "greedy_return",
    "reference_returns",
    "OBSERVATION_MODES",
    "CAUSE_NONE",
    "CAUSE_COVERAGE_PASSED",
    "CAUSE_LEFT_COVERAGE",
    "CAUSE_DEADLINE",
]

OBSERVATION_MODES = ("index", "features")

#: ``failure_cause`` codes (also ``info["failure_cause"]``).
CAUSE_NONE = 0  #: success
CAUSE_COVERAGE_PASSED = 1  #: the vehicle had already passed the AP's coverage
CAUSE_LEFT_COVERAGE = 2  #: the vehicle left the coverage before the last bit
CAUSE_DEADLINE = 3  #: waiting + transmission time exceeded the deadline

_OWNER = "AccessPointParams"
_MIN_SPEED = 1e-3  # m/s; speeds below it (only reachable through noisy twin states) are clamped
_AP_FIELDS = ("ap_position_m", "ap_radius_m", "ap_rate_mbps", "ap_cost")
_ARRAY_FIELDS = _AP_FIELDS + ("task_size_mbit", "task_deadline_s")


@struct.dataclass
class EnvState(environment.EnvState):
    """State of one vehicle's drive.

    Attributes:
      position: float32 scalar, metres from the road start, in ``[0, road_length_m + speed * step_s)``
        (it only exceeds ``road_length_m`` in the terminal state, which the auto-reset replaces).
      speed: float32 scalar, m/s, constant within an episode.
      size_class: int32 scalar, index into ``EnvParams.task_size_mbit`` of the pending task.
      deadline_class: int32 scalar, index into ``EnvParams.task_deadline_s`` of the pending task.
      time: int32 scalar, decisions taken in this episode.
    """

    position: jax.Array
    speed: jax.Array
    size_class: jax.Array
    deadline_class: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Scenario parameters. Static fields (``pytree_node=False``) fix shapes; all others are traced.

    A stack of params that differ only in traced fields can be ``vmap``-ed (e.g. one scenario per
    digital domain). Defaults and the reason for each are listed in the module docstring.

    Attributes:
      num_aps: static, number of access points (length of every ``ap_*`` array).
      num_size_classes: static, length of ``task_size_mbit``.
      num_deadline_classes: static, length of ``task_deadline_s``.
      num_position_bins: static, equal-width position bins over ``[0, road_length_m]`` in the index
        observation.
      num_speed_bins: static, equal-width speed bins over ``[speed_min_mps, speed_max_mps]`` in the index
        observation (1 = speed not observed).
      observation: static, ``"index"`` (``Discrete`` int32 scalar) or ``"features"`` (float32 ``Box``).
      road_length_m: road length in metres; the episode ends when the vehicle reaches it.
      speed_min_mps, speed_max_mps: the episode's speed is ``U[speed_min_mps, speed_max_mps]`` m/s.
      step_s: seconds between decisions (one task per decision).
      ap_position_m: ``(num_aps,)`` coverage centres along the road, metres.
      ap_radius_m: ``(num_aps,)`` coverage radii, metres (coverage is ``[centre - r, centre + r]``).
      ap_rate_mbps: ``(num_aps,)`` transmission rates, Mbit/s.
      ap_cost: ``(num_aps,)`` cost of one transmission, dimensionless (scaled by ``w_cost``).
      task_size_mbit: ``(num_size_classes,)`` task sizes, Mbit.
      task_deadline_s: ``(num_deadline_classes,)`` task deadlines, seconds.
      success_reward: reward of an instantaneous, free success.
      w_latency: weight of ``latency / deadline`` (in ``[0, 1]``) subtracted on success.
      w_cost: weight of the AP cost subtracted on success.
      failure_reward: reward of a failed task (a ``violation``).
      max_steps_in_episode: safety truncation (gymnax's ``is_truncated``).
    """

    num_aps: int = struct.field(pytree_node=False, default=5)
    num_size_classes: int = struct.field(pytree_node=False, default=3)
    num_deadline_classes: int = struct.field(pytree_node=False, default=3)
    num_position_bins: int = struct.field(pytree_node=False, default=200)
    num_speed_bins: int = struct.field(pytree_node=False, default=4)
    observation: str = struct.field(pytree_node=False, default="index")
    road_length_m: float = 2000.0
    speed_min_mps: float = 10.0
    speed_max_mps: float = 30.0
    step_s: float = 1.0
    ap_position_m: jax.Array = struct.field(
        default_factory=lambda: jnp.array([1000.0, 250.0, 750.0, 1250.0, 1750.0], jnp.float32)
    )
    ap_radius_m: jax.Array = struct.field(
        default_factory=lambda: jnp.array([1200.0, 150.0, 150.0, 150.0, 150.0], jnp.float32)
    )
    ap_rate_mbps: jax.Array = struct.field(
        default_factory=lambda: jnp.array([3.0, 12.0, 12.0, 12.0, 12.0], jnp.float32)
    )
    ap_cost: jax.Array = struct.field(
        default_factory=lambda: jnp.array([0.8, 0.1, 0.1, 0.1, 0.1], jnp.float32)
    )
    task_size_mbit: jax.Array = struct.field(
        default_factory=lambda: jnp.array([1.0, 4.0, 12.0], jnp.float32)
    )
    task_deadline_s: jax.Array = struct.field(
        default_factory=lambda: jnp.array([2.0, 4.5, 8.0], jnp.float32)
    )
    success_reward: float = 1.0
    w_latency: float = 0.5
    w_cost: float = 0.5
    failure_reward: float = -1.0
    max_steps_in_episode: int = 300


def validate_params(params: EnvParams) -> None:
    """Check every field of ``params``; raise ``ValueError`` naming the first bad field.

    Traced values (inside ``jit``/``vmap``) are skipped, see :mod:`dtrl_jax._checks`.

    Args:
      params: an :class:`EnvParams`.

    Raises:
      ValueError: a field out of its allowed range, an array of the wrong shape, or an unknown
        observation mode. ``TypeError`` for a static count that is not a Python int.
    """
    for name in ("num_aps", "num_size_classes", "num_deadline_classes", "num_position_bins", "num_speed_bins"):
        check_positive_int(_OWNER, name, getattr(params, name))
    check_choice(_OWNER, "observation", params.observation, OBSERVATION_MODES)

    check_number(_OWNER, "road_length_m", params.road_length_m, low=0.0, low_open=True)
    check_number(_OWNER, "speed_min_mps", params.speed_min_mps, low=0.0, low_open=True)
    if is_concrete(params.speed_min_mps):
        check_number(_OWNER, "speed_max_mps", params.speed_max_mps, low=float(params.speed_min_mps))
    else:
        check_number(_OWNER, "speed_max_mps", params.speed_max_mps, low=0.0, low_open=True)
    check_number(_OWNER, "step_s", params.step_s, low=0.0, low_open=True)

    expected = {name: (params.num_aps,) for name in _AP_FIELDS}
    expected["task_size_mbit"] = (params.num_size_classes,)
    expected["task_deadline_s"] = (params.num_deadline_classes,)
    for name, shape in expected.items():
        value = getattr(params, name)
        if isinstance(value, (str, bytes)) or value is None:
            raise ValueError(f"{_OWNER}.{name}={value!r}: expected an array of shape {shape}")
        got = tuple(np.shape(value))
        if got != shape:
            count = "num_aps" if name in _AP_FIELDS else (
                "num_size_classes" if name == "task_size_mbit" else "num_deadline_classes")
            raise ValueError(
                f"{_OWNER}.{name} has shape {got}; expected {shape} (one entry per {count}="
                f"{shape[0]}; change {count} together with it)"
            )

    if is_concrete(params.road_length_m):
        # float32 positions are compared with the float32 road length (rounding is monotone).
        road32 = float(np.float32(np.asarray(params.road_length_m)))
        check_number(_OWNER, "ap_position_m", params.ap_position_m, low=0.0, high=road32)
    else:
        check_number(_OWNER, "ap_position_m", params.ap_position_m)
    check_number(_OWNER, "ap_radius_m", params.ap_radius_m, low=0.0, low_open=True)
    check_number(_OWNER, "ap_rate_mbps", params.ap_rate_mbps, low=0.0, low_open=True)
    check_number(_OWNER, "ap_cost", params.ap_cost, low=0.0)
    check_number(_OWNER, "task_size_mbit", params.task_size_mbit, low=0.0, low_open=True)
    check_number(_OWNER, "task_deadline_s", params.task_deadline_s, low=0.0, low_open=True)
    check_number(_OWNER, "success_reward", params.success_reward, low=0.0, low_open=True)
    check_number(_OWNER, "w_latency", params.w_latency, low=0.0)
    check_number(_OWNER, "w_cost", params.w_cost, low=0.0)
    check_number(_OWNER, "failure_reward", params.failure_reward, high=0.0)
    check_number(_OWNER, "max_steps_in_episode", params.max_steps_in_episode, low=1, integer=True)


def _outcome(position, speed, size, deadline, ap_center, ap_radius, ap_rate):
    """Shared core of :func:`transmission_outcome` and :func:`failure_cause` (broadcasts)."""
    f32 = jnp.float32
    position, speed, size, deadline = (jnp.asarray(x, f32) for x in (position, speed, size, deadline))
    ap_center, ap_radius, ap_rate = (jnp.asarray(x, f32) for x in (ap_center, ap_radius, ap_rate))
    # A noisy twin state may carry a zero or negative speed; treat it as a crawl, never divide by 0.
    speed = jnp.maximum(speed, _MIN_SPEED)
    enter = ap_center - ap_radius
    leave = ap_center + ap_radius
    tx_time = size / ap_rate
    start = jnp.maximum(position, enter)
    wait = (start - position) / speed
    latency = wait + tx_time
    passed = position > leave
    # Time from the start of transmission until the vehicle leaves the coverage.
    dwell = (leave - start) / speed
    left = jnp.logical_and(~passed, tx_time > dwell)
    late = jnp.logical_and(~passed, jnp.logical_and(~left, latency > deadline))
    success = ~(passed | left | late)
    cause = jnp.where(
        passed,
        CAUSE_COVERAGE_PASSED,
        jnp.where(left, CAUSE_LEFT_COVERAGE, jnp.where(late, CAUSE_DEADLINE, CAUSE_NONE)),
    ).astype(jnp.int32)
    return success, latency.astype(f32), cause


def transmission_outcome(position, speed, size, deadline, ap_center, ap_radius, ap_rate):
    """Outcome of sending one task to one AP (pure, jittable, broadcasts over all arguments).

    Rule: transmission starts at once if ``position`` is inside ``[ap_center - ap_radius,
    ap_center + ap_radius]``, or when the vehicle reaches ``ap_center - ap_radius`` if it is still
    before it; it fails if the vehicle is already past ``ap_center + ap_radius``, if it leaves the
    coverage before the last bit (``size / ap_rate`` longer than the time left in coverage), or if
    ``wait + size / ap_rate > deadline``. Boundaries count as success (inside coverage, on time).
    Speeds below 1e-3 m/s (possible only in a noisy twin state) are treated as 1e-3 m/s.

    Args:
      position: vehicle position, metres (scalar or array).
      speed: vehicle speed, m/s, > 0.
      size: task size, Mbit.
      deadline: task deadline, seconds.
      ap_center: AP coverage centre along the road, metres.
      ap_radius: AP coverage radius, metres.
      ap_rate: AP rate, Mbit/s.

    Returns:
      ``(success, latency)``: bool and float32 arrays of the broadcast shape. ``latency`` is
      ``wait + size / ap_rate`` seconds: the realised latency on success, and the latency the task
      would have had on failure (``size / ap_rate`` when the coverage was already passed).
    """
    success, latency, _ = _outcome(position, speed, size, deadline, ap_center, ap_radius, ap_rate)
    return success, latency


def failure_cause(position, speed, size, deadline, ap_center, ap_radius, ap_rate):
    """Why :func:`transmission_outcome` fails, as an int32 code (same arguments, broadcasts).

    Returns:
      ``CAUSE_NONE`` (0, success), ``CAUSE_COVERAGE_PASSED`` (1), ``CAUSE_LEFT_COVERAGE`` (2) or
      ``CAUSE_DEADLINE`` (3); the first that applies in this order.
    """
    return _outcome(position, speed, size, deadline, ap_center, ap_radius, ap_rate)[2]


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


#: Tables longer than this are read with a gather; shorter ones with a chain of selects, which XLA fuses
#: into the surrounding elementwise code (a gather from a small table per environment is slower on CPU).
_MAX_SELECT_CHAIN = 16


def _lookup(table, index, n: int) -> jax.Array:
    """``table[clip(index, 0, n - 1)]`` (float32) for a length-``n`` table (``n`` static).

    Out-of-range indices are clamped to the first / last entry, as a JAX gather does.
    """
    table = _f32(table)
    if n > _MAX_SELECT_CHAIN:
        return table[jnp.clip(index, 0, n - 1)]
    out = table[..., 0]
    for i in range(1, n):
        out = jnp.where(index >= i, table[..., i], out)
    return out


def _unit_float(word: jax.Array) -> jax.Array:
    """A uint32 word to a float32 in ``[0, 1)``, as ``jax.random.uniform`` maps its bits (23-bit mantissa)."""
    mantissa = jax.lax.shift_right_logical(word, jnp.uint32(9)) | jnp.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def _task_from_word(word: jax.Array, params: EnvParams) -> tuple[jax.Array, jax.Array]:
    """Size and deadline classes (int32 scalars), independent and uniform, from one uint32 word.

    The pair index ``word mod (num_size_classes * num_deadline_classes)`` is split into the two classes;
    the modulo bias is below ``n / 2**32`` (2e-9 at the default 9 pairs).
    """
    n_size, n_deadline = params.num_size_classes, params.num_deadline_classes
    pair = word % jnp.uint32(n_size * n_deadline)
    size_class = (pair // jnp.uint32(n_deadline)).astype(jnp.int32)
    deadline_class = (pair % jnp.uint32(n_deadline)).astype(jnp.int32)
    return size_class, deadline_class


def _task_reward(params: EnvParams, position, speed, size_class, deadline_class, ap):
    """Reward and outcome of sending the task ``(size_class, deadline_class)`` to AP ``ap`` (broadcasts).

    The one place the reward rule lives: :meth:`AccessPointSelection.step_env` and the reference
    returns (:func:`reward_grid`) both call it.

    Returns:
      ``(reward, success, latency, cause, cost)``: float32 reward, bool success, float32 latency
      (see :func:`transmission_outcome`), int32 failure cause, float32 cost of the chosen AP.
    """
    n_aps = params.num_aps
    size = _lookup(params.task_size_mbit, size_class, params.num_size_classes)
    deadline = _lookup(params.task_deadline_s, deadline_class, params.num_deadline_classes)
    success, latency, cause = _outcome(
        position,
        speed,
        size,
        deadline,
        _lookup(params.ap_position_m, ap, n_aps),
        _lookup(params.ap_radius_m, ap, n_aps),
        _lookup(params.ap_rate_mbps, ap, n_aps),
    )
    cost = _lookup(params.ap_cost, ap, n_aps)
    reward_ok = (
        _f32(params.success_reward) - _f32(params.w_latency) * latency / deadline - _f32(params.w_cost) * cost
    )
    reward = jnp.where(success, reward_ok, _f32(params.failure_reward)).astype(jnp.float32)
    return reward, success, latency, cause, cost


def _speed_unit(params: EnvParams, speed) -> jax.Array:
    """``speed`` mapped to ``[0, 1]`` over ``[speed_min_mps, speed_max_mps]`` (0 when they are equal)."""
    vmin, vmax = _f32(params.speed_min_mps), _f32(params.speed_max_mps)
    vspan = vmax - vmin
    return jnp.where(vspan > 0, (_f32(speed) - vmin) / jnp.where(vspan > 0, vspan, 1.0), 0.0)


def state_index(params: EnvParams, position, speed, size_class, deadline_class) -> jax.Array:
    """The ``"index"`` observation of a vehicle state (int32, broadcasts; see :meth:`AccessPointSelection.get_obs`)."""
    speed_unit = _speed_unit(params, speed)
    pos_bin = jnp.clip(
        jnp.floor(_f32(position) / _f32(params.road_length_m) * params.num_position_bins).astype(jnp.int32),
        0,
        params.num_position_bins - 1,
    )
    speed_bin = jnp.clip(jnp.floor(speed_unit * params.num_speed_bins).astype(jnp.int32), 0, params.num_speed_bins - 1)
    idx = (pos_bin * params.num_speed_bins + speed_bin) * params.num_size_classes + jnp.asarray(size_class, jnp.int32)
    return (idx * params.num_deadline_classes + jnp.asarray(deadline_class, jnp.int32)).astype(jnp.int32)


class AccessPointSelection(environment.Environment[EnvState, EnvParams]):
    """URLLC access-point selection for a vehicle on a straight road (gymnax 1.x environment).

    Actions: AP index in ``[0, num_aps)`` (out-of-range actions are clipped). Reward, termination and
    observations are described in the module docstring and :meth:`step_env` / :meth:`get_obs`.
    """

    # The environment holds no state of its own (everything is in EnvParams), so all instances are
    # equal: jitted methods that take ``self`` as a static argument compile once, not once per
    # ``dt.make`` call.
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (
            other.transition_gradients_enabled == self.transition_gradients_enabled
        )

    def __hash__(self) -> int:
        return hash((type(self), self.transition_gradients_enabled))

    @property
    def default_params(self) -> EnvParams:
        """The documented defaults (index observation)."""
        return EnvParams()

    def step_env(self, key: jax.Array, state: EnvState, action: Action, params: EnvParams) -> StepResult:
        """Send the pending task to AP ``action``, drive ``step_s`` seconds, draw the next task.

        Args:
          key: PRNG key for the next task's size and deadline class.
          state: current :class:`EnvState`.
          action: int scalar, AP index.
          params: :class:`EnvParams`.

        Returns:
          ``(obs, state, reward, terminated, info)``: the observation of the new state, the new state,
          float32 scalar reward, bool scalar ``terminated`` (the vehicle reached the road end), and
          ``info`` with bool scalars ``violation`` (the task failed) and ``success``, float32 scalars
          ``latency`` (seconds, see :func:`transmission_outcome`) and ``cost`` (the chosen AP's cost,
          0 on failure), and int32 scalar ``failure_cause`` (see :func:`failure_cause`).
        """
        ap = jnp.clip(jnp.asarray(action, jnp.int32), 0, params.num_aps - 1)
        reward, success, latency, cause, cost = _task_reward(
            params, state.position, state.speed, state.size_class, state.deadline_class, ap
        )

        size_class, deadline_class = _task_from_word(jax.random.bits(key, (), jnp.uint32), params)
        new_state = EnvState(
            position=(state.position + state.speed * _f32(params.step_s)).astype(jnp.float32),
            speed=state.speed,
            size_class=size_class,
            deadline_class=deadline_class,
            time=state.time + 1,
        )
        terminated = self.is_terminated(new_state, params)
        info = {
            "violation": ~success,
            "success": success,
            "latency": latency,
            "cost": jnp.where(success, cost, 0.0).astype(jnp.float32),
            "failure_cause": cause,
        }
        obs = self.get_obs(new_state, params)
        obs, new_state = self._apply_transition_gradient_policy(obs, new_state)
        return obs, new_state, reward, terminated, info

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Start at the road start with a speed ``U[speed_min_mps, speed_max_mps]`` and a first task.

        Args:
          key: PRNG key.
          params: :class:`EnvParams`.

        Returns:
          ``(obs, state)``.
        """
        # One draw of two words (no key splitting): the speed from one, the task classes from the other.
        words = jax.random.bits(key, (2,), jnp.uint32)
        vmin, vmax = _f32(params.speed_min_mps), _f32(params.speed_max_mps)
        # jax.random.uniform's mapping of a word to [vmin, vmax).
        speed = jnp.maximum(vmin, _unit_float(words[0]) * (vmax - vmin) + vmin)
        size_class, deadline_class = _task_from_word(words[1], params)
        state = EnvState(
            position=jnp.zeros((), jnp.float32),
            speed=speed,
            size_class=size_class,
            deadline_class=deadline_class,
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(state, params), state

    def observe(self, key: jax.Array, state: EnvState, action, params: EnvParams) -> jax.Array:
        """gymnax 1.x observation hook; deterministic, so ``key`` and ``action`` are unused."""
        del key, action
        return self.get_obs(state, params)

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        """Observation of ``state`` in the mode ``params.observation``.

        ``"index"``: int32 scalar in ``[0, num_states)`` with
        ``index = ((position_bin * num_speed_bins + speed_bin) * num_size_classes + size_class)
        * num_deadline_classes + deadline_class``; position bins split ``[0, road_length_m]`` and speed
        bins split ``[speed_min_mps, speed_max_mps]`` into equal widths (values outside are clipped into
        the first / last bin).

        ``"features"``: float32 vector of shape ``(4 + 3 * num_aps,)``, every entry in ``[-1, 1]``:
        ``[2 * position / road - 1, speed scaled to [-1, 1] over [speed_min, speed_max] (0 when they are
        equal), 2 * size / max(size) - 1, 2 * deadline / max(deadline) - 1]`` followed, per AP, by the
        distance to its coverage entry and to its coverage exit (``(edge - position) / road``, clipped
        to ``[-1, 1]``; negative = already behind) and ``clip(tx_time / deadline, 0, 2) - 1`` with
        ``tx_time = size / rate``.

        Args:
          state: :class:`EnvState`.
          params: :class:`EnvParams` (defaults if ``None``).
          key: unused.

        Returns:
          int32 scalar or float32 ``(4 + 3 * num_aps,)`` array.
        """
        del key
        if params is None:
            params = self.default_params
        road = _f32(params.road_length_m)
        speed_unit = _speed_unit(params, state.speed)
        if params.observation == "index":
            return state_index(params, state.position, state.speed, state.size_class, state.deadline_class)
        if params.observation == "features":
            sizes = _f32(params.task_size_mbit)
            deadlines = _f32(params.task_deadline_s)
            size = _lookup(sizes, state.size_class, params.num_size_classes)
            deadline = _lookup(deadlines, state.deadline_class, params.num_deadline_classes)
            centre, radius = _f32(params.ap_position_m), _f32(params.ap_radius_m)
            entry = jnp.clip((centre - radius - state.position) / road, -1.0, 1.0)
            exit_ = jnp.clip((centre + radius - state.position) / road, -1.0, 1.0)
            tx = jnp.clip(size / _f32(params.ap_rate_mbps) / deadline, 0.0, 2.0) - 1.0
            head = jnp.stack(
                [
                    2.0 * state.position / road - 1.0,
                    2.0 * speed_unit - 1.0,
                    2.0 * size / jnp.max(sizes) - 1.0,
                    2.0 * deadline / jnp.max(deadlines) - 1.0,
                ]
            )
            obs = jnp.concatenate([jnp.clip(head, -1.0, 1.0), entry, exit_, tx])
            return obs.astype(jnp.float32)
        raise ValueError(f"{_OWNER}.observation={params.observation!r}; expected one of {list(OBSERVATION_MODES)}")

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """True (bool scalar) once the vehicle has reached the road end."""
        return jnp.asarray(state.position >= _f32(params.road_length_m))

    @property
    def name(self) -> str:
        """Environment id."""
        return "AccessPointSelection-v0"

    @property
    def num_actions(self) -> int:
        """Number of APs at the default parameters (use ``action_space(params).n`` otherwise)."""
        return EnvParams.__dataclass_fields__["num_aps"].default

    def num_states(self, params: EnvParams) -> int:
        """Size of the index observation space (a Python int, usable as a Q-table shape)."""
        return (
            params.num_position_bins
            * params.num_speed_bins
            * params.num_size_classes
            * params.num_deadline_classes
        )

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        """``Discrete(num_aps)``: the AP to send the pending task to."""
        if params is None:
            params = self.default_params
        return spaces.Discrete(params.num_aps)

    def observation_space(self, params: EnvParams) -> spaces.Discrete | spaces.Box:
        """``Discrete(num_states)`` (``"index"``) or ``Box(-1, 1, (4 + 3 * num_aps,), float32)``."""
        if params.observation == "index":
            return spaces.Discrete(self.num_states(params))
        return spaces.Box(-1.0, 1.0, (4 + 3 * params.num_aps,), jnp.float32)

    def state_space(self, params: EnvParams) -> spaces.Dict:
        """Bounds of every :class:`EnvState` field."""
        road = _f32(params.road_length_m)
        return spaces.Dict(
            {
                "position": spaces.Box(0.0, road + _f32(params.speed_max_mps) * _f32(params.step_s), (), jnp.float32),
                "speed": spaces.Box(_f32(params.speed_min_mps), _f32(params.speed_max_mps), (), jnp.float32),
                "size_class": spaces.Discrete(params.num_size_classes),
                "deadline_class": spaces.Discrete(params.num_deadline_classes),
                "time": spaces.Discrete(params.max_steps_in_episode + 1),
            }
        )


# ----------------------------------------------------------------------------- reference returns
#
# The action never changes the next state, so a drive at speed v visits the positions t * v * step_s
# (t = 0, 1, ...) whatever the policy does, each with a task drawn uniformly from the size x deadline
# classes. The expected return of any policy is therefore a sum over (speed, decision, task class) of the
# reward of the chosen AP; integrating the speed with the midpoint rule gives it without sampling noise.


class RewardGrid(NamedTuple):
    """Every AP's reward at every decision of drives at ``V`` quadrature speeds (see :func:`reward_grid`).

    Attributes:
      state: int32 ``[V, T, K]``: the index observation of decision ``t`` at speed ``v`` with task class
        pair ``k`` (``size_class = k // num_deadline_classes``, ``deadline_class = k % num_deadline_classes``).
      rewards: float32 ``[V, T, K, A]``: the reward of sending that task to each AP.
      valid: bool ``[V, T]``: decision ``t`` takes place (the vehicle is still on the road and ``t`` is
        below ``max_steps_in_episode``).
      heuristic: int32 ``[V, T]``: the AP the "small cell if inside its coverage, else macro" rule picks.
    """

    state: jax.Array
    rewards: jax.Array
    valid: jax.Array
    heuristic: jax.Array


def heuristic_action(params: EnvParams, position) -> jax.Array:
    """"Small cell if covered, else macro": the first AP of index >= 1 whose coverage holds ``position``, else 0."""
    position = _f32(position)[..., None]
    inside = jnp.abs(position - _f32(params.ap_position_m)) <= _f32(params.ap_radius_m)
    inside = inside.at[..., 0].set(False)
    return jnp.where(inside.any(-1), jnp.argmax(inside, -1), 0).astype(jnp.int32)


def reward_grid(params: EnvParams, num_speeds: int = 256) -> RewardGrid:
    """Rewards of every AP along drives at ``num_speeds`` midpoint speeds of ``[speed_min_mps, speed_max_mps]``.

    Args:
      params: concrete :class:`EnvParams` (any observation mode; the grid uses the index observation).
      num_speeds: quadrature points of the uniform speed distribution.

    Returns:
      A :class:`RewardGrid` with ``T = max_steps_in_episode``, ``K = num_size_classes * num_deadline_classes``.
    """
    check_positive_int("reward_grid", "num_speeds", num_speeds)
    validate_params(params)
    steps = int(params.max_steps_in_episode)
    vmin, vmax = float(params.speed_min_mps), float(params.speed_max_mps)
    speeds = jnp.asarray(vmin + (np.arange(num_speeds) + 0.5) / num_speeds * (vmax - vmin), jnp.float32)
    n_dead = params.num_deadline_classes
    pairs = jnp.arange(params.num_size_classes * n_dead, dtype=jnp.int32)
    position = speeds[:, None] * _f32(params.step_s) * jnp.arange(steps, dtype=jnp.float32)[None, :]
    pos, spd = position[:, :, None], jnp.broadcast_to(speeds[:, None, None], position.shape + (1,))
    size_class, deadline_class = pairs // n_dead, pairs % n_dead
    state = state_index(params, pos, spd, size_class, deadline_class)
    aps = jnp.arange(params.num_aps, dtype=jnp.int32)
    rewards = _task_reward(
        params, pos[..., None], spd[..., None], size_class[:, None], deadline_class[:, None], aps
    )[0]
    valid = position < _f32(params.road_length_m)
    return RewardGrid(state=state, rewards=rewards, valid=valid, heuristic=heuristic_action(params, position))


def _per_episode(grid: RewardGrid, values: jax.Array) -> jax.Array:
    """Expected per-episode sum of ``values`` ``[V, T, K]`` (uniform speeds and task classes)."""
    weight = grid.valid[:, :, None] / (grid.valid.shape[0] * grid.state.shape[-1])
    return jnp.sum(values * weight)


def state_action_rewards(grid: RewardGrid, num_states: int) -> jax.Array:
    """``W[s, a]``: the expected reward collected per episode in state ``s`` by always choosing ``a`` there.

    The expected return of a (stochastic) tabular policy ``pi[s, a]`` is ``sum(pi * W)``; the best tabular
    policy picks ``argmax_a W[s, a]`` in every state.
    """
    weight = grid.valid[:, :, None] / (grid.valid.shape[0] * grid.state.shape[-1])
    flat = (grid.rewards * weight[..., None]).reshape(-1, grid.rewards.shape[-1])
    return jax.ops.segment_sum(flat, grid.state.reshape(-1), num_segments=num_states)


def visits_per_episode(grid: RewardGrid, num_states: int) -> jax.Array:
    """Expected visits of every index state per episode, ``[num_states]`` (sums to the mean episode length)."""
    weight = jnp.broadcast_to(grid.valid[:, :, None] / (grid.valid.shape[0] * grid.state.shape[-1]), grid.state.shape)
    return jax.ops.segment_sum(weight.reshape(-1), grid.state.reshape(-1), num_segments=num_states)


def greedy_probs(q: jax.Array) -> jax.Array:
    """The greedy policy of ``q`` ``[..., S, A]`` with ties split uniformly (the greedy rule's expectation)."""
    best = q >= jnp.max(q, axis=-1, keepdims=True)
    return best / jnp.sum(best, axis=-1, keepdims=True)


def greedy_return(q: jax.Array, w: jax.Array) -> jax.Array:
    """Expected undiscounted return of the greedy policy of Q-table(s) ``q`` ``[..., S, A]``, given ``W``.

    ``w`` is :func:`state_action_rewards`; ties are broken uniformly at random (so an all-equal row is
    the uniform policy), as the library's greedy rule does.
    """
    return jnp.sum(greedy_probs(q) * w, axis=(-2, -1))


def reference_returns(params: EnvParams, num_speeds: int = 256) -> dict[str, float]:
    """Expected returns of fixed policies on ``params``, without sampling noise (midpoint rule in speed).

    Returns:
      dict with ``random`` (uniform AP), ``always_macro``, ``heuristic`` (small cell if inside its
      coverage, else macro), ``tabular_optimum`` (the best policy of the index observation: no learner
      on the table can exceed it), ``oracle`` (the best AP for the exact position and speed, the
      ceiling of any observation) and ``mean_episode_steps``.
    """
    grid = reward_grid(params, num_speeds)
    index_params = params.replace(observation="index")
    num_states = AccessPointSelection().num_states(index_params)
    w = state_action_rewards(grid, num_states)
    heur = jnp.take_along_axis(grid.rewards, grid.heuristic[:, :, None, None], axis=-1)[..., 0]
    out = {
        "random": _per_episode(grid, jnp.mean(grid.rewards, -1)),
        "always_macro": _per_episode(grid, grid.rewards[..., 0]),
        "heuristic": _per_episode(grid, heur),
        "tabular_optimum": jnp.sum(jnp.max(w, -1)),
        "oracle": _per_episode(grid, jnp.max(grid.rewards, -1)),
        "mean_episode_steps": _per_episode(grid, jnp.ones(grid.state.shape)),
    }
    return {k: float(v) for k, v in out.items()}


def _factory(**overrides: Any) -> tuple[AccessPointSelection, EnvParams]:
    """``dt.make`` factory: list/tuple overrides of array fields become float32 arrays."""
    overrides = dict(overrides)
    for name in _ARRAY_FIELDS:
        value = overrides.get(name)
        if isinstance(value, (list, tuple, np.ndarray)):
            try:
                overrides[name] = jnp.asarray(np.asarray(value, np.float32))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{_OWNER}.{name}={value!r}: expected a list of numbers") from err
    return AccessPointSelection(), build_params(EnvParams, overrides, validate_params)


register(
    "AccessPointSelection-v0",
    _factory,
    "URLLC access-point selection for a vehicle on a straight road (paper case 1): 5 APs, discrete index or feature obs",
)

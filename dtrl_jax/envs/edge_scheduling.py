"""``EdgeTaskScheduling-v0``: the transmission order of N tasks offloaded to one edge server.

The environment of the companion paper (X. Wang et al., "Digital Twin-Assisted Efficient Reinforcement
Learning for Edge Task Scheduling", VTC2022-Spring, arXiv 2208.01781). One user holds N tasks and sends them
to a single-core edge server one at a time, at a constant rate ``R``; the server processes them in the order
they arrive. For a transmission order ``o`` (a permutation of the tasks), position ``j`` holding task
``o_j``::

    T_ready^j = sum_{i <= j} d_{o_i} / R                                   (end of the j-th upload)
    T_comp^j  = max(T_ready^j, T_comp^{j-1}) + d_{o_j} c_{o_j} / f          (T_comp^0 = 0)
    cost      = sum_j T_comp^j + zeta * #{j : T_comp^j > deadline_{o_j}}

An episode is one decision: the action is the whole order, a permutation index in ``[0, N!)`` (lexicographic
rank, decoded by the factorial number system, see :func:`decode_permutation`); the episode terminates after
that single step with ``reward = -cost``. As in the companion paper the frame's task set is fixed by the
parameters (drawn from ``task_seed``), so the problem is learning the best order for that frame; the
observation is therefore a single state index by default. Because N <= 8, the exact optimum is computed by
brute force over all N! orders (:func:`brute_force_optimum`), and runs report their gap to it
(:func:`normalised_gap`).

Units: sizes in Mbit, complexities in CPU cycles per bit, CPU frequency in GHz, rate in Mbit/s, times in
seconds (so the computing time of a task is ``d * c / (1000 f)`` s).

Defaults (``EnvParams``) and why:

- ``num_tasks = 6`` (static, allowed 2..8): the companion paper's Table II case (N = 6, 720 orders); 7 and 8
  are its larger cases. 8 is the cap so that brute force (40,320 orders) stays a single cheap ``vmap``.
- ``size_low, size_high = 0.0, 2.0`` Mbit: the paper's d ~ U[0, 2] Mb.
- ``complexity_low, complexity_high = 0.0, 1000.0`` cycles/bit: the paper's c ~ U[0, 1000].
- ``deadline_low, deadline_high = 1.0, 5.0`` s: the paper's deadline ~ U[1, 5] s.
- ``frequency_ghz = 10.0``: the paper's 10 GHz single-core server (mean computing time 0.05 s, max 0.2 s).
- ``rate_mbps = 4.0`` Mbit/s (our choice; the paper gives none): a frame of N = 6 tasks then takes about
  1.5 s to upload (N = 8: 2 s), the same order as the U[1, 5] s deadlines, so the order decides which
  deadlines are met. Measured over random frames (``task_seed`` 1000..1299 / 1099 / 1039 for N = 6 / 7 / 8):
  21% / 34% / 46% of the orders miss at least one deadline, while the optimum practically never does. At
  10 Mbit/s only 0% / 0.2% / 0.5% of the orders miss one and the deadlines (and ``zeta``) hardly matter.
  Computing (0.05 s mean) is then shorter than a mean upload (0.25 s) but not negligible: a small task behind
  a compute-heavy one waits for the server, so the ``max`` in ``T_comp`` is active.
- ``zeta = 2.0`` s per missed deadline (our choice; the paper gives none): more than the whole expected upload
  of a frame of 6 tasks (1.5 s), so missing one deadline costs more than delaying any single task to the end
  of the queue, yet well below the sum of completion times of a random order (5.5 / 7.3 / 9.1 s for
  N = 6 / 7 / 8), so the objective stays a trade-off rather than a lexicographic "misses first" rule. With it
  the deadlines change the optimal order in 18% / 25% / 40% of random frames (same frames as above).
- ``task_seed = 8`` (traced): the frame's task set is ``task_set(params)``, drawn from
  ``jax.random.key(task_seed)``. 8 is the smallest seed whose frame exercises the whole cost model at
  N = 6, 7 and 8 alike: 58% / 78% / 85% of the orders miss at least one deadline, the optimum misses none, and
  with ``zeta = 0`` the optimal order would be a different one. (Seed 0 happens to draw small tasks with late
  deadlines: no order misses any deadline, so ``zeta`` would never matter on the default frame.)
- ``resample_tasks = False`` (static): if True, every reset draws a new task set from the reset key instead.
- ``observation = "index"`` (static): ``spaces.Discrete(1)``, the single state 0 of the companion paper's
  Q-learning over Q(order); ``"features"`` gives a float32 vector of the normalised task features
  ``(d / 2, c / 1000, (deadline - 1) / 4)`` per task, flattened task-major to shape ``(3 N,)``, for DQN.
  The scales are fixed (the paper's ranges), not taken from the params, so features stay comparable across
  domains with different params.
- ``max_steps_in_episode = 1``: one decision per episode (truncation coincides with termination).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from dtrl_jax._checks import check_choice, check_number, is_concrete
from dtrl_jax.envs.registry import build_params, register
from dtrl_jax.envs.spec import Action, StepResult

MAX_TASKS = 8
"""Largest allowed ``num_tasks`` (8! = 40,320 orders for brute force)."""

OBSERVATIONS = ("index", "features")
_FEATURE_SCALE = (2.0, 1000.0, 4.0)  # d / 2, c / 1000, (deadline - 1) / 4
_FEATURE_OFFSET = (0.0, 0.0, 1.0)


@struct.dataclass
class EnvState(environment.EnvState):
    """State of one frame.

    Attributes:
      sizes: float32[N], data size of each task (Mbit).
      complexities: float32[N], computing complexity of each task (cycles/bit).
      deadlines: float32[N], deadline of each task (s, from the start of the frame).
      time: int, steps taken in the episode (0 after reset, 1 after the single decision).
    """

    sizes: jax.Array
    complexities: jax.Array
    deadlines: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Parameters; every default and its reason is in the module docstring. Static fields fix shapes."""

    size_low: float = 0.0
    size_high: float = 2.0
    complexity_low: float = 0.0
    complexity_high: float = 1000.0
    deadline_low: float = 1.0
    deadline_high: float = 5.0
    frequency_ghz: float = 10.0
    rate_mbps: float = 4.0
    zeta: float = 2.0
    task_seed: int = 8
    max_steps_in_episode: int = 1
    num_tasks: int = struct.field(pytree_node=False, default=6)
    resample_tasks: bool = struct.field(pytree_node=False, default=False)
    observation: str = struct.field(pytree_node=False, default="index")


class TaskSet(NamedTuple):
    """The tasks of one frame, each a float32[N] array in task order (not transmission order)."""

    sizes: jax.Array
    complexities: jax.Array
    deadlines: jax.Array


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

_OWNER = "EdgeSchedulingParams"


def _check_order(low_name: str, low: Any, high_name: str, high: Any) -> None:
    if is_concrete(low) and is_concrete(high) and np.any(np.asarray(high) < np.asarray(low)):
        raise ValueError(
            f"{_OWNER}.{high_name}={high!r} is below {_OWNER}.{low_name}={low!r}; "
            f"expected {low_name} <= {high_name}"
        )


def validate_params(params: EnvParams) -> None:
    """Raise ``ValueError`` (or ``TypeError`` for a wrong type) naming the first bad field of ``params``.

    Traced (non-concrete) values are skipped, see :mod:`dtrl_jax._checks`.
    """
    n = params.num_tasks
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{_OWNER}.num_tasks={n!r}: expected a Python int in [2, {MAX_TASKS}] (it fixes shapes)")
    check_number(_OWNER, "num_tasks", n, low=2, high=MAX_TASKS, integer=True)
    if not isinstance(params.resample_tasks, (bool, np.bool_)):
        raise ValueError(f"{_OWNER}.resample_tasks={params.resample_tasks!r}: expected a bool")
    check_choice(_OWNER, "observation", params.observation, OBSERVATIONS)
    check_number(_OWNER, "size_low", params.size_low, low=0.0)
    check_number(_OWNER, "size_high", params.size_high, low=0.0)
    _check_order("size_low", params.size_low, "size_high", params.size_high)
    check_number(_OWNER, "complexity_low", params.complexity_low, low=0.0)
    check_number(_OWNER, "complexity_high", params.complexity_high, low=0.0)
    _check_order("complexity_low", params.complexity_low, "complexity_high", params.complexity_high)
    check_number(_OWNER, "deadline_low", params.deadline_low, low=0.0)
    check_number(_OWNER, "deadline_high", params.deadline_high, low=0.0)
    _check_order("deadline_low", params.deadline_low, "deadline_high", params.deadline_high)
    check_number(_OWNER, "frequency_ghz", params.frequency_ghz, low=0.0, low_open=True)
    check_number(_OWNER, "rate_mbps", params.rate_mbps, low=0.0, low_open=True)
    check_number(_OWNER, "zeta", params.zeta, low=0.0)
    check_number(_OWNER, "task_seed", params.task_seed, low=0, high=2**31 - 1, integer=True)
    check_number(_OWNER, "max_steps_in_episode", params.max_steps_in_episode, low=1, integer=True)


# --------------------------------------------------------------------------------------------------
# Pure helpers (jittable, vmappable)
# --------------------------------------------------------------------------------------------------


def decode_permutation(index: jax.Array | int, n: int) -> jax.Array:
    """The ``index``-th permutation of ``range(n)`` in lexicographic order (factorial number system).

    ``0`` is the identity ``[0, 1, ..., n-1]`` and ``n! - 1`` is its reverse; the order matches
    ``itertools.permutations(range(n))``. An index outside ``[0, n!)`` is taken modulo ``n!``.

    Args:
      index: int scalar (may be traced).
      n: static number of elements (>= 1).

    Returns:
      int32[n], the permutation: element ``j`` is the task sent in position ``j``.
    """
    index = jnp.asarray(index, jnp.int32)
    # Lehmer digits: digit i in [0, n - i) says which of the still-unused elements comes next.
    perm = jnp.stack([(index // math.factorial(n - 1 - i)) % (n - i) for i in range(n)])
    # Turn "k-th unused element" into the element itself, from the back: every later entry at or above
    # the value chosen at position i is shifted up by one (elementwise only, cheap to compile and vmap).
    pos = jnp.arange(n)
    for i in range(n - 2, -1, -1):  # static loop, n <= 8
        perm = perm + ((pos > i) & (perm >= perm[i])).astype(jnp.int32)
    return perm


def encode_permutation(perm: jax.Array) -> jax.Array:
    """Lexicographic rank of a permutation (Lehmer code); the inverse of :func:`decode_permutation`.

    Args:
      perm: int[n], a permutation of ``range(n)``.

    Returns:
      int32 scalar in ``[0, n!)``.
    """
    perm = jnp.asarray(perm, jnp.int32)
    n = perm.shape[-1]
    later = jnp.triu(jnp.ones((n, n), bool), k=1)  # later[i, j] = j > i
    lehmer = jnp.sum(later & (perm[None, :] < perm[:, None]), axis=1)
    weights = jnp.asarray([math.factorial(n - 1 - i) for i in range(n)], jnp.int32)
    return jnp.sum(lehmer * weights).astype(jnp.int32)


def schedule_cost(
    order: jax.Array,
    sizes: jax.Array,
    complexities: jax.Array,
    deadlines: jax.Array,
    params: EnvParams,
) -> tuple[jax.Array, jax.Array]:
    """Cost of sending the tasks in ``order`` (see the module docstring for the model).

    A static Python loop over the N <= 8 positions (no ``lax`` loop, nothing over time).

    Args:
      order: int[N], a permutation: task ``order[j]`` is sent in position ``j``.
      sizes, complexities, deadlines: float[N] task arrays in task order.
      params: ``EnvParams`` (uses ``rate_mbps``, ``frequency_ghz``, ``zeta``).

    Returns:
      ``(cost, missed)``: float32 scalar ``sum_j T_comp^j + zeta * missed`` (s) and int32 scalar number of
      tasks that finish after their deadline.
    """
    d = jnp.asarray(sizes, jnp.float32)[order]
    c = jnp.asarray(complexities, jnp.float32)[order]
    dl = jnp.asarray(deadlines, jnp.float32)[order]
    ready = jnp.cumsum(d) / params.rate_mbps
    compute = d * c / (1000.0 * params.frequency_ghz)
    done = jnp.zeros((), jnp.float32)
    finish = []
    for j in range(order.shape[-1]):
        done = jnp.maximum(ready[j], done) + compute[j]
        finish.append(done)
    finish = jnp.stack(finish)
    missed = jnp.sum(finish > dl).astype(jnp.int32)
    cost = jnp.sum(finish) + params.zeta * missed
    return cost.astype(jnp.float32), missed


def task_set(params: EnvParams, key: jax.Array | None = None) -> TaskSet:
    """The frame's tasks: uniform sizes, complexities and deadlines in the params' ranges.

    Args:
      params: ``EnvParams``; ``num_tasks`` fixes N.
      key: a PRNG key; ``None`` (default) uses ``jax.random.key(params.task_seed)``, the fixed frame.

    Returns:
      ``TaskSet(sizes, complexities, deadlines)``, each float32[N].
    """
    if key is None:
        key = jax.random.key(params.task_seed)
    n = params.num_tasks
    k_size, k_comp, k_dead = jax.random.split(key, 3)
    uniform = lambda k, lo, hi: jax.random.uniform(k, (n,), jnp.float32, lo, hi)  # noqa: E731
    return TaskSet(
        sizes=uniform(k_size, params.size_low, params.size_high),
        complexities=uniform(k_comp, params.complexity_low, params.complexity_high),
        deadlines=uniform(k_dead, params.deadline_low, params.deadline_high),
    )


def _as_tasks(params: EnvParams, tasks: Any) -> TaskSet:
    if tasks is None:
        return task_set(params)
    if isinstance(tasks, EnvState):
        return TaskSet(tasks.sizes, tasks.complexities, tasks.deadlines)
    return TaskSet(*tasks)


def brute_force_optimum(params: EnvParams, tasks: Any = None) -> dict[str, jax.Array]:
    """Cost of every one of the N! orders (one ``vmap``, jitted) and its summary.

    Once compiled (once per ``num_tasks``, about 0.8 s of CPU time) it takes under a millisecond for N = 6 or 7
    and about 10 ms for N = 8 (40,320 orders) on one CPU. Works inside ``jit``/``vmap`` too (e.g. over a stack
    of params).

    Args:
      params: ``EnvParams``.
      tasks: ``None`` (the fixed frame ``task_set(params)``), a ``TaskSet`` / ``(sizes, complexities,
        deadlines)`` tuple, or an ``EnvState`` (e.g. a resampled frame).

    Returns:
      dict with float32 scalars ``best_cost``, ``worst_cost``, ``mean_cost`` (mean over all orders, i.e. the
      expected cost of a uniformly random order), int32 scalar ``best_action`` (the optimal permutation
      index, lowest on ties), int32[N] ``best_order`` and int32 scalar ``best_missed``.
    """
    return _brute_force_jit(params, tasks)


def _brute_force(params: EnvParams, tasks: Any) -> dict[str, jax.Array]:
    tasks = _as_tasks(params, tasks)
    n = params.num_tasks
    orders = jax.vmap(decode_permutation, in_axes=(0, None))(jnp.arange(math.factorial(n)), n)
    costs, missed = jax.vmap(schedule_cost, in_axes=(0, None, None, None, None))(orders, *tasks, params)
    best = jnp.argmin(costs).astype(jnp.int32)
    return {
        "best_cost": costs[best],
        "best_action": best,
        "worst_cost": jnp.max(costs),
        "mean_cost": jnp.mean(costs),
        "best_order": orders[best],
        "best_missed": missed[best],
    }


_brute_force_jit = jax.jit(_brute_force)


def normalised_gap(
    cost: jax.Array, params: EnvParams, tasks: Any = None, optimum: dict[str, jax.Array] | None = None
) -> jax.Array:
    """Gap to the optimum, normalised by a random order: ``(cost - best) / (mean_cost - best)``.

    0 is optimal, 1 is as good as an order drawn uniformly at random (on average), values above 1 are worse
    than random (the maximum is ``(worst - best) / (mean - best)``). Independent of the time scale, so it
    compares across N, rates and frames. If every order costs the same, the gap is 0.

    Args:
      cost: float scalar or array of costs (``-reward``) on this frame.
      params: ``EnvParams``.
      tasks: as in :func:`brute_force_optimum` (ignored when ``optimum`` is given).
      optimum: a precomputed :func:`brute_force_optimum` result, to avoid recomputing it.

    Returns:
      float32 array of the shape of ``cost``.
    """
    if optimum is None:
        optimum = brute_force_optimum(params, tasks)
    best, mean = optimum["best_cost"], optimum["mean_cost"]
    spread = mean - best
    safe = jnp.where(spread > 0, spread, 1.0)
    return jnp.where(spread > 0, (jnp.asarray(cost, jnp.float32) - best) / safe, 0.0).astype(jnp.float32)


# --------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------


class EdgeTaskScheduling(environment.Environment[EnvState, EnvParams]):
    """Order N offloaded tasks for one edge server; one decision (the whole order) per episode.

    Args:
      num_tasks, resample_tasks, observation: the static fields of ``default_params`` (see ``EnvParams``);
        the environment reads everything else, and the shapes, from the params it is given.
    """

    def __init__(self, num_tasks: int = 6, resample_tasks: bool = False, observation: str = "index"):
        super().__init__()
        validate_params(EnvParams(num_tasks=num_tasks, resample_tasks=resample_tasks, observation=observation))
        self.num_tasks = num_tasks
        self.resample_tasks = resample_tasks
        self.observation = observation

    def _config(self) -> tuple[Any, ...]:
        return (type(self), self.num_tasks, self.resample_tasks, self.observation)

    def __eq__(self, other: object) -> bool:
        # Behaviour depends only on these static fields, so equal configs share jit caches (``step`` and
        # ``reset`` are jitted with ``self`` static): ``make`` twice compiles once.
        return isinstance(other, EdgeTaskScheduling) and self._config() == other._config()

    def __hash__(self) -> int:
        return hash(self._config())

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(
            num_tasks=self.num_tasks, resample_tasks=self.resample_tasks, observation=self.observation
        )

    def step_env(self, key: jax.Array, state: EnvState, action: Action, params: EnvParams) -> StepResult:
        """Send the tasks in the order ``decode_permutation(action)``; the episode then ends.

        Returns:
          ``(obs, state, reward, terminated, info)``: reward float32 ``-cost``, terminated ``True``, info with
          ``violation`` (bool, any deadline missed), ``cost`` (float32) and ``missed`` (int32).
        """
        del key
        order = decode_permutation(action, params.num_tasks)
        cost, missed = schedule_cost(order, state.sizes, state.complexities, state.deadlines, params)
        state = state.replace(time=state.time + 1)
        info = {"violation": missed > 0, "cost": cost, "missed": missed}
        return (
            jax.lax.stop_gradient(self.get_obs(state, params)),
            jax.lax.stop_gradient(state),
            -cost,
            self.is_terminated(state, params),
            info,
        )

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Start a frame: the fixed task set of ``task_seed``, or one drawn from ``key`` if ``resample_tasks``."""
        tasks = task_set(params, key if params.resample_tasks else None)
        state = EnvState(sizes=tasks.sizes, complexities=tasks.complexities, deadlines=tasks.deadlines, time=0)
        return self.get_obs(state, params), state

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key: jax.Array | None = None) -> jax.Array:
        """int32 scalar 0 (``"index"``), or float32[3 N] normalised task features (``"features"``)."""
        mode = self.observation if params is None else params.observation
        if mode == "index":
            return jnp.zeros((), jnp.int32)
        feats = jnp.stack([state.sizes, state.complexities, state.deadlines], axis=-1)
        feats = (feats - jnp.asarray(_FEATURE_OFFSET)) / jnp.asarray(_FEATURE_SCALE)
        return feats.reshape(-1).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """True once the single decision has been taken."""
        return jnp.asarray(state.time >= 1)

    @property
    def name(self) -> str:
        return "EdgeTaskScheduling-v0"

    @property
    def num_actions(self) -> int:
        """N! transmission orders for the default ``num_tasks``."""
        return math.factorial(self.num_tasks)

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        n = self.num_tasks if params is None else params.num_tasks
        return spaces.Discrete(math.factorial(n))

    def observation_space(self, params: EnvParams | None = None) -> spaces.Discrete | spaces.Box:
        params = self.default_params if params is None else params
        if params.observation == "index":
            return spaces.Discrete(1)
        off, scale = jnp.asarray(_FEATURE_OFFSET), jnp.asarray(_FEATURE_SCALE)
        low = (jnp.asarray([params.size_low, params.complexity_low, params.deadline_low]) - off) / scale
        high = (jnp.asarray([params.size_high, params.complexity_high, params.deadline_high]) - off) / scale
        shape = (3 * params.num_tasks,)
        return spaces.Box(jnp.tile(low, params.num_tasks), jnp.tile(high, params.num_tasks), shape, jnp.float32)


def _factory(**overrides: Any) -> tuple[EdgeTaskScheduling, EnvParams]:
    """``dt.make("EdgeTaskScheduling-v0", **overrides)``: overrides are ``EnvParams`` field names."""
    params = build_params(EnvParams, overrides, validate_params)
    env = EdgeTaskScheduling(
        num_tasks=params.num_tasks, resample_tasks=params.resample_tasks, observation=params.observation
    )
    return env, params


register(
    "EdgeTaskScheduling-v0",
    _factory,
    "Order N (2..8) tasks offloaded to a 10 GHz edge server; action = whole order (N! actions), "
    "cost = sum of completion times + zeta per missed deadline (companion paper).",
)

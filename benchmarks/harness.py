"""The benchmark harness: arms x seeds as one compiled program per static group, curves, results.

A benchmark script is the recipe of one figure; the harness does the rest::

    arms = [harness.Arm("physical", cfg),
            harness.Arm("n=5", cfg.replace(twin=dt.TwinConfig(num_domains=5, action_trials=5)))]
    runs = harness.run_arms(arms, env, params, seeds=16, device=device)     # {arm: {metric: [S, T]}}
    curves = {"greedy": harness.panel(runs, y="eval_return", x="physical_episodes")}
    harness.write(NAME, mode=mode, config={...}, summary={...}, curves=curves, out=args.out, plot=...)

**Grouping.** Arms whose configs differ only in *traced* fields (learning rate, gamma, epsilon
schedule, noise levels, ...) have the same pytree structure; they are stacked and trained by ONE
``jax.vmap`` over (config, seed) - one compilation for a whole sensitivity sweep. Arms that differ
in a static field (trial count, look-ahead depth, network) compile once each. Every arm sees the
same seed keys (common random numbers), so paired differences between arms are meaningful. Only the
metrics named in ``keep`` leave the compiled program (never the replay buffers).

**Results schema** (``SCHEMA``; what ``dtrl plot`` and the notebooks read)::

    {"schema": "dtrl-bench/1", "benchmark": name, "timestamp_utc": ..., "environment": {...},
     "mode": "quick" | "default" | "full",
     "provenance": {"commit": ..., "dirty": bool, "command": "python -m benchmarks.x ..."},
     "config": {...},                  # what ran: env, arms and their settings, seeds
     "summary": {...},                 # the figures the README quotes
     "curves": {panel: {"x": x_name, "y": y_name, "xlabel": ..., "ylabel": ...,
                        "series": {arm: {"x": [T], "mean": [T], "std": [T], "seeds": S}}}}}

Curves are summaries (mean and std over seeds at each logging point); anything recomputable from
them is not stored. JSON is written compactly (``_common.compact_json``: one line per curve).

**Also here.** ``run_arms(final_eval=E)``: the final agent's greedy policy on E fresh physical episodes
per seed (``runs[arm]["_final_eval"]``); ``run_arms(probe=f)``: ``f(agent_state)`` recorded after every
logging interval (e.g. a Q-table's exact greedy value); ``run_arms(seed_keys=...)``: explicit seed keys
(a study on the first seeds of a larger run). ``run_seeds``: one vmapped program the harness does not
build (e.g. ``make_async_train``), compiled ahead of time. ``run_phased``: arms whose physical or twin params change
between phases (pre-training on a twin, a scenario change), all rows of one program, with
``physical_part`` to compare them at the same physical budget. Per-seed figures: ``per_seed``
(``{"mean", "std", "per_seed"}``), ``paired`` (arm minus control on the same seeds), ``window_rate``,
``final_training_return``, ``returns_summary``, ``reach_steps``. Sectioned files (one section per
agent or scenario, run separately and merged): ``write_sections`` / ``merge_sections``, each section's
config ``stamped`` with its own provenance.
Timing benchmarks build their panels from measurement rows with ``points_panel`` (x = domains, batch
size, devices..., one series per case); ``plot_curves``/``draw_panel`` and ``save_with_caption`` draw.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import dtrl_jax as dt
from benchmarks import _common
from dtrl_jax import convergence

SCHEMA = "dtrl-bench/1"

#: Colours of the variants, in order (the physical baseline first, black).
COLORS = ("black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:olive", "tab:cyan")

#: ``fold_in(key, EVAL_STREAM)`` roots the final evaluation's keys (far from any ``split(key, seeds)`` index).
EVAL_STREAM = 2**31 - 1

#: ``TwinConfig.ready_after`` beyond any run: the twin never switches on, the program is plain physical RL.
NEVER = 2**30

#: Metrics kept by default (small: one row per logging interval).
DEFAULT_METRICS = ("physical_steps", "physical_episodes", "episode_return", "episodes_finished", "eval_return",
                   "eval_length", "epsilon", "updates", "twin_transitions", "violations")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One variant of a figure: a name (the legend), an agent config and optional twin params.

    Attributes:
      name: unique label of the arm.
      config: a ``QLearningConfig`` or ``DQNConfig``.
      twin_params: optional per-domain ``EnvParams`` stack for ``make_train(twin_params=...)``.
      phase_params: for :func:`run_phased`: the physical ``EnvParams`` of each phase (None or
        missing = the env params given to it): a scenario change, or a twin's params used as if
        physical for pre-training.
      phase_twin: for :func:`run_phased`: the twin params of each phase (None or missing = ``twin_params``).
      physical_from: for :func:`run_phased`: the first interval whose steps count as physical
        (pre-training before it); at a phase boundary > 0 the arm's step counter restarts there
        (a fresh epsilon schedule, ``learning_starts`` and ``ready_after``).
      per_seed_phases: ``phase_params``/``phase_twin`` entries carry a leading ``[seeds]`` axis
        (e.g. a different new scenario per seed).
      info: JSON metadata of the arm (its kind, noise level, ...), copied into summaries by scripts.
    """

    name: str
    config: Any
    twin_params: Any = None
    phase_params: tuple = ()
    phase_twin: tuple = ()
    physical_from: int = 0
    per_seed_phases: bool = False
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Arm.name={self.name!r}: expected a non-empty string")
        if not isinstance(self.config, (dt.QLearningConfig, dt.DQNConfig)):
            raise TypeError(f"Arm {self.name!r}: config must be a QLearningConfig or DQNConfig, "
                            f"got {type(self.config).__name__}")


def _structure(arm: Arm) -> Any:
    """What must agree for two arms to share one compiled program (static fields live in the treedef)."""
    return (jax.tree.structure(arm.config), jax.tree.structure(arm.twin_params),
            tuple(jnp.shape(x) for x in jax.tree.leaves(arm.twin_params)))


def group_arms(arms: Sequence[Arm]) -> list[list[int]]:
    """Indices of ``arms`` grouped by program structure, in first-appearance order."""
    groups: list[list[int]] = []
    keys: list[Any] = []
    for i, arm in enumerate(arms):
        s = _structure(arm)
        for g, k in enumerate(keys):
            if k == s:
                groups[g].append(i)
                break
        else:
            keys.append(s)
            groups.append([i])
    return groups


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def _reporter(label: str, num_intervals: int) -> Callable[[Any], None]:
    """Host progress about ten times per run: interval count and the greedy (or training) return."""
    every = max(1, num_intervals // 10)
    state = {"count": 0, "t0": time.perf_counter()}

    def report(row: Any) -> None:
        state["count"] += 1
        i = state["count"]
        if i % every and i != num_intervals:
            return
        y = np.asarray(row.get("eval_return", row["episode_return"]), np.float64)
        what = "greedy" if "eval_return" in row and np.any(np.isfinite(y)) else "return"
        if what == "return":
            y = np.asarray(row["episode_return"], np.float64)
        mean = float(np.nanmean(y)) if np.any(np.isfinite(y)) else float("nan")
        _common.log(f"  [{label}] interval {i:>5}/{num_intervals}  {what} {mean:9.3f}  "
                    f"(+{time.perf_counter() - state['t0']:.0f}s)")

    return report


def _program(env, env_params, keep: Sequence[str], final_eval: int, reporter, probe=None, after=None) -> Callable:
    """``one(config, twin_params, key, eval_key) -> kept metrics`` of one arm and seed (jittable).

    With ``probe``, the run is ``train.init`` then a scan of ``train.run`` over its logging intervals
    (the same program as ``train(key)``, see ``make_train``) and ``probe(agent_state)`` is recorded
    after every interval: what the agent *is* there (e.g. the exact greedy value of a Q-table).
    """

    def one(cfg, tp, k, k_eval):
        # make_train runs under the trace (configs are stacked arguments); its set-up on concrete values
        # (spaces, shapes: e.g. GlobalObservation.observation_space) must still evaluate eagerly.
        with jax.ensure_compile_time_eval():
            train = dt.make_train(cfg, env, env_params, twin_params=tp, on_interval=reporter)
        if probe is None:
            res = train(k)
            runner, kept = res.runner_state, {n: res.metrics[n] for n in keep if n in res.metrics}
        else:
            runner0, interval_keys = train.init(k)

            def body(r, ik):
                r, m = train.run(r, ik[None])
                return r, ({n: m[n][0] for n in keep if n in m}, probe(r.agent_state))

            runner, (kept, probed) = jax.lax.scan(body, runner0, interval_keys)
            res = dt.TrainResult(runner_state=runner, metrics=kept)
            kept = {**kept, **probed}
        if final_eval:
            ev = dt.evaluate(k_eval, train.agent, runner.agent_state, train.env, train.env_params, final_eval)
            kept["_final_eval"] = {"return": ev.returns, "length": ev.lengths, "violations": ev.violations}
        if after is not None:
            kept["_after"] = after(train, res, k_eval)
        return kept

    return one


def run_arms(arms: Sequence[Arm], env, env_params, *, seeds: int, key: jax.Array | None = None,
             device: jax.Device | None = None, keep: Sequence[str] = DEFAULT_METRICS,
             final_eval: int = 0, progress: bool = True, probe: Callable[[Any], dict[str, jax.Array]] | None = None,
             seed_keys: jax.Array | None = None,
             after: Callable[[Any, Any, jax.Array], Any] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Train every arm on ``seeds`` seeds; one compiled program per static group of arms.

    Args:
      arms: the variants (unique names).
      env, env_params: the physical environment every arm trains on.
      seeds: seeds per arm (the same keys for every arm).
      key: root key (default ``jax.random.key(0)``); seed keys are ``split(key, seeds)``.
      device: where to run (default: JAX's default device).
      keep: metrics to bring back (others never leave the program).
      final_eval: greedy episodes per seed of the *final* agent on fresh physical episodes
        (``dtrl_jax.evaluate``: argmax Q, random ties, no shield, the env as the agent sees it, i.e.
        wrapped when ``share_global_obs``); 0 = none. Its keys are
        ``split(fold_in(key, EVAL_STREAM), seeds)``, a stream apart from the training keys.
      progress: print progress lines while it runs.
      probe: ``probe(agent_state) -> {name: scalar}`` recorded after every logging interval (kept
        like a metric, ``[seeds, intervals]``); e.g. a Q-table's exact greedy return.
      seed_keys: explicit ``[seeds]`` keys instead of ``split(key, seeds)`` (e.g. the first seeds of a
        larger run, so that a smaller study pairs with it); the final evaluation's keys are then
        ``fold_in(seed_key, EVAL_STREAM)`` per seed.
      after: optional ``after(train, result, eval_key) -> pytree`` traced inside the program at the end
        of each (arm, seed): a measurement of the final agent (``result.runner_state.agent_state``)
        that needs more than the metrics, e.g. its value at the initial state; returned under
        ``runs[name]["_after"]`` with a leading ``[seeds]`` axis.
    Returns:
      ``{arm name: {metric: float64/int array [seeds, intervals]}}`` plus ``"_timing"`` per arm
      (``compile_s``, ``run_s`` of its group) under ``runs[name]["_timing"]`` as a dict, and with
      ``final_eval`` the episodes under ``runs[name]["_final_eval"]``: ``{"return", "length",
      "violations"}``, each ``[seeds, final_eval]``.
    """
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"run_arms: arm names must be unique, got {names}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"run_arms: seeds={seeds!r}; expected an int >= 1")
    if isinstance(final_eval, bool) or not isinstance(final_eval, int) or final_eval < 0:
        raise ValueError(f"run_arms: final_eval={final_eval!r}; expected an int >= 0")
    device = device or jax.devices()[0]
    root = jax.random.key(0) if key is None else key
    if seed_keys is None:
        keys = jax.random.split(root, seeds)
        eval_keys = jax.random.split(jax.random.fold_in(root, EVAL_STREAM), seeds)
    else:
        if seed_keys.shape[:1] != (seeds,):
            raise ValueError(f"run_arms: seed_keys has shape {seed_keys.shape}; expected ({seeds},) keys")
        keys = seed_keys
        eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, EVAL_STREAM))(seed_keys)
    keys, eval_keys = jax.device_put(keys, device), jax.device_put(eval_keys, device)
    out: dict[str, dict[str, Any]] = {}
    for group in group_arms(arms):
        members = [arms[i] for i in group]
        label = members[0].name if len(members) == 1 else f"{members[0].name} +{len(members) - 1}"
        template = members[0]
        reporter = _reporter(label, template.config.num_intervals) if progress else None
        one = _program(env, env_params, keep, final_eval, reporter, probe, after)
        if len(members) == 1:
            # a group of one: its config and twin params are constants of the program (as in a plain
            # jax.jit(jax.vmap(make_train(cfg, ...)))), which XLA can fold
            args = ()
            fn = jax.vmap(functools.partial(one, template.config, template.twin_params))
        else:
            configs = _stack([a.config for a in members])
            tparams = None if template.twin_params is None else _stack([a.twin_params for a in members])
            args = (configs, tparams)
            fn = jax.vmap(jax.vmap(one, in_axes=(None, None, 0, 0)),
                          in_axes=(0, 0 if tparams is not None else None, None, None))
        with jax.default_device(device):
            t0 = time.perf_counter()
            compiled = jax.jit(fn).lower(*args, keys, eval_keys).compile()
            t1 = time.perf_counter()
            if progress:
                _common.log(f"  [{label}] compiled in {t1 - t0:.1f}s; {len(members)} arm(s) x {seeds} seed(s)")
            result = jax.tree.map(np.asarray, jax.block_until_ready(compiled(*args, keys, eval_keys)))
            t2 = time.perf_counter()
        for j, arm in enumerate(members):
            # a group of one is [seeds, ...] already; a stacked group [arms, seeds, ...]
            out[arm.name] = result if len(members) == 1 else jax.tree.map(lambda v, j=j: v[j], result)
            out[arm.name]["_timing"] = {"compile_s": t1 - t0, "run_s": t2 - t1, "group": label}
    return {name: out[name] for name in names}


def run_phased(arms: Sequence[Arm], env, env_params, *, seeds: int, phases: Sequence[int], chunk: int | None = None,
               key: jax.Array | None = None, device: jax.Device | None = None, with_twin_params: bool = True,
               progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Train arms x seeds whose physical (and twin) params change between phases: ONE compiled program.

    Every (arm, seed) is a row of ``dtrl_jax.population.ScenarioTrainer``: configs, physical params
    and twin params are arguments, so pre-training on a twin as if physical, a physical scenario
    change, or redrawn twin scenarios all run in the same program, ``chunk`` intervals per call.
    The arms must share one program structure (:func:`group_arms` gives one group). Seed keys are
    ``split(key, seeds)``, the same for every arm (common random numbers), as in :func:`run_arms`.

    Args:
      phases: interval counts of the phases (their sum = the configs' ``num_intervals``).
      chunk: intervals per compiled call (default: the gcd of the phases).
      with_twin_params: pass ``twin_params`` (needs configs with a twin).
    Returns:
      ``{arm name: {metric: [seeds, intervals]}}`` with ``"_timing"`` (``run_s`` of the whole program).
    """
    from dtrl_jax import population as pop
    from dtrl_jax.twin import stack_params

    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"run_phased: arm names must be unique, got {names}")
    if len(group_arms(arms)) != 1:
        raise ValueError(f"run_phased: the arms must share one program structure; groups {group_arms(arms)}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"run_phased: seeds={seeds!r}; expected an int >= 1")
    chunk = int(np.gcd.reduce(np.asarray(phases, np.int64))) if chunk is None else chunk
    seed_keys = jax.random.split(jax.random.key(0) if key is None else key, seeds)

    def pick(stack, arm, s):
        return jax.tree.map(lambda x: x[s], stack) if arm.per_seed_phases and stack is not None else stack

    rows_cfg, rows_key = [], []
    phase_env: list[list[Any]] = [[] for _ in phases]
    phase_tp: list[list[Any]] = [[] for _ in phases]
    for arm in arms:
        for s in range(seeds):
            rows_cfg.append(arm.config)
            rows_key.append(seed_keys[s])
            for p in range(len(phases)):
                ep = pick(arm.phase_params[p], arm, s) if p < len(arm.phase_params) else None
                phase_env[p].append(env_params if ep is None else ep)
                if with_twin_params:
                    tp = pick(arm.phase_twin[p], arm, s) if p < len(arm.phase_twin) else None
                    phase_tp[p].append(arm.twin_params if tp is None else tp)
    sched = [(n, stack_params(phase_env[p]), stack_params(phase_tp[p]) if with_twin_params else None)
             for p, n in enumerate(phases)]
    restart = {}
    for p in range(1, len(phases)):
        flags = [0 < arm.physical_from == sum(phases[:p]) for arm in arms for _ in range(seeds)]
        if any(flags):
            restart[p] = np.asarray(flags)
    trainer = pop.ScenarioTrainer(env, pop.Member("harness", arms[0].config), with_twin_params=with_twin_params)
    with jax.default_device(device or jax.devices()[0]):
        t0 = time.perf_counter()
        _, metrics = trainer.train(pop.stack_configs(rows_cfg), jnp.stack(rows_key), sched, chunk=chunk,
                                   restart_steps=restart or None)
        metrics = jax.tree.map(np.asarray, jax.block_until_ready(metrics))
        wall = time.perf_counter() - t0
    if progress:
        _common.log(f"  {len(arms)} arms x {seeds} seeds = {len(rows_cfg)} rows, {sum(phases)} intervals: {wall:.1f} s")
    out = {}
    for a, arm in enumerate(arms):
        out[arm.name] = {k: v.reshape(len(arms), seeds, -1)[a] for k, v in metrics.items()}
        out[arm.name]["_timing"] = {"run_s": wall, "group": "phased"}
    return out


def physical_part(runs: dict[str, dict[str, Any]], arms: Sequence[Arm], budget: int, log_every: int):
    """Each arm's first ``budget`` physical intervals (after its pre-training), ``physical_steps`` counted
    from the arm's first physical step, so that arms are compared at the same physical budget."""
    out = {}
    for arm in arms:
        win = slice(arm.physical_from, arm.physical_from + budget)
        m = {k: np.asarray(v)[:, win] for k, v in runs[arm.name].items() if not k.startswith("_")}
        m["physical_steps"] = np.broadcast_to(log_every * np.arange(1, budget + 1, dtype=np.float64),
                                              m["episode_return"].shape)
        out[arm.name] = m
    return out


def series(metrics: dict[str, np.ndarray], *, y: str = "eval_return", x: str = "physical_episodes",
           smooth: int = 1, scale: float = 1.0) -> dict[str, Any]:
    """One arm's curve: mean x and mean/std of ``y`` over seeds at each logging point.

    ``smooth`` applies a trailing NaN-aware moving average per seed first
    (``dtrl_jax.convergence.smooth``); ``scale`` multiplies y (e.g. 1/horizon for a per-step rate).
    """
    if y not in metrics or x not in metrics:
        raise KeyError(f"series: metrics have no {y!r} or {x!r}; available: {sorted(k for k in metrics if k[0] != '_')}")
    ys = convergence.smooth(np.asarray(metrics[y], np.float64) * scale, smooth)
    finite = np.isfinite(ys)
    with np.errstate(invalid="ignore", divide="ignore"):
        count = finite.sum(0)
        mean = np.where(count > 0, np.where(finite, ys, 0).sum(0) / np.maximum(count, 1), np.nan)
        var = np.where(count > 0, np.where(finite, (ys - mean) ** 2, 0).sum(0) / np.maximum(count, 1), np.nan)
    return {"x": np.asarray(metrics[x], np.float64).mean(0).tolist(), "mean": mean.tolist(),
            "std": np.sqrt(var).tolist(), "seeds": int(ys.shape[0])}


def panel(runs: dict[str, dict[str, np.ndarray]], *, y: str = "eval_return", x: str = "physical_episodes",
          xlabel: str | None = None, ylabel: str | None = None, smooth: int = 1, scale: float = 1.0,
          arms: Sequence[str] | None = None) -> dict[str, Any]:
    """A plot panel of the schema: the same ``y`` against ``x`` for several arms."""
    names = list(runs) if arms is None else list(arms)
    return {"x": x, "y": y, "xlabel": xlabel or x.replace("_", " "), "ylabel": ylabel or y.replace("_", " "),
            "series": {n: series(runs[n], y=y, x=x, smooth=smooth, scale=scale) for n in names}}


def points_panel(rows: Sequence[dict[str, Any]], *, x: str, y: str, series_of: Callable[[dict[str, Any]], str | None],
                 std: str | None = None, seeds: int | Callable[[dict[str, Any]], int] = 1, xlabel: str | None = None,
                 ylabel: str | None = None) -> dict[str, Any]:
    """A schema panel from measurement rows (timing benchmarks): one point per row, one series per case.

    ``series_of(row)`` names the row's series (None leaves the row out); ``x``/``y`` are row fields (a
    missing or None ``y`` leaves the point out); ``std`` a row field of its spread (else 0); ``seeds``
    the seeds behind a point (a number, or a function of the row). Points are sorted by ``x``.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        name = series_of(r)
        if name is not None and r.get(y) is not None and r.get(x) is not None:
            grouped.setdefault(name, []).append(r)
    out = {}
    for name, rs in grouped.items():
        rs = sorted(rs, key=lambda r: float(r[x]))
        out[name] = {"x": [float(r[x]) for r in rs], "mean": [float(r[y]) for r in rs],
                     "std": [float(r.get(std) or 0.0) if std else 0.0 for r in rs],
                     "seeds": int(seeds(rs[0]) if callable(seeds) else seeds)}
    return {"x": x, "y": y, "xlabel": xlabel or x.replace("_", " "), "ylabel": ylabel or y.replace("_", " "),
            "series": out}


# ------------------------------------------------------------------------------ summary figures


def per_seed(values: Any) -> dict[str, Any]:
    """``{"mean", "std", "per_seed"}`` of a ``[seeds]`` array; NaNs are left out of mean and std."""
    arr = np.asarray(values, np.float64).reshape(-1)
    ok = np.isfinite(arr)
    return {"mean": float(arr[ok].mean()) if ok.any() else float("nan"),
            "std": float(arr[ok].std()) if ok.any() else float("nan"), "per_seed": arr.tolist()}


def paired(a: Any, b: Any) -> dict[str, Any]:
    """:func:`per_seed` of ``a - b`` for two arms' per-seed values (common random numbers: same keys)."""
    return per_seed(np.asarray(a, np.float64) - np.asarray(b, np.float64))


def window_rate(cumulative: np.ndarray, steps: np.ndarray, start: float, end: float, per: float = 1000.0) -> np.ndarray:
    """Per seed: events per ``per`` physical steps between two fractions of the run.

    ``cumulative`` and ``steps`` are ``[seeds, intervals]`` cumulative counters read at the end of each
    logging interval; the window ``(start * T, end * T]`` is snapped to interval ends (one at least).
    """
    cumulative = np.asarray(cumulative, np.float64)
    steps = np.asarray(steps, np.float64)
    n = steps.shape[1]
    lo = min(round(start * n), n - 1)
    hi = min(max(round(end * n), lo + 1), n)
    c_lo = np.zeros(cumulative.shape[0]) if lo == 0 else cumulative[:, lo - 1]
    s_lo = np.zeros(steps.shape[0]) if lo == 0 else steps[:, lo - 1]
    return (cumulative[:, hi - 1] - c_lo) / (steps[:, hi - 1] - s_lo) * per


def final_training_return(returns: np.ndarray, finished: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Per seed: mean return of the episodes finished in the last ``fraction`` of the intervals.

    ``returns`` is the per-interval mean return of the episodes finished in it (NaN when none) and
    ``finished`` their count, both ``[seeds, intervals]``; intervals are weighted by their episodes.
    """
    returns = np.asarray(returns, np.float64)
    n = returns.shape[1]
    lo = n - max(1, round(fraction * n))
    f = np.asarray(finished, np.float64)[:, lo:]
    total = np.where(f > 0, np.nan_to_num(returns[:, lo:]) * f, 0.0).sum(axis=1)
    count = f.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def reach_steps(x: np.ndarray, y: np.ndarray, level: Any, *, smooth: int = 1) -> np.ndarray:
    """Per seed: the first ``x`` at which the ``smooth``-point trailing mean of ``y[seeds, T]`` reaches
    ``level`` (a number or one per seed); NaN where it never does."""
    ys = convergence.smooth(np.asarray(y, np.float64), smooth)
    x = np.broadcast_to(np.asarray(x, np.float64), ys.shape)
    levels = np.broadcast_to(np.asarray(level, np.float64), ys.shape[:1])
    return np.asarray([convergence.first_reach(x[s], ys[s], levels[s]) for s in range(ys.shape[0])])


def returns_summary(metrics: dict[str, Any], fraction: float = 0.25) -> dict[str, Any]:
    """Final return (per seed: mean of the last ``fraction`` of the intervals) and mean return over the
    run, from the per-interval ``episode_return`` (NaN where no episode finished is left out)."""
    ret = np.asarray(metrics["episode_return"], np.float64)
    return {"final_return": per_seed(convergence.plateau(ret, fraction)),
            "mean_return": per_seed(convergence.plateau(ret, 1.0))}


# ------------------------------------------------------------------------------ results files


def stamped(config: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """A section's config with its own provenance, time stamp and wall time (sections may be merged)."""
    return {**config, "provenance": provenance(), "timestamp_utc": _common.utc_timestamp(), "wall_time_s": wall_s}


def merge_sections(path, sections: Sequence[str], config: dict[str, Any], summary: dict[str, Any],
                   curves: dict[str, Any]) -> list[str]:
    """Keep the sections of an earlier results file that this run did not make.

    A *sectioned* results file (e.g. one section per agent) holds ``config["sections"][s]``,
    ``summary[s]`` and the panels ``curves["s/..."]`` of each section ``s``. Sections of the file at
    ``path`` that are not in ``sections`` are copied into ``config``/``summary``/``curves`` (in place).
    A missing file, or one in an older format, keeps nothing (logged). Returns the sections kept.
    """
    try:
        old = load(path)
    except FileNotFoundError:
        return []
    except ValueError as err:
        _common.log(f"merge: {err}; nothing kept from it")
        return []
    kept = [s for s in old["config"].get("sections", {}) if s not in sections]
    for s in kept:
        config.setdefault("sections", {})[s] = old["config"]["sections"][s]
        if s in old["summary"]:
            summary[s] = old["summary"][s]
        curves.update({k: v for k, v in old["curves"].items() if k.split("/", 1)[0] == s})
    return kept


def write_sections(name: str, sections: dict[str, tuple[dict, dict, dict]], *, mode: str, config: dict[str, Any],
                   order: Sequence[str], out=None, merge: bool = False,
                   plot: Callable[[dict[str, Any], Path], Any] | None = None) -> dict[str, Any]:
    """Write a sectioned results file (one section per agent, scenario, ...) and return the document.

    ``sections``: ``{section: (config, summary, curves)}`` of the sections run now (curves named
    ``"section/panel"``); ``config``: what all sections share; ``order``: the order of the sections in
    the file; ``merge``: keep the other sections of an earlier file (:func:`merge_sections`);
    ``plot(doc, png_path)`` draws the PNG from the document.
    """
    config = {**config, "sections": {}, "load_average_at_end": _common.load_average()}
    summary: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for sec, (c, s, cu) in sections.items():
        config["sections"][sec] = {**c, "mode": mode}
        summary[sec] = s
        curves.update(cu)
    if merge:
        path = _common.results_dir(out) / f"{name}.json"
        config["merged_sections"] = merge_sections(path, list(sections), config, summary, curves)
    config["sections"] = {k: config["sections"][k] for k in order if k in config["sections"]}
    summary = {k: summary[k] for k in order if k in summary}
    rank = {k: i for i, k in enumerate(order)}
    curves = dict(sorted(curves.items(), key=lambda kv: rank.get(kv[0].split("/", 1)[0], len(rank))))
    doc = {"config": config, "summary": summary, "curves": curves}
    write(name, mode=mode, config=config, summary=summary, curves=curves, out=out,
          plot=None if plot is None else (lambda png: plot(doc, png)))
    return doc


def provenance() -> dict[str, Any]:
    """The code that ran (git commit, uncommitted changes) and the command line."""
    git = git_state()
    return {**git, "command": "python -m " + " ".join(shlex.quote(a) for a in [_module_name(), *sys.argv[1:]])}


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None and spec.name else Path(sys.argv[0]).stem


def write(name: str, *, mode: str, config: dict[str, Any], summary: dict[str, Any], curves: dict[str, Any],
          out=None, plot: Callable[[Path], Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<out>/<name>.json`` in the schema above (and the PNG ``plot`` draws), return its path."""
    doc = {"schema": SCHEMA, "mode": mode, "provenance": provenance(), "config": config, "summary": summary,
           "curves": curves, **(extra or {})}
    return _common.write_results(name, doc, out, plot=plot)


def load(path) -> dict[str, Any]:
    """Read a results file; ``ValueError`` if it is not in the harness schema (older files)."""
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a {SCHEMA} results file (schema={doc.get('schema')!r})")
    return doc


def draw_panel(ax, panel_doc: dict[str, Any], *, colors: Sequence[str] | dict[str, str] | None = None,
               band: bool = True, linestyle: str = "-", label_prefix: str = "", origin: bool = False) -> None:
    """Draw one schema panel on a matplotlib axis: mean line per arm, +-1 std band.

    ``colors``: a sequence (by arm order) or ``{arm: color}``; ``label_prefix`` goes before each arm's
    legend label; ``origin`` starts each line at (0, 0) (cumulative counters).
    """
    colors = colors or COLORS
    for i, (arm, s) in enumerate(panel_doc["series"].items()):
        x, m, sd = (np.asarray(s[k], np.float64) for k in ("x", "mean", "std"))
        if origin:
            x, m, sd = (np.concatenate([[0.0], v]) for v in (x, m, sd))
        ok = np.isfinite(m)
        x, m, sd = x[ok], m[ok], sd[ok]
        c = colors.get(arm, COLORS[i % len(COLORS)]) if isinstance(colors, dict) else colors[i % len(colors)]
        ax.plot(x, m, color=c, lw=1.4, ls=linestyle, label=f"{label_prefix}{arm} ({s['seeds']} seeds)")
        if band:
            ax.fill_between(x, m - sd, m + sd, color=c, alpha=0.15, lw=0)
    ax.set_xlabel(panel_doc["xlabel"])
    ax.set_ylabel(panel_doc["ylabel"])
    ax.grid(alpha=0.3)


# ------------------------------------------------------------------------------ programs the harness does not build


def run_seeds(
    fn: Callable[[jax.Array], Any],
    keys: jax.Array,
    label: str,
    device: jax.Device,
    keep: Callable[[Any], Any] = lambda out: out.metrics,
) -> tuple[Any, float, float]:
    """Compile ``jax.jit(jax.vmap(lambda k: keep(fn(k))))`` for ``keys`` ahead of time, run it once.

    Args:
      fn: one seed's pure function ``key -> result`` (e.g. ``dt.make_train(cfg, env, params)``).
      keys: ``[num_seeds]`` PRNG keys.
      label: name printed with the timings.
      device: where to run.
      keep: what of ``fn``'s result to return (default: ``.metrics``); applied inside the compiled
        program, so the rest (e.g. replay buffers in the final runner state) never leaves it.

    Returns:
      ``(kept result as a numpy pytree with a leading seed axis, compile_s, run_s)``.
    """
    keys = jax.device_put(keys, device)
    with jax.default_device(device):
        t0 = time.perf_counter()
        compiled = jax.jit(jax.vmap(lambda k: keep(fn(k)))).lower(keys).compile()
        t1 = time.perf_counter()
        _common.log(f"  [{label}] compiled in {t1 - t0:.1f}s; running {keys.shape[0]} seeds as one vmap")
        out = jax.block_until_ready(compiled(keys))
        t2 = time.perf_counter()
    _common.log(f"  [{label}] ran in {t2 - t1:.1f}s")
    return jax.tree.map(np.asarray, out), t1 - t0, t2 - t1


def git_state() -> dict[str, Any]:
    """The repository's commit and whether the working tree had uncommitted changes (for the JSON)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False,
                                timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=False, timeout=10).stdout.rstrip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty), "modified": dirty.splitlines()[:50]}


# ------------------------------------------------------------------------------ figures


def plot_curves(
    path: Path,
    series: Sequence[dict[str, Any]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    caption: str,
    hlines: Sequence[tuple[float, str]] = (),
    vlines: Sequence[tuple[float, str]] = (),
    xlog: bool = False,
    ylog: bool = False,
    ax=None,
) -> Path | None:
    """Mean curve with a shaded +-1 std band per series; dashed reference lines; caption below.

    Args:
      path: PNG to write (ignored when ``ax`` is given: the caller owns the figure).
      series: dicts with ``label``, ``x``, ``mean``, ``std`` and optionally ``color``, ``linestyle``.
      hlines / vlines: ``(value, label)`` dashed reference lines (e.g. the paper's values).
      caption: text under the axes (wrapped).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(8.5, 6.0), dpi=120)
    for i, s in enumerate(series):
        color = s.get("color", COLORS[i % len(COLORS)])
        x = np.asarray(s["x"], np.float64)
        m = np.asarray(s["mean"], np.float64)
        sd = np.asarray(s["std"], np.float64)
        ax.plot(x, m, color=color, linestyle=s.get("linestyle", "-"), linewidth=1.8, label=s["label"])
        low = m - sd
        if ylog:  # a log axis of a non-negative quantity: keep the band above 0
            low = np.maximum(low, 0.0)
        ax.fill_between(x, low, m + sd, color=color, alpha=0.15, linewidth=0)
    for value, label in hlines:
        ax.axhline(value, color="gray", linestyle="--", linewidth=1.0)
        ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8, color="dimgray",
                    va="bottom")
    for value, label in vlines:
        ax.axvline(value, color="gray", linestyle="--", linewidth=1.0)
        ax.annotate(label, (value, 0.45), xycoords=("data", "axes fraction"), fontsize=8, color="dimgray",
                    rotation=90, ha="right", va="bottom")
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(bottom=0.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if not own:
        return None
    save_with_caption(fig, path, caption, width=125, fontsize=7, base=0.02, per_line=0.018)
    return path


def save_with_caption(fig, path, caption: str, *, width: int, fontsize: float = 8, base: float = 0.03,
                      per_line: float = 0.025) -> None:
    """Wrap ``caption`` at ``width`` characters under the axes, leave room for it, save and close."""
    import matplotlib.pyplot as plt

    lines = textwrap.wrap(caption, width)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=fontsize, va="bottom", ha="left")
    fig.tight_layout(rect=(0, base + per_line * len(lines), 1, 1))
    fig.savefig(path)
    plt.close(fig)

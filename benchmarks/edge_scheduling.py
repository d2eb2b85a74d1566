"""Companion paper Table II: DT-assisted Q-learning for edge task scheduling (``EdgeTaskScheduling-v0``).

For N = 6, 7, 8 tasks (N! transmission orders = actions, a single state), three algorithms, the same
hyper-parameters for all (see ``HYPER``):

* **Q-learning**: plain tabular Q-learning, ``twin=None``; one physical step (= one episode = one
  iteration) per iteration.
* **DT exploring Q-learning, phi trials**: ``TwinConfig(num_domains=phi, action_trials=phi)``: every
  iteration the physical order plus phi - 1 other distinct orders are tried (the others in digital
  domains) and all phi outcomes update Q. phi = 50, 100, 200, 500.
* **DT asynchronous Q-learning, phi agents**: ``dtrl_jax.async_qlearning``: phi twin agents, each plain
  Q-learning in its own domain with its own Q-table, the tables averaged (and written back) every
  delta = 512 iterations. phi = 50, 100, 200, 500.

Every variant's seeds run as one ``jax.jit(jax.vmap(...))`` over keys: the first two through
``harness.run_arms``, which runs ``train.init`` and a scan of ``train.run`` over the logging intervals
so that its probe reads the Q-table after each (equal to one full run, see ``make_train``); the
learning rates of ``--lr-sweep`` (a traced field) share one program per algorithm; asynchronous
Q-learning through ``harness.run_seeds`` of ``make_async_train``.

Metric. After every logging interval the *greedy order* ``argmax_a Q(a)`` (the library's greedy rule,
``dtrl_jax.evaluate``: ties split uniformly, so a tied Q-table scores the exact mean gap of its tied orders;
for asynchronous Q-learning: of the averaged table, after every averaging round) is scored with the
brute-force optimum (``brute_force_optimum``, all N! orders): ``normalised_gap = (cost - best) /
(mean cost of a random order - best)``, 0 = optimal, 1 = random. Two convergence criteria, both ours
(the companion paper states none): a seed has **converged at iteration t** if its greedy gap is <= 0.01
at the evaluation at t and at every later evaluation of the run (this counts a near-optimal order as
converged: at N = 6 the second-best order's gap is 0.0022), and has **found the exact optimum at t** if
its greedy order is the brute-force optimum from t to the end. The greedy order is evaluated after
every iteration for budgets up to 25,600 iterations, and once per averaging round, every 512
iterations, for asynchronous Q-learning. Curves are stored thinned to about 800 points (geometric plus
linear spacing); convergence uses every evaluation. Reported per variant, for both criteria: the median
iteration over seeds (None when fewer than half meet it within the budget) and the share of seeds that
did; the iteration where the seed-mean gap curve gets to <= 0.01 and stays, and the final gap (mean and
std over seeds). Iterations are physical steps (for asynchronous Q-learning: steps of each twin agent).

Companion paper (X. Wang et al., VTC2022-Spring, Table II), N = 6: 500 trials per step converge in 102
iterations; plain Q-learning has not converged after 25,600.

Hyper-parameters (our choices, the companion paper gives none; chosen once): learning rate 0.1, Q init 0
(optimistic here, since every reward is a negative cost: untried orders look best, so plain Q-learning
sweeps the orders), epsilon 0.1 constant (bandit-style), gamma 0 (every episode is one decision and
terminates, so gamma is unused). Plain Q-learning's convergence is a knife edge in the learning rate
(at 0.1 it converges within 25,600 iterations at N = 6, at 0.05 mostly not, at 0.02 not at all):
``--lr-sweep`` measures it, for Q-learning and 500 trials per step at lr 0.02, 0.05, 0.1 (``LR_SWEEP``),
and writes ``edge_scheduling_lr_sweep.json`` / ``.png``.

Scale. The budget of iterations differs per algorithm (plain Q-learning is run to the companion paper's
25,600; the DT variants, far more expensive per iteration, to fewer) and per N; see ``MODES``. On a
2-core CPU the default mode runs the whole grid for N = 6, and a reduced one for N = 7 and 8: the twin's
action-trial sampler (``jax.random.choice(replace=False)``, a full shuffle of the N! - 1 other orders per
step) and the per-agent random tie-breaking over N! actions make N = 8 with phi = 500 cost O(N!) per
agent per iteration. ``--full --device gpu`` runs all of it at 25,600 iterations.

Usage::

    python -m benchmarks.edge_scheduling --quick      # N = 6 only, short budgets (< 5 min on 2 CPU cores)
    python -m benchmarks.edge_scheduling              # CPU default (see MODES)
    python -m benchmarks.edge_scheduling --full --device gpu
    python -m benchmarks.edge_scheduling --lr-sweep   # N = 6 learning-rate sweep, 8 seeds (CPU)

Writes ``benchmarks/results/edge_scheduling.json`` and ``edge_scheduling.png`` (or under ``--out``), in the
harness schema ``dtrl-bench/1``: ``summary[N][variant]`` the Table II figures, ``summary["variants"]`` all
of each variant's figures (per-seed iterations included), ``curves["N=6/gap"]`` and ``["N=6/return"]``
the panels; ``--lr-sweep`` writes ``edge_scheduling_lr_sweep.json`` (``summary["rows"]``, panels ``gap``
and ``return``) in the same schema.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import dtrl_jax as dt
from benchmarks import _common, harness
from dtrl_jax.async_qlearning import AsyncQLearningConfig, make_async_train
from dtrl_jax.envs.edge_scheduling import (
    brute_force_optimum,
    decode_permutation,
    schedule_cost,
    task_set,
)

NAME = "edge_scheduling"
ENV_ID = "EdgeTaskScheduling-v0"

PAPER = {
    "table": "X. Wang et al., VTC2022-Spring (arXiv 2208.01781), Table II",
    "n6_dt_500_trials_iterations": 102,
    "n6_q_learning_not_converged_after": 25_600,
}

HYPER: dict[str, Any] = {
    "learning_rate": 0.1,
    "q_init": 0.0,
    "epsilon": 0.1,
    "gamma": 0.0,
    "average_every": 512,
    "converged_gap": 0.01,
    "max_evaluations": 25_600,
    "stored_points": 800,
}

#: Per mode: seeds and, per N, the budget (iterations) of each algorithm and the phi values run.
#: ``explore``/``async``: (phi values, iterations); an empty tuple skips that algorithm for that N.
MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": 4,
        "plans": {
            6: {"ql": 6_400, "explore": ((50, 500), 512), "async": ((50,), 1_024)},
        },
    },
    "default": {
        "seeds": 8,
        "plans": {
            6: {"ql": 25_600, "explore": ((50, 100, 200, 500), 2_560), "async": ((50, 100, 200, 500), 2_048)},
            7: {"ql": 25_600, "explore": ((100, 500), 1_280), "async": ((50,), 1_024)},
            8: {"ql": 6_400, "explore": ((500,), 256), "async": ((), 0)},
        },
    },
    "full": {
        "seeds": 16,
        "plans": {
            n: {"ql": 25_600, "explore": ((50, 100, 200, 500), 25_600), "async": ((50, 100, 200, 500), 25_600)}
            for n in (6, 7, 8)
        },
    },
}


#: The learning-rate sweep (``--lr-sweep``, N = 6): plain Q-learning to the companion paper's 25,600
#: iterations and 500 trials per step, at each learning rate; written to ``edge_scheduling_lr_sweep.json``.
LR_SWEEP: dict[str, Any] = {"num_tasks": 6, "learning_rates": (0.02, 0.05, 0.1), "ql_iterations": 25_600,
                            "phi": 500, "dt_iterations": 1_280}

#: Our two convergence criteria (the companion paper does not define its own), as stated in the JSON.
CRITERIA = {
    "gap_0.01": "first evaluation from which the greedy order's normalised gap stays <= 0.01 to the end of the run "
                "(counts a near-optimal order, e.g. the second-best at N = 6, as converged)",
    "exact": "first evaluation from which the greedy order is the brute-force optimum to the end of the run",
}


def all_costs(params) -> jax.Array:
    """Cost of every one of the N! orders on the frame (float32 ``[N!]``), indexed by action."""
    n = params.num_tasks
    tasks = task_set(params)
    orders = jax.vmap(decode_permutation, in_axes=(0, None))(jnp.arange(math.factorial(n)), n)
    return jax.jit(jax.vmap(lambda o: schedule_cost(o, *tasks, params)[0]))(orders)


def gap_fn(params):
    """``q_table -> normalised gap of its greedy order``, pure and jittable.

    The greedy rule is the library's (``dtrl_jax.evaluate``: argmax, ties broken uniformly at random);
    its gap is computed exactly, as the mean gap over the tied maximal orders, so the metric has no
    sampling noise. It is 0 only when the optimum is the unique greedy order.
    """
    costs = all_costs(params)
    opt = brute_force_optimum(params)
    best, spread = float(opt["best_cost"]), float(opt["mean_cost"] - opt["best_cost"])

    def gap_of(q: jax.Array) -> jax.Array:
        tied = q[0] >= jnp.max(q[0])
        mean_cost = jnp.sum(jnp.where(tied, costs, 0.0)) / jnp.maximum(jnp.sum(tied), 1)
        return (mean_cost - best) / spread

    return gap_of, {"best_cost": best, "mean_cost": float(opt["mean_cost"]), "worst_cost": float(opt["worst_cost"]),
                    "best_action": int(opt["best_action"]), "best_order": np.asarray(opt["best_order"]).tolist(),
                    "spread": spread}


def q_config(iterations: int, log_every: int, twin=None, learning_rate: float | None = None) -> dt.QLearningConfig:
    return dt.QLearningConfig(
        total_timesteps=iterations,
        num_envs=1,
        log_every=log_every,
        learning_rate=HYPER["learning_rate"] if learning_rate is None else learning_rate,
        q_init=HYPER["q_init"],
        gamma=HYPER["gamma"],
        epsilon_start=HYPER["epsilon"],
        epsilon_end=HYPER["epsilon"],
        epsilon_decay_steps=1.0,
        twin=twin,
    )


def eval_every(iterations: int) -> int:
    """Logging interval: the smallest divisor of ``iterations`` giving at most ``max_evaluations``
    evaluations of the greedy order (1, i.e. every iteration, up to 25,600 iterations)."""
    step = max(1, -(-iterations // HYPER["max_evaluations"]))
    while iterations % step:
        step += 1
    return step


def thin(num: int, keep: int) -> np.ndarray:
    """At most about ``keep`` indices of ``range(num)``: geometric (for a log x-axis) plus linear, last kept."""
    if num <= keep:
        return np.arange(num)
    geo = np.geomspace(1, num, keep // 2).astype(np.int64) - 1
    lin = np.linspace(0, num - 1, keep // 2).astype(np.int64)
    return np.unique(np.concatenate([geo, lin, [num - 1]]))


def stays_from(x: np.ndarray, gaps: np.ndarray, threshold: float) -> list[float | None]:
    """Per seed of ``gaps[S, T]``: the first ``x`` from which the gap stays <= threshold to the end (None if never)."""
    ok = np.flip(np.logical_and.accumulate(np.flip(np.asarray(gaps) <= threshold, axis=1), axis=1), axis=1)
    return [float(x[row.argmax()]) if row.any() else None for row in ok]


def median_or_none(values: list[float | None]) -> float | None:
    """Median with non-converged seeds counted as +inf; None when that median is infinite."""
    arr = np.array([np.inf if v is None else v for v in values], np.float64)
    med = float(np.median(arr))
    return med if math.isfinite(med) else None


LABELS = {"ql": "Q-learning", "explore": "DT exploring QL, phi = {phi}", "async": "DT async QL, phi = {phi}"}
ALGORITHMS = {"ql": "q_learning", "explore": "dt_exploring_q_learning", "async": "dt_async_q_learning"}
#: Metrics kept per logging interval (plus ``gap``, the greedy order's normalised gap, from the probe).
KEPT = ("physical_steps", "episode_return", "twin_transitions")


def label_of(kind: str, phi: int, learning_rate: float | None = None) -> str:
    return LABELS[kind].format(phi=phi) + ("" if learning_rate is None else f", lr {learning_rate:g}")


def q_arm(kind: str, phi: int, n: int, iterations: int, learning_rate: float | None = None) -> harness.Arm:
    """Plain (``ql``) or DT exploring (``explore``, phi trials per step) Q-learning at N = ``n``."""
    twin = None if kind == "ql" else dt.TwinConfig(num_domains=phi, action_trials=phi)
    return harness.Arm(label_of(kind, phi, learning_rate), q_config(iterations, eval_every(iterations), twin,
                                                                    learning_rate),
                       info={"kind": kind, "phi": phi if kind != "ql" else None, "num_tasks": n,
                             "learning_rate": HYPER["learning_rate"] if learning_rate is None else learning_rate})


def run_q_arms(arms: Sequence[harness.Arm], env, params, seeds: int, device, gap_of) -> dict[str, dict[str, Any]]:
    """``harness.run_arms`` with the greedy gap read from the Q-table after every logging interval."""
    for a in arms:
        _common.log(f"-- N={a.info['num_tasks']} {a.name}: {seeds} seeds x {a.config.total_timesteps:,} iterations "
                    f"(evaluated every {a.config.log_every})")
    runs = harness.run_arms(arms, env, params, seeds=seeds, device=device, keep=KEPT, progress=False,
                            probe=lambda agent_state: {"gap": gap_of(agent_state.q)})
    for a in arms:
        runs[a.name]["twin_transitions_per_seed"] = float(np.mean(runs[a.name]["twin_transitions"][:, -1]))
    return runs


def run_async(phi: int, n: int, iterations: int, env, params, keys, device, gap_of,
              delta: int = HYPER["average_every"]) -> tuple[harness.Arm, dict[str, Any]]:
    """DT asynchronous Q-learning (``dtrl_jax.async_qlearning``, phi agents) at N = ``n``, all seeds as one vmap;
    the greedy gap of the averaged table once per averaging round."""
    cfg = q_config(iterations, delta)
    a = harness.Arm(label_of("async", phi), cfg, info={"kind": "async", "phi": phi, "num_tasks": n,
                                                        "learning_rate": HYPER["learning_rate"]})
    train = make_async_train(cfg, AsyncQLearningConfig(num_agents=phi, average_every=delta), env, params,
                             round_fn=gap_of)
    _common.log(f"-- N={n} {a.name}: {keys.shape[0]} seeds x {iterations:,} iterations x {phi} agents")
    out, compile_s, run_s = harness.run_seeds(train, keys, f"N={n} {a.name}", device,
                                              keep=lambda o: {"metrics": o.metrics, "gap": o.round_outputs})
    m = {k: np.mean(np.asarray(v, np.float64), axis=1) for k, v in out["metrics"].items()}  # over agents
    m.update(gap=np.asarray(out["gap"], np.float64), twin_transitions_per_seed=float(phi * iterations),
             _timing={"compile_s": compile_s, "run_s": run_s})
    return a, m


def figures(a: harness.Arm, m: dict[str, Any]) -> dict[str, Any]:
    """One variant's Table II figures from its per-seed greedy gaps (convergence uses every evaluation)."""
    gaps = np.asarray(m["gap"], np.float64)  # [seeds, points]
    x = np.mean(np.asarray(m["physical_steps"], np.float64), axis=0)
    conv = stays_from(x, gaps, HYPER["converged_gap"])
    exact = stays_from(x, gaps, 0.0)  # our stricter criterion: the greedy order is the optimum and stays
    n_conv, n_exact = sum(c is not None for c in conv), sum(c is not None for c in exact)
    with np.errstate(invalid="ignore"):
        mean_curve = stays_from(x, np.nanmean(gaps, axis=0)[None], HYPER["converged_gap"])[0]
    final = gaps[:, -1]
    return {
        "num_tasks": a.info["num_tasks"], "algorithm": ALGORITHMS[a.info["kind"]], "phi": a.info["phi"],
        "iterations": a.config.total_timesteps, "eval_every": a.config.log_every,
        "learning_rate": a.info["learning_rate"],
        "converged_iteration_per_seed": conv, "converged_seeds": n_conv, "converged_fraction": n_conv / len(conv),
        "median_converged_iteration": median_or_none(conv), "mean_curve_converged_iteration": mean_curve,
        "converged_exact_iteration_per_seed": exact, "converged_exact_seeds": n_exact,
        "converged_exact_fraction": n_exact / len(exact), "median_converged_exact_iteration": median_or_none(exact),
        "final_gap_mean": float(final.mean()), "final_gap_std": float(final.std()),
        "twin_transitions_per_seed": m["twin_transitions_per_seed"],
    }


def report(tag: str, f: dict[str, Any]) -> None:
    _common.log(f"   {tag}: converged {f['converged_seeds']}/{len(f['converged_iteration_per_seed'])} seeds, median "
                f"iteration {f['median_converged_iteration']}, final gap {f['final_gap_mean']:.4f} +- "
                f"{f['final_gap_std']:.4f}; exact optimum {f['converged_exact_seeds']}/"
                f"{len(f['converged_exact_iteration_per_seed'])} seeds, median {f['median_converged_exact_iteration']}")


def thinned(m: dict[str, Any]) -> dict[str, np.ndarray]:
    """The curves' metrics at about ``stored_points`` evaluations (:func:`thin`; convergence used all of them)."""
    idx = thin(np.asarray(m["physical_steps"]).shape[1], HYPER["stored_points"])
    return {k: np.asarray(m[k], np.float64)[:, idx] for k in ("physical_steps", "episode_return", "gap")}


def gap_panels(prefix: str, runs: dict[str, dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Panels ``<prefix>gap`` (the greedy order's normalised gap) and ``<prefix>return`` against iterations."""
    th = {n: thinned(runs[n]) for n in names}
    xlabel = "iterations (physical steps = physical episodes; async: steps of each twin agent)"
    return {f"{prefix}gap": harness.panel(th, y="gap", x="physical_steps", xlabel=xlabel,
                                          ylabel="normalised gap of the greedy order"),
            f"{prefix}return": harness.panel(th, y="episode_return", x="physical_steps", xlabel=xlabel,
                                             ylabel="physical return (= -cost) per episode, mean over the interval "
                                                    "(async: and over the twin agents)")}


def plot(doc: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(int(n) for n in doc["summary"]["variants"])
    fig, axes = plt.subplots(1, len(ns), figsize=(6.2 * len(ns), 5.6), dpi=110, squeeze=False)
    phis = sorted({v["phi"] for vs in doc["summary"]["variants"].values() for v in vs.values() if v["phi"] is not None})
    palette = {phi: c for phi, c in zip(phis, harness.COLORS[1:])}
    for ax, n in zip(axes[0], ns):
        figs = doc["summary"]["variants"][str(n)]
        series = []
        for label, s in doc["curves"][f"N={n}/gap"]["series"].items():
            v = figs[label]
            conv = v["median_converged_iteration"]
            tag = "not conv." if conv is None else f"conv. {conv:.0f}"
            series.append({**s, "label": f"{label} ({tag})", "color": "black" if v["phi"] is None else palette[v["phi"]],
                           "linestyle": "--" if v["algorithm"] == "dt_async_q_learning" else "-"})
        vlines = []
        if n == 6:
            vlines = [(PAPER["n6_dt_500_trials_iterations"], "paper: phi=500 conv. 102"),
                      (PAPER["n6_q_learning_not_converged_after"], "paper: QL not conv. 25,600")]
        harness.plot_curves(
            None, series, xlabel="iterations (physical steps)", ylabel="normalised gap of the greedy order",
            title=f"N = {n} ({math.factorial(n):,} orders)", caption="", xlog=True, ylog=True,
            hlines=[(HYPER["converged_gap"], "convergence threshold 0.01")], vlines=vlines, ax=ax,
        )
    cfg = doc["config"]
    caption = (
        f"{ENV_ID}: normalised gap to the brute-force optimum ((cost - best) / (random mean - best)) of the greedy "
        f"order, mean over {cfg['seeds']} seeds, band = +-1 std. Solid: Q-learning (black) and DT exploring Q-learning "
        f"(phi trials per step); dashed: DT asynchronous Q-learning (phi agents, Q-tables averaged every "
        f"{cfg['hyper']['average_every']} iterations; evaluated once per round). 'conv.' = median over seeds of the iteration "
        f"from which the gap stays <= 0.01. Companion paper Table II (N = 6): 500 trials converge in 102 iterations; "
        f"Q-learning not converged after 25,600. Hyper-parameters: lr {HYPER['learning_rate']}, Q init {HYPER['q_init']}, "
        f"epsilon {HYPER['epsilon']}."
    )
    harness.save_with_caption(fig, path, caption, width=60 * len(ns) + 40, per_line=0.03)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__.split("\n")[0])
    _common.add_common_args(parser)
    parser.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    parser.add_argument("--tasks", type=_common.int_list, default=None, help="only these N, e.g. 6 or 6,7")
    parser.add_argument("--ql-iterations", type=int, default=None, help="override the Q-learning budget")
    parser.add_argument("--dt-iterations", type=int, default=None,
                        help="override the budget of both DT algorithms (a multiple of 512 for async)")
    parser.add_argument("--phis", type=_common.int_list, default=None, help="override phi for both DT algorithms")
    parser.add_argument("--no-async", action="store_true", help="skip asynchronous Q-learning")
    parser.add_argument("--delta", type=int, default=None,
                        help=f"override the averaging period of async Q-learning (default {HYPER['average_every']})")
    parser.add_argument("--lr-sweep", action="store_true",
                        help="run only the learning-rate sweep (N = 6, Q-learning and 500 trials; see LR_SWEEP)")
    parser.add_argument("--lrs", type=float_list, default=None, help="override the swept learning rates")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser


def float_list(text: str) -> list[float]:
    """``"0.02,0.05"`` -> ``[0.02, 0.05]`` (argparse type; every value > 0)."""
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers") from err
    if not values or any(not (v > 0) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers > 0")
    return values


def lr_sweep(args, seeds: int, device) -> dict[str, Any]:
    """The learning-rate sweep: Q-learning and DT exploring QL (phi trials) at each rate, both criteria.

    The arms of one algorithm differ only in the (traced) learning rate: one compiled program each."""
    n = args.tasks[0] if args.tasks else LR_SWEEP["num_tasks"]
    phi = args.phis[0] if args.phis else LR_SWEEP["phi"]
    ql_its = args.ql_iterations or LR_SWEEP["ql_iterations"]
    dt_its = args.dt_iterations or LR_SWEEP["dt_iterations"]
    lrs = tuple(args.lrs or LR_SWEEP["learning_rates"])
    env, params = dt.make(ENV_ID, num_tasks=n)
    gap_of, frame = gap_fn(params)
    arms = [q_arm(kind, phi, n, its, lr) for lr in lrs for kind, its in (("ql", ql_its), ("explore", dt_its))]
    runs = run_q_arms(arms, env, params, seeds, device, gap_of)
    variants = {a.name: figures(a, runs[a.name]) for a in arms}
    for label, f in variants.items():
        report(f"N={n} {label}", f)
    rows = [{"label": label, "learning_rate": v["learning_rate"], "algorithm": v["algorithm"], "phi": v["phi"],
             "iterations": v["iterations"],
             "gap_0.01": {"median": v["median_converged_iteration"], "seeds": v["converged_seeds"]},
             "exact": {"median": v["median_converged_exact_iteration"], "seeds": v["converged_exact_seeds"]},
             "final_gap_mean": v["final_gap_mean"], "of": seeds} for label, v in variants.items()]
    config = {"env": ENV_ID, "num_tasks": n, "phi": phi, "ql_iterations": ql_its, "dt_iterations": dt_its,
              "learning_rates": list(lrs), "seeds": seeds, "hyper": HYPER, "criteria": CRITERIA,
              "median": "over seeds, a seed that never meets the criterion counting as infinite (None if fewer "
                        "than half meet it)",
              "frames": {str(n): frame}, "paper": PAPER, "timing": _timings(arms, runs)}
    return {"config": config, "summary": {"rows": rows, "variants": variants},
            "curves": gap_panels("", runs, [a.name for a in arms])}


def _timings(arms: Sequence[harness.Arm], runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {f"N={a.info['num_tasks']} {a.name}": {k: runs[a.name]["_timing"][k] for k in ("compile_s", "run_s")}
            for a in arms}


def plot_lr_sweep(doc: dict[str, Any], path) -> None:
    """Greedy gap curves of the sweep: solid Q-learning, dashed phi trials, one colour per learning rate."""
    cfg = doc["config"]
    palette = {lr: c for lr, c in zip(cfg["learning_rates"], harness.COLORS[1:])}
    variants = doc["summary"]["variants"]
    series = [{**s, "label": f"{label} (gap<=0.01: {_it(variants[label]['median_converged_iteration'])}, exact: "
                             f"{_it(variants[label]['median_converged_exact_iteration'])})",
               "color": palette[variants[label]["learning_rate"]],
               "linestyle": "-" if variants[label]["phi"] is None else "--"}
              for label, s in doc["curves"]["gap"]["series"].items()]
    harness.plot_curves(
        path, series, xlabel="iterations (physical steps)", ylabel="normalised gap of the greedy order",
        title=f"{ENV_ID}, N = {cfg['num_tasks']}: learning-rate sweep", xlog=True, ylog=True,
        hlines=[(HYPER["converged_gap"], "gap 0.01")],
        caption=(f"Mean over {cfg['seeds']} seeds (band +-1 std). Legend: median iteration over seeds of our two "
                 f"criteria (gap stays <= 0.01; greedy order stays the exact optimum), '-' = fewer than half the "
                 f"seeds. Companion paper Table II (N = 6): 500 trials converge in 102 iterations; Q-learning not "
                 f"after 25,600 (its criterion and learning rate are not stated)."),
    )


def _it(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def resolve_plans(args, mode: str) -> dict[int, dict[str, Any]]:
    plans = {n: dict(p) for n, p in MODES[mode]["plans"].items()}
    if args.tasks:
        plans = {n: plans.get(n, dict(MODES["default"]["plans"][n])) for n in args.tasks}
    for n, plan in plans.items():
        if args.ql_iterations is not None:
            plan["ql"] = args.ql_iterations
        for kind in ("explore", "async"):
            phis, its = plan[kind]
            if args.phis is not None:
                phis = tuple(args.phis)
            if args.dt_iterations is not None:
                its = args.dt_iterations
            if kind == "async" and args.no_async:
                phis = ()
            plan[kind] = (tuple(phis), int(its))
    return plans


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    mode = _common.run_mode(args)
    seeds = args.seeds or MODES[mode]["seeds"]
    plans = resolve_plans(args, mode)
    delta = args.delta or HYPER["average_every"]
    device = _common.select_device(args.device)
    _common.log(f"== {NAME} ({mode} mode) on {_common.describe_device(device)} - {seeds} seeds, N in {sorted(plans)}")

    start = time.perf_counter()
    if args.lr_sweep:
        doc = lr_sweep(args, seeds, device)
        doc["config"].update(device=_common.describe_device(device), wall_time_s=time.perf_counter() - start)
        harness.write(f"{NAME}_lr_sweep", mode=mode, **doc, out=args.out,
                      plot=None if args.no_plot else lambda png: plot_lr_sweep(doc, png))
        _common.log(_common.format_table(
            ["lr", "algorithm", "budget", "gap<=0.01 median (seeds)", "exact median (seeds)", "final gap"],
            [[r["learning_rate"], r["algorithm"] + ("" if r["phi"] is None else f" phi={r['phi']}"),
              f"{r['iterations']:,}", f"{_it(r['gap_0.01']['median'])} ({r['gap_0.01']['seeds']}/{seeds})",
              f"{_it(r['exact']['median'])} ({r['exact']['seeds']}/{seeds})", f"{r['final_gap_mean']:.4f}"]
             for r in doc["summary"]["rows"]]))
        return doc
    keys = jax.random.split(jax.random.key(0), seeds)
    frames: dict[str, Any] = {}
    variants: dict[str, dict[str, Any]] = {}
    timing: dict[str, Any] = {}
    panels: dict[str, Any] = {}
    for n, plan in sorted(plans.items()):
        env, params = dt.make(ENV_ID, num_tasks=n)
        gap_of, frame = gap_fn(params)
        frames[str(n)] = frame
        _common.log(f"== N = {n}: {math.factorial(n):,} orders, optimum cost {frame['best_cost']:.4f} s "
                    f"(random order {frame['mean_cost']:.4f} s)")
        phis, dt_its = plan["explore"]
        arms = [q_arm("ql", 1, n, plan["ql"])] + [q_arm("explore", phi, n, dt_its) for phi in phis]
        runs = run_q_arms(arms, env, params, seeds, device, gap_of)
        for phi in plan["async"][0]:
            a, runs[label_of("async", phi)] = run_async(phi, n, plan["async"][1], env, params, keys, device, gap_of,
                                                        delta)
            arms.append(a)
        variants[str(n)] = {a.name: figures(a, runs[a.name]) for a in arms}
        for label, f in variants[str(n)].items():
            report(f"N={n} {label}", f)
        timing.update(_timings(arms, runs))
        panels.update(gap_panels(f"N={n}/", runs, [a.name for a in arms]))
    wall = time.perf_counter() - start

    summary = {
        # the Table II figures per N and variant (README: median iteration, seeds converged, final gap)
        **{n: {label: {k: v[k] for k in ("median_converged_iteration", "median_converged_exact_iteration",
                                         "converged_fraction", "converged_seeds", "final_gap_mean", "final_gap_std",
                                         "iterations")}
               for label, v in vs.items()} for n, vs in variants.items()},
        "variants": variants,
    }
    config = {
        "env": ENV_ID,
        "agent": "QLearningConfig (tabular); async: dtrl_jax.async_qlearning",
        "seeds": seeds,
        "plans": {str(n): {"ql": p["ql"], "explore": {"phis": list(p["explore"][0]), "iterations": p["explore"][1]},
                           "async": {"phis": list(p["async"][0]), "iterations": p["async"][1]}}
                  for n, p in plans.items()},
        "hyper": {**HYPER, "average_every": delta},
        "criteria": CRITERIA,
        "convergence": "first evaluation from which the greedy order's normalised gap stays <= 0.01 to the end "
                       "of the run; median over seeds (None if fewer than half converge)",
        "seeds_as": "harness.run_arms (train.init + scan of train.run, the greedy gap probed after every interval); "
                    "async: harness.run_seeds of make_async_train; seed keys split(key(0), seeds) for all",
        "frames": frames, "paper": PAPER, "timing": timing,
        "device": _common.describe_device(device), "wall_time_s": wall,
    }
    doc = {"config": config, "summary": summary, "curves": panels}
    harness.write(NAME, mode=mode, **doc, out=args.out, plot=None if args.no_plot else lambda png: plot(doc, png))
    rows = [
        [f"N={n} {label}", f"{v['iterations']:,}",
         "-" if v["median_converged_iteration"] is None else f"{v['median_converged_iteration']:.0f}",
         f"{v['converged_seeds']}/{seeds}", f"{v['final_gap_mean']:.4f}",
         f"{timing[f'N={n} {label}']['compile_s']:.0f}s / {timing[f'N={n} {label}']['run_s']:.0f}s"]
        for n, vs in variants.items() for label, v in vs.items()
    ]
    _common.log(_common.format_table(
        ["variant", "budget", "median conv. it.", "seeds conv.", "final gap", "compile/run"], rows))
    _common.log(f"total wall time {wall:.0f}s")
    return doc


if __name__ == "__main__":
    main()

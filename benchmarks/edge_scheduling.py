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

Every variant's seeds run as one ``jax.jit(jax.vmap(...))`` over keys; for the first two the per-seed
function is ``dt.make_train(cfg, env, params)`` split with ``train.init`` / ``train.run`` at every logging
interval, to read the Q-table there (equal to one full run, see ``make_train``).

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

Writes ``benchmarks/results/edge_scheduling.json`` and ``edge_scheduling.png`` (or under ``--out``).
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
from benchmarks import _common, _paper
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


def with_greedy_gap(train, gap_of):
    """Per-seed function: ``make_train``'s run, interval by interval, recording the greedy gap."""

    def run(key):
        runner, interval_keys = train.init(key)

        def body(r, k):
            r, m = train.run(r, k[None])
            return r, (jax.tree.map(lambda x: x[0], m), gap_of(r.agent_state.q))

        _, (metrics, gaps) = jax.lax.scan(body, runner, interval_keys)
        return {"metrics": metrics, "gap": gaps}

    return run


def converged_at(x: np.ndarray, gaps: np.ndarray, threshold: float) -> list[float | None]:
    """Per seed: first x from which the gap stays <= threshold to the end (None if it does not)."""
    return [_paper.first_reach(x, -g, -threshold, stay=True) for g in gaps]


def median_or_none(values: list[float | None]) -> float | None:
    """Median with non-converged seeds counted as +inf; None when that median is infinite."""
    arr = np.array([np.inf if v is None else v for v in values], np.float64)
    med = float(np.median(arr))
    return med if math.isfinite(med) else None


def run_variant(kind: str, phi: int, n: int, iterations: int, env, params, keys, device, gap_of,
                delta: int = HYPER["average_every"], learning_rate: float | None = None) -> dict[str, Any]:
    """One (algorithm, phi) variant at one N: train all seeds as one vmap, reduce to curves.

    ``learning_rate`` overrides ``HYPER["learning_rate"]`` (the label then names it).
    """
    label = {"ql": "Q-learning", "explore": f"DT exploring QL, phi = {phi}",
             "async": f"DT async QL, phi = {phi}"}[kind]
    if learning_rate is not None:
        label += f", lr {learning_rate:g}"
    tag = f"N={n} {label}"
    if kind == "async":
        cfg = q_config(iterations, delta, learning_rate=learning_rate)
        train = make_async_train(cfg, AsyncQLearningConfig(num_agents=phi, average_every=delta), env, params,
                                 round_fn=gap_of)
        _common.log(f"-- {tag}: {keys.shape[0]} seeds x {iterations:,} iterations x {phi} agents")
        out, compile_s, run_s = _paper.run_seeds(
            train, keys, tag, device, keep=lambda o: {"metrics": o.metrics, "gap": o.round_outputs})
        metrics = {k: np.mean(np.asarray(v, np.float64), axis=1) for k, v in out["metrics"].items()}  # over agents
        twin_per_seed = float(phi * iterations)
        log_every = delta
    else:
        log_every = eval_every(iterations)
        twin = None if kind == "ql" else dt.TwinConfig(num_domains=phi, action_trials=phi)
        cfg = q_config(iterations, log_every, twin, learning_rate)
        train = dt.make_train(cfg, env, params)
        _common.log(f"-- {tag}: {keys.shape[0]} seeds x {iterations:,} iterations (evaluated every {log_every})")
        out, compile_s, run_s = _paper.run_seeds(
            with_greedy_gap(train, gap_of), keys, tag, device, keep=lambda o: o)
        metrics = {k: np.asarray(v, np.float64) for k, v in out["metrics"].items()}
        twin_per_seed = float(np.mean(metrics["twin_transitions"][:, -1]))
    gaps = np.asarray(out["gap"], np.float64)  # [seeds, points]
    x = np.mean(metrics["physical_steps"], axis=0)
    g_mean, g_std = _paper.curve_stats(gaps)
    r_mean, r_std = _paper.curve_stats(metrics["episode_return"])
    conv = converged_at(x, gaps, HYPER["converged_gap"])
    exact = converged_at(x, gaps, 0.0)  # our stricter criterion: the greedy order is the optimum and stays
    n_conv = sum(c is not None for c in conv)
    n_exact = sum(c is not None for c in exact)
    mean_curve_conv = _paper.first_reach(x, -g_mean, -HYPER["converged_gap"], stay=True)
    final = gaps[:, -1]
    idx = thin(x.shape[0], HYPER["stored_points"])  # curves stored thinned; convergence used every point
    x, g_mean, g_std, r_mean, r_std = (a[idx] for a in (x, g_mean, g_std, r_mean, r_std))
    _common.log(
        f"   {tag}: converged {n_conv}/{len(conv)} seeds, median iteration {median_or_none(conv)}, "
        f"final gap {final.mean():.4f} +- {final.std():.4f}; exact optimum {n_exact}/{len(exact)} seeds, "
        f"median iteration {median_or_none(exact)}"
    )
    return {
        "label": label,
        "num_tasks": n,
        "algorithm": {"ql": "q_learning", "explore": "dt_exploring_q_learning", "async": "dt_async_q_learning"}[kind],
        "phi": phi if kind != "ql" else None,
        "iterations": iterations,
        "eval_every": log_every,
        "compile_s": compile_s,
        "run_s": run_s,
        "x": _paper.to_list(x, 1),
        "x_label": "iterations (physical steps = physical episodes; async: steps of each twin agent)",
        "mean": _paper.to_list(r_mean),
        "std": _paper.to_list(r_std),
        "y_label": "physical return (= -cost) per episode, mean over the interval"
                   + (" and over the twin agents" if kind == "async" else ""),
        "gap_mean": _paper.to_list(g_mean, 6),
        "gap_std": _paper.to_list(g_std, 6),
        "converged_iteration_per_seed": conv,
        "converged_seeds": n_conv,
        "converged_fraction": n_conv / len(conv),
        "median_converged_iteration": median_or_none(conv),
        "mean_curve_converged_iteration": mean_curve_conv,
        "converged_exact_iteration_per_seed": exact,
        "converged_exact_seeds": n_exact,
        "converged_exact_fraction": n_exact / len(exact),
        "median_converged_exact_iteration": median_or_none(exact),
        "learning_rate": HYPER["learning_rate"] if learning_rate is None else learning_rate,
        "final_gap_mean": float(final.mean()),
        "final_gap_std": float(final.std()),
        "twin_transitions_per_seed": twin_per_seed,
    }


def plot(doc: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({v["num_tasks"] for v in doc["variants"]})
    fig, axes = plt.subplots(1, len(ns), figsize=(6.2 * len(ns), 5.6), dpi=110, squeeze=False)
    phis = sorted({v["phi"] for v in doc["variants"] if v["phi"] is not None})
    palette = {phi: c for phi, c in zip(phis, _paper.COLORS[1:])}
    for ax, n in zip(axes[0], ns):
        series = []
        for v in doc["variants"]:
            if v["num_tasks"] != n:
                continue
            color = "black" if v["phi"] is None else palette[v["phi"]]
            conv = v["median_converged_iteration"]
            tag = "not conv." if conv is None else f"conv. {conv:.0f}"
            series.append({
                "label": f"{v['label']} ({tag})", "x": v["x"], "color": color,
                "linestyle": "--" if v["algorithm"] == "dt_async_q_learning" else "-",
                "mean": [np.nan if y is None else y for y in v["gap_mean"]],
                "std": [np.nan if y is None else y for y in v["gap_std"]],
            })
        vlines = []
        if n == 6:
            vlines = [(PAPER["n6_dt_500_trials_iterations"], "paper: phi=500 conv. 102"),
                      (PAPER["n6_q_learning_not_converged_after"], "paper: QL not conv. 25,600")]
        _paper.plot_curves(
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
    _paper.save_with_caption(fig, path, caption, width=60 * len(ns) + 40, per_line=0.03)



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
    """The learning-rate sweep: Q-learning and DT exploring QL (phi trials) at each rate, both criteria."""
    n = args.tasks[0] if args.tasks else LR_SWEEP["num_tasks"]
    phi = args.phis[0] if args.phis else LR_SWEEP["phi"]
    ql_its = args.ql_iterations or LR_SWEEP["ql_iterations"]
    dt_its = args.dt_iterations or LR_SWEEP["dt_iterations"]
    lrs = tuple(args.lrs or LR_SWEEP["learning_rates"])
    keys = jax.random.split(jax.random.key(0), seeds)
    env, params = dt.make(ENV_ID, num_tasks=n)
    gap_of, frame = gap_fn(params)
    variants = []
    for lr in lrs:
        variants.append(run_variant("ql", 1, n, ql_its, env, params, keys, device, gap_of, learning_rate=lr))
        variants.append(run_variant("explore", phi, n, dt_its, env, params, keys, device, gap_of, learning_rate=lr))
    rows = [{"learning_rate": v["learning_rate"], "algorithm": v["algorithm"], "phi": v["phi"],
             "iterations": v["iterations"],
             "gap_0.01": {"median": v["median_converged_iteration"], "seeds": v["converged_seeds"]},
             "exact": {"median": v["median_converged_exact_iteration"], "seeds": v["converged_exact_seeds"]},
             "final_gap_mean": v["final_gap_mean"], "of": seeds} for v in variants]
    config = {"num_tasks": n, "phi": phi, "ql_iterations": ql_its, "dt_iterations": dt_its, "learning_rates": list(lrs),
              "seeds": seeds, "hyper": HYPER, "criteria": CRITERIA,
              "median": "over seeds, a seed that never meets the criterion counting as infinite (None if fewer "
                        "than half meet it)"}
    return {"config": config, "frames": {str(n): frame}, "variants": variants, "summary": {"rows": rows}}


def plot_lr_sweep(doc: dict[str, Any], path) -> None:
    """Greedy gap curves of the sweep: solid Q-learning, dashed phi trials, one colour per learning rate."""
    cfg = doc["config"]
    palette = {lr: c for lr, c in zip(cfg["learning_rates"], _paper.COLORS[1:])}
    series = [{"label": f"{v['label']} (gap<=0.01: {_it(v['median_converged_iteration'])}, exact: "
                        f"{_it(v['median_converged_exact_iteration'])})",
               "x": v["x"], "color": palette[v["learning_rate"]],
               "linestyle": "-" if v["phi"] is None else "--",
               "mean": [np.nan if y is None else y for y in v["gap_mean"]],
               "std": [np.nan if y is None else y for y in v["gap_std"]]} for v in doc["variants"]]
    _paper.plot_curves(
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
    _paper.header(NAME, mode, device, f"- {seeds} seeds, N in {sorted(plans)}")

    start = time.perf_counter()
    git = _paper.git_state()  # the code that runs (read before any later edit of the tree)
    if args.lr_sweep:
        doc = lr_sweep(args, seeds, device)
        doc["config"]["mode"] = mode
        doc.update(device=_common.describe_device(device), git=git, wall_time_s=time.perf_counter() - start,
                   paper=PAPER)
        name = f"{NAME}_lr_sweep"
        _common.write_results(name, doc, args.out, None if args.no_plot else lambda png: plot_lr_sweep(doc, png))
        _common.log(_common.format_table(
            ["lr", "algorithm", "budget", "gap<=0.01 median (seeds)", "exact median (seeds)", "final gap"],
            [[r["learning_rate"], r["algorithm"] + ("" if r["phi"] is None else f" phi={r['phi']}"),
              f"{r['iterations']:,}", f"{_it(r['gap_0.01']['median'])} ({r['gap_0.01']['seeds']}/{seeds})",
              f"{_it(r['exact']['median'])} ({r['exact']['seeds']}/{seeds})", f"{r['final_gap_mean']:.4f}"]
             for r in doc["summary"]["rows"]]))
        return doc
    keys = jax.random.split(jax.random.key(0), seeds)
    variants, frames = [], {}
    for n, plan in sorted(plans.items()):
        env, params = dt.make(ENV_ID, num_tasks=n)
        gap_of, frame = gap_fn(params)
        frames[str(n)] = frame
        _common.log(f"== N = {n}: {math.factorial(n):,} orders, optimum cost {frame['best_cost']:.4f} s "
                    f"(random order {frame['mean_cost']:.4f} s)")
        variants.append(run_variant("ql", 1, n, plan["ql"], env, params, keys, device, gap_of))
        for kind in ("explore", "async"):
            phis, its = plan[kind]
            for phi in phis:
                variants.append(run_variant(kind, phi, n, its, env, params, keys, device, gap_of, delta))
    wall = time.perf_counter() - start

    summary = {}
    for v in variants:
        summary.setdefault(str(v["num_tasks"]), {})[v["label"]] = {
            "median_converged_iteration": v["median_converged_iteration"],
            "converged_fraction": v["converged_fraction"],
            "final_gap_mean": v["final_gap_mean"],
            "iterations": v["iterations"],
        }
    doc = {
        "config": {
            "mode": mode,
            "env": ENV_ID,
            "agent": "QLearningConfig (tabular); async: dtrl_jax.async_qlearning",
            "seeds": seeds,
            "plans": {str(n): {"ql": p["ql"], "explore": {"phis": list(p["explore"][0]), "iterations": p["explore"][1]},
                               "async": {"phis": list(p["async"][0]), "iterations": p["async"][1]}}
                      for n, p in plans.items()},
            "hyper": {**HYPER, "average_every": delta},
            "convergence": "first evaluation from which the greedy order's normalised gap stays <= 0.01 to the end "
                           "of the run; median over seeds (None if fewer than half converge)",
            "seeds_as": "jax.jit(jax.vmap(per_seed_fn))(keys), per_seed_fn built on dt.make_train's init/run",
        },
        "device": _common.describe_device(device),
        "git": git,
        "wall_time_s": wall,
        "paper": PAPER,
        "frames": frames,
        "variants": variants,
        "summary": summary,
    }
    _common.write_results(NAME, doc, args.out, None if args.no_plot else lambda png: plot(doc, png))
    rows = [
        [f"N={v['num_tasks']} {v['label']}", f"{v['iterations']:,}",
         "-" if v["median_converged_iteration"] is None else f"{v['median_converged_iteration']:.0f}",
         f"{v['converged_seeds']}/{seeds}", f"{v['final_gap_mean']:.4f}", f"{v['compile_s']:.0f}s / {v['run_s']:.0f}s"]
        for v in variants
    ]
    _common.log(_common.format_table(
        ["variant", "budget", "median conv. it.", "seeds conv.", "final gap", "compile/run"], rows))
    _common.log(f"total wall time {wall:.0f}s")
    return doc


if __name__ == "__main__":
    main()

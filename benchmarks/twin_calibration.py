"""Calibrating a mismatched twin offline from a short physical data-collection phase.

``python -m benchmarks.twin_calibration [--quick|--full] [--device cpu|gpu] [--out DIR]``

Case: ``AccessPointSelection-v0`` (index observations), tabular DT-QL with n = 5 action trials over
D = 5 domains, the setting of ``benchmarks/twin_noise.py`` in which a mismatched twin (``perturb_params``
on the AP fields) costs the most: there the perfect twin lifts the final return well above physical-only
and a twin with rho = 0.2 or 0.5 falls below it. Tabular Q on 2 CPU cores is cheap (tens of thousands of
steps per second for all arms x seeds in one program), which is why this case and not DQN.

Arms (8 seeds each, the same seed keys for every arm):

* ``physical only``: the twin never switches on (``ready_after`` beyond the run).
* ``perfect twin``: every domain has the true params.
* ``mismatched rho``: each domain's AP fields (position, radius, rate, cost) scaled by
  ``1 + rho N(0, 1)`` (``perturb_params``, floored at 0.1), rho in {0.1, 0.3, 0.5}; one draw per rho.
* ``calibrated rho``: the same mismatched domains, each calibrated (``dtrl_jax.twin.calibration``,
  CEM: the index observation and the success thresholds are not differentiable) on ``collect_steps``
  physical transitions under uniformly random actions (``collect_steps / 125`` vehicles, ~125 steps each:
  about one drive along the road, so every AP's coverage is passed), before training. Those steps are charged: the
  calibrated arms' curves are shifted right by the collection's physical steps and episodes.

* ``in-loop rho``: the same mismatched domains calibrated *inside* the training program
  (``TwinConfig(calibrate_every=...)``, ``dtrl_jax.twin.online``): every ``every`` physical steps a CEM
  phase (warm-started from the current twin, bounds fixed around the initial one) fits the AP fields of
  one parameter set to the last ``buffer`` physical transitions of training itself and writes it into
  all domains. No extra physical steps: the cost is the mismatched twin's transitions learned before
  (and while) it is calibrated, and compute.

Calibration quality (twin_error on a held-out physical batch, parameter error ``mean |log(twin/true)|``
over all AP entries and over the identifiable small-cell entries) is also measured against the size
of the collection phase. Every twin arm carries a ``calibrate_buffer`` of the same size, so the loop's
``twin_error`` metric (the twin's one-step error on its last ``buffer`` physical transitions) is
reported over physical steps for all of them; a buffer without phases changes no training number.
The in-loop arms run in chunks of logging intervals (``train.init`` / ``train.run``) so their
parameter error can be read between chunks. Writes ``benchmarks/results/twin_calibration.{json,png}``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import dtrl_jax as dt
from benchmarks import _common, harness
from dtrl_jax.twin import calibration as cal
from dtrl_jax.twin import perturb_params, stack_params

NAME = "twin_calibration"
NEVER = 2**30
FIELDS = ("ap_position_m", "ap_radius_m", "ap_rate_mbps", "ap_cost")
DOMAINS = 5

MODES: dict[str, dict[str, Any]] = {
    "quick": dict(seeds=1, num_envs=4, log_every=400, intervals=2, decay=400, eval_episodes=1, rhos=(0.3,),
                  collect=(100,), train_collect=100, cem_steps=3, population=8,
                  inloop=dict(every=400, buffer=200, steps=3, population=8, chunk=1)),
    "default": dict(seeds=8, num_envs=16, log_every=2_000, intervals=48, decay=20_000, eval_episodes=4,
                    rhos=(0.1, 0.3, 0.5), collect=(500, 2_000), train_collect=2_000, cem_steps=100, population=128,
                    inloop=dict(every=2_000, buffer=2_000, steps=40, population=128, chunk=4)),
    "full": dict(seeds=16, num_envs=16, log_every=2_000, intervals=80, decay=20_000, eval_episodes=8,
                 rhos=(0.1, 0.3, 0.5), collect=(250, 500, 1_000, 2_000, 4_000), train_collect=2_000, cem_steps=150,
                 population=128, inloop=dict(every=2_000, buffer=2_000, steps=40, population=128, chunk=4)),
}
KEEP = (*harness.DEFAULT_METRICS, "twin_error")


def cal_config(st: dict) -> cal.CalibrationConfig:
    """CEM over the AP fields: range x/4..4x around the twin's (mismatched) values, 1 sample (the
    reward is deterministic given the state; only the next task class is random)."""
    return cal.CalibrationConfig(fields=FIELDS, method="cem", num_samples=1, steps=st["cem_steps"],
                                 population=st["population"], init_std=0.15, range_factor=4.0)


def log_ratio_error(p, true, lead: int = 0, small_cells: bool = False) -> np.ndarray:
    """``mean |log(twin / true)|`` over every entry of ``FIELDS`` (or the small cells', APs 1-4), keeping
    the ``lead`` leading axes of the twin ``p`` (e.g. 2 for ``[rho, seed, domain, ...]`` -> ``[rho, seed]``)."""
    cols = []
    for f in FIELDS:
        a, b = np.asarray(getattr(p, f), np.float64), np.asarray(getattr(true, f), np.float64)
        r = np.abs(np.log(a / np.broadcast_to(b, a.shape[a.ndim - b.ndim:])))
        r = r[..., 1:] if small_cells else r
        cols.append(r.reshape(*a.shape[:lead], -1))
    return np.mean(np.concatenate(cols, axis=-1), axis=-1)


def small_cell_error(p, true) -> float:
    """``mean |log(twin / true)|`` over the small cells' (APs 1-4) entries of every field."""
    return float(log_ratio_error(p, true, small_cells=True))


def inloop_twin(base, st: dict):
    """The training twin with in-loop CEM calibration of ``FIELDS`` (settings of ``st["inloop"]``)."""
    il = st["inloop"]
    return base.twin.replace(calibrate_every=il["every"], calibrate_fields=FIELDS,
                             calibrate_per_domain=il.get("per_domain", False), calibrate_until=il.get("until"),
                             calibrate_options=dict(
        method="cem", num_samples=1, steps=il["steps"], population=il["population"], init_std=0.15, range_factor=4.0))


def run_inloop(cfg, env, params, stacks, st: dict, device) -> tuple[dict, float, float, Any]:
    """Train ``cfg`` (in-loop calibration) with each twin stack of ``stacks`` on the study's seeds.

    One program: ``vmap`` over stacks and seeds, run ``chunk`` logging intervals at a time so that the
    twin's parameter error can be read between chunks. The seed keys are those of
    ``harness.run_arms`` (common random numbers with the other arms). Returns ``({arm index: metrics
    [seeds, intervals] plus param_error, param_error_small_cells}, compile_s, run_s, final twin params
    [stacks, seeds, domains, ...])``.
    """
    keys = jax.random.split(jax.random.key(0), st["seeds"])
    tps = stack_params(stacks)

    def init(tp, k):
        return dt.make_train(cfg, env, params, twin_params=tp).init(k)[0]

    def run(tp, runner, idx):
        runner, metrics = dt.make_train(cfg, env, params, twin_params=tp).run(runner, idx)
        return runner, {n: metrics[n] for n in KEEP}

    chunk = st["inloop"]["chunk"]
    with jax.default_device(device):
        t0 = time.perf_counter()
        runner = jax.jit(jax.vmap(jax.vmap(init, (None, 0)), (0, None)))(tps, keys)
        run_v = jax.jit(jax.vmap(jax.vmap(run, (None, 0, None)), (0, 0, None)))
        run_c = run_v.lower(tps, runner, jnp.arange(chunk, dtype=jnp.int32)).compile()
        t1 = time.perf_counter()
        rows, perr, perr_small = [], [log_ratio_error(tps, params, 1)], [log_ratio_error(tps, params, 1, True)]
        for i in range(0, st["intervals"], chunk):
            runner, m = run_c(tps, runner, jnp.arange(i, i + chunk, dtype=jnp.int32))
            rows.append(jax.tree.map(np.asarray, m))
            twin = runner.calibration.params  # [stacks, seeds, domains, ...]
            perr.append(log_ratio_error(twin, params, 2))
            perr_small.append(log_ratio_error(twin, params, 2, True))
        t2 = time.perf_counter()
    out = {}
    for j in range(len(stacks)):
        m = {n: np.concatenate([r[n][j] for r in rows], axis=-1) for n in KEEP}
        # parameter error at step 0 (every seed starts from the same twin) then after every chunk
        first = np.full((st["seeds"], 1), perr[0][j])
        m["param_error"] = np.concatenate([first, np.stack([p[j] for p in perr[1:]], axis=1)], axis=1)
        m["param_error_small_cells"] = np.concatenate(
            [np.full((st["seeds"], 1), perr_small[0][j]), np.stack([p[j] for p in perr_small[1:]], axis=1)], axis=1)
        m["param_error_steps"] = np.arange(0, st["intervals"] + 1, chunk) * st["log_every"]
        out[j] = m
    return out, t1 - t0, t2 - t1, runner.calibration.params


def calibrate_domains(env, twin, batch, key, st):
    """Calibrate every domain of a ``[D]`` twin stack on one physical batch (one vmap)."""
    cfg = cal_config(st)
    fn = jax.jit(jax.vmap(lambda p, k: cal.calibrate(env, p, batch, k, cfg)))
    return fn(twin, jax.random.split(key, DOMAINS))


def quality(env, params, twin, batch_eval, key) -> dict:
    """twin_error on held-out physical data (mean over domains) and parameter errors."""
    err = jax.jit(jax.vmap(lambda p: cal.twin_error(env, p, batch_eval, key, 1)))(twin)
    all_err = float(np.mean(np.asarray(jax.vmap(lambda p: cal.param_error(p, params, FIELDS))(twin))))
    return {"twin_error": float(np.mean(np.asarray(err))), "param_error": all_err,
            "param_error_small_cells": small_cell_error(twin, params)}


def episodes_in(batch) -> int:
    return int(np.sum(np.asarray(batch.done)))


def main(argv=None) -> dict[str, Any]:
    parser = _common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    mode = _common.run_mode(args)
    st = MODES[mode]
    device = _common.select_device(args.device)
    _common.log(f"{NAME} ({mode}) on {_common.describe_device(device)}")
    env, params = dt.make("AccessPointSelection-v0")
    key = jax.random.key(2026)
    with jax.default_device(device):
        eval_batch = cal.collect_transitions(jax.random.fold_in(key, 1), env, params, 125, 16)
        perfect = stack_params([params] * DOMAINS)
        rows, mismatched, calibrated = [], {}, {}
        rows.append({"arm": "perfect twin", "rho": 0.0, "collect_steps": 0,
                     **quality(env, params, perfect, eval_batch, jax.random.key(9))})
        for i, rho in enumerate(st["rhos"]):
            twin = perturb_params(jax.random.fold_in(key, 100 + i), params, DOMAINS, rho, fields=FIELDS)
            mismatched[rho] = twin
            rows.append({"arm": f"mismatched rho {rho:g}", "rho": rho, "collect_steps": 0,
                         **quality(env, params, twin, eval_batch, jax.random.key(9))})
            for n in st["collect"]:
                envs = max(1, n // 125)  # ~125 steps per env: about one drive along the whole road each
                batch = cal.collect_transitions(jax.random.fold_in(key, 200 + n), env, params, n // envs, envs)
                t0 = time.perf_counter()
                res = calibrate_domains(env, twin, batch, jax.random.fold_in(key, 300 + i), st)
                res = jax.block_until_ready(res)
                wall = time.perf_counter() - t0
                rows.append({"arm": f"calibrated rho {rho:g}", "rho": rho, "collect_steps": int(batch.reward.shape[0]),
                             "collect_episodes": episodes_in(batch), "calibration_s": wall,
                             **quality(env, params, res.params, eval_batch, jax.random.key(9))})
                _common.log(f"  rho {rho:g}, {n} steps: {rows[-1]}")
                if n == st["train_collect"]:
                    calibrated[rho] = (res.params, int(batch.reward.shape[0]), episodes_in(batch))

        base = dt.QLearningConfig(
            total_timesteps=st["intervals"] * st["log_every"], log_every=st["log_every"], num_envs=st["num_envs"],
            learning_rate=0.1, gamma=0.9, epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=st["decay"],
            eval_episodes=st["eval_episodes"],
            twin=dt.TwinConfig(num_domains=DOMAINS, action_trials=5, calibrate_buffer=st["inloop"]["buffer"]))
        arms = [harness.Arm("physical only", base.replace(twin=base.twin.replace(ready_after=NEVER)), perfect),
                harness.Arm("perfect twin", base, perfect)]
        for rho in st["rhos"]:
            arms.append(harness.Arm(f"mismatched rho {rho:g}", base, mismatched[rho]))
            arms.append(harness.Arm(f"calibrated rho {rho:g}", base, calibrated[rho][0]))
        runs = harness.run_arms(arms, env, params, seeds=st["seeds"], device=device, keep=KEEP)
        _common.log(f"  in-loop calibration: {len(st['rhos'])} twins x {st['seeds']} seeds")
        inloop, compile_s, run_s, final = run_inloop(base.replace(twin=inloop_twin(base, st)), env, params,
                                                     [mismatched[r] for r in st["rhos"]], st, device)
        _common.log(f"  in-loop: compiled in {compile_s:.1f}s, ran in {run_s:.1f}s")
        # the final in-loop twins on the held-out uniformly random-action batch (what the trials query)
        heldout = jax.jit(jax.vmap(jax.vmap(jax.vmap(lambda p: cal.twin_error(env, p, eval_batch, jax.random.key(9), 1)))))
        heldout = np.asarray(heldout(final)).mean(axis=-1)  # [rho, seed]
        for j, rho in enumerate(st["rhos"]):
            runs[f"in-loop rho {rho:g}"] = inloop[j]
            rows.append({"arm": f"in-loop rho {rho:g} (end of training)", "rho": rho, "collect_steps": 0,
                         "twin_error": float(heldout[j].mean()), "twin_error_std_over_seeds": float(heldout[j].std()),
                         "param_error": float(inloop[j]["param_error"][:, -1].mean()),
                         "param_error_small_cells": float(inloop[j]["param_error_small_cells"][:, -1].mean())})
    for rho in st["rhos"]:  # charge the collection phase
        _, steps, episodes = calibrated[rho]
        m = runs[f"calibrated rho {rho:g}"]
        m["physical_steps"] = m["physical_steps"] + steps
        m["physical_episodes"] = m["physical_episodes"] + episodes

    tail = max(1, st["intervals"] // 4)
    summary: dict[str, Any] = {"final_eval_return": {}, "calibration": rows}
    for name, m in runs.items():
        per_seed = np.nanmean(np.asarray(m["eval_return"], np.float64)[:, -tail:], axis=1)
        summary["final_eval_return"][name] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)),
                                              "per_seed": per_seed.tolist()}
    fr = summary["final_eval_return"]
    rec, rec_inloop = {}, {}
    for rho in st["rhos"]:
        lo, hi = fr[f"mismatched rho {rho:g}"]["mean"], fr["perfect twin"]["mean"]
        for out, arm in ((rec, "calibrated"), (rec_inloop, "in-loop")):
            c = fr[f"{arm} rho {rho:g}"]["mean"]
            out[f"{rho:g}"] = None if abs(hi - lo) < 1e-9 else (c - lo) / (hi - lo)
    summary["recovered_fraction_of_perfect_minus_mismatched"] = rec
    summary["inloop_recovered_fraction_of_perfect_minus_mismatched"] = rec_inloop
    summary["inloop"] = inloop_summary(runs, st, compile_s, run_s)
    # Paired per-seed differences (every arm sees the same seed keys): much tighter than the spreads.
    paired = {}
    for name in runs:
        rho = name.split("rho ")[1] if "rho " in name else None
        for ref in ("perfect twin", "physical only", *([f"mismatched rho {rho}"] if rho else [])):
            if name != ref:
                d = np.asarray(fr[name]["per_seed"]) - np.asarray(fr[ref]["per_seed"])
                paired[f"{name} - {ref}"] = {"mean": float(np.mean(d)), "std": float(np.std(d)),
                                             "seeds_above": int(np.sum(d > 0))}
    summary["paired_differences"] = paired
    summary["collect_steps_for_training_arms"] = {f"{r:g}": calibrated[r][1] for r in st["rhos"]}
    summary["collect_episodes_for_training_arms"] = {f"{r:g}": calibrated[r][2] for r in st["rhos"]}
    twin_arms = [n for n in runs if n != "physical only"]
    curves = {"greedy_vs_episodes": harness.panel(runs, y="eval_return", x="physical_episodes",
                                                  ylabel="greedy return (eval_return)"),
              "greedy_vs_steps": harness.panel(runs, y="eval_return", x="physical_steps",
                                               ylabel="greedy return (eval_return)"),
              "twin_error_vs_steps": harness.panel(runs, y="twin_error", x="physical_steps", arms=twin_arms,
                                                   ylabel="twin_error (last buffer physical transitions)")}
    config = {"env": "AccessPointSelection-v0", "agent": "DT-QL, action_trials=5, num_domains=5", "fields": FIELDS,
              "mode": mode, "device": _common.describe_device(device), **st,
              "calibration": {"method": "cem", "num_samples": 1, "init_std": 0.15, "range_factor": 4.0,
                              "policy": "uniform random actions", "twin_error_batch": "2000 held-out physical steps"},
              "inloop_calibration": {"method": "cem", "num_samples": 1, "init_std": 0.15, "range_factor": 4.0,
                                     "per_domain": False, "data": "the last buffer physical transitions of training",
                                     **st["inloop"]}}
    perr = {f"{rho:g}": {"steps": runs[f"in-loop rho {rho:g}"]["param_error_steps"].tolist(),
                         **{k: getattr(np, fn)(runs[f"in-loop rho {rho:g}"][src], axis=0).tolist()
                            for k, fn, src in (("mean", "mean", "param_error"), ("std", "std", "param_error"),
                                               ("small_cells_mean", "mean", "param_error_small_cells"))}}
            for rho in st["rhos"]}
    doc = {"config": config, "summary": summary, "curves": curves, "inloop_param_error": perr}
    harness.write(NAME, mode=mode, config=config, summary=summary, curves=curves, out=args.out,
                  plot=lambda png: plot(doc, png), extra={"inloop_param_error": perr})
    _common.log(f"final greedy return: { {k: round(v['mean'], 1) for k, v in fr.items()} }; recovered offline {rec}, "
                f"in-loop {rec_inloop}")
    return doc


def inloop_summary(runs: dict, st: dict, compile_s: float, run_s: float) -> dict:
    """The in-loop arms against the others: twin_error and parameter error over physical steps, the
    physical steps until the in-loop twin_error is down to the offline-calibrated twin's, early returns."""
    tail = max(1, st["intervals"] // 4)
    early = max(1, st["intervals"] // 4)

    def mean_of(name, metric, sl):
        return float(np.nanmean(np.asarray(runs[name][metric], np.float64)[:, sl]))

    out: dict[str, Any] = {"compile_s": compile_s, "run_s": run_s,
                           "monitored_group_run_s": runs["perfect twin"]["_timing"]["run_s"]
                           if "_timing" in runs["perfect twin"] else None, "per_rho": {}}
    perfect_err = mean_of("perfect twin", "twin_error", slice(None))
    for rho in st["rhos"]:
        il, mis, off = (f"{a} rho {rho:g}" for a in ("in-loop", "mismatched", "calibrated"))
        err = np.nanmean(np.asarray(runs[il]["twin_error"], np.float64), axis=0)
        target = mean_of(off, "twin_error", slice(None))
        below = np.flatnonzero(err <= target)
        steps = np.asarray(runs[il]["physical_steps"], np.float64).mean(0)
        pe = np.asarray(runs[il]["param_error"], np.float64)
        out["per_rho"][f"{rho:g}"] = {
            "twin_error_mismatched": mean_of(mis, "twin_error", slice(None)),
            "twin_error_offline_calibrated": target,
            "twin_error_inloop_first_interval": float(err[0]),
            "twin_error_inloop_last_quarter": mean_of(il, "twin_error", slice(-tail, None)),
            "physical_steps_to_offline_twin_error": float(steps[below[0]]) if below.size else None,
            "param_error_start": float(pe[:, 0].mean()), "param_error_end": float(pe[:, -1].mean()),
            "param_error_end_std": float(pe[:, -1].std()),
            "param_error_small_cells_end": float(np.asarray(runs[il]["param_error_small_cells"])[:, -1].mean()),
            "early_eval_return": {a: mean_of(a, "eval_return", slice(0, early))
                                  for a in ("physical only", "perfect twin", mis, off, il)},
        }
    out["twin_error_perfect"] = perfect_err
    return out


def plot(doc: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 3, figsize=(18, 9.6))
    axes = grid[0]
    offline = {k: v for k, v in doc["curves"]["greedy_vs_episodes"].items() if k != "series"}
    offline["series"] = {k: v for k, v in doc["curves"]["greedy_vs_episodes"]["series"].items()
                         if not k.startswith("in-loop")}
    harness.draw_panel(axes[0], offline)
    axes[0].set_title("greedy return over physical episodes\n(calibrated arms shifted by the collection phase)")
    axes[0].legend(fontsize=7)
    rows = doc["summary"]["calibration"]
    for ax, key, label in ((axes[1], "twin_error", "twin_error (held-out physical data)"),
                           (axes[2], "param_error", "parameter error mean |log(twin/true)|")):
        for rho in doc["config"]["rhos"]:
            mis = next(r for r in rows if r["arm"] == f"mismatched rho {rho:g}")
            cals = [r for r in rows if r["arm"] == f"calibrated rho {rho:g}"]
            xs = [0] + [r["collect_steps"] for r in cals]
            line = ax.plot(xs, [mis[key]] + [r[key] for r in cals], marker="o", label=f"rho {rho:g}")[0]
            if key == "param_error":
                ax.plot(xs, [mis["param_error_small_cells"]] + [r["param_error_small_cells"] for r in cals],
                        marker="x", ls=":", color=line.get_color(), label=f"rho {rho:g}, small cells")
        perfect = next(r for r in rows if r["arm"] == "perfect twin")
        ax.axhline(perfect[key], color="k", ls="--", label="perfect twin")
        ax.set_xlabel("physical steps collected for calibration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    plot_inloop(doc, grid[1])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_inloop(doc: dict, axes) -> None:
    """Second row: the in-loop arms (solid) against the mismatched (dashed) and offline-calibrated (dotted)."""
    from benchmarks._paper import COLORS

    rhos = doc["config"]["rhos"]
    styles = {"in-loop": "-", "mismatched": "--", "calibrated": ":"}
    for ax, curve, title in ((axes[0], "greedy_vs_episodes", "greedy return over physical episodes"),
                             (axes[1], "twin_error_vs_steps", "twin_error over physical steps (loop metric)")):
        series = doc["curves"][curve]["series"]
        for name in ("physical only", "perfect twin"):
            if name in series:
                s = series[name]
                ax.plot(s["x"], s["mean"], color="k", ls="-" if name == "perfect twin" else "-.", lw=1.2, label=name)
        for i, rho in enumerate(rhos):
            for arm, ls in styles.items():
                s = series[f"{arm} rho {rho:g}"]
                ax.plot(s["x"], s["mean"], color=COLORS[(i + 1) % len(COLORS)], ls=ls, lw=1.3,
                        label=f"{arm} rho {rho:g}")
        ax.set_xlabel(doc["curves"][curve]["xlabel"])
        ax.set_ylabel(doc["curves"][curve]["ylabel"])
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    axes[1].set_yscale("log")
    ax = axes[2]
    rows = doc["summary"]["calibration"]
    for i, rho in enumerate(rhos):
        c = doc["inloop_param_error"][f"{rho:g}"]
        color = COLORS[(i + 1) % len(COLORS)]
        ax.errorbar(c["steps"], c["mean"], yerr=c["std"], color=color, lw=1.3, capsize=2, label=f"in-loop rho {rho:g}")
        ax.plot(c["steps"], c["small_cells_mean"], color=color, ls="-.", lw=1, label=f"in-loop rho {rho:g}, small cells")
        off = [r for r in rows if r["arm"] == f"calibrated rho {rho:g}"][-1]
        ax.axhline(off["param_error"], color=color, ls=":", lw=1, label=f"offline rho {rho:g} ({off['collect_steps']} steps)")
    ax.set_xlabel("physical steps")
    ax.set_ylabel("parameter error mean |log(twin/true)|")
    ax.set_title("in-loop calibration: parameter error (mean +- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)


if __name__ == "__main__":
    main()

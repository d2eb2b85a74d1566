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

Calibration quality (twin_error on a held-out physical batch, parameter error ``mean |log(twin/true)|``
over all AP entries and over the identifiable small-cell entries) is also measured against the size
of the collection phase. Writes ``benchmarks/results/twin_calibration.{json,png}``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
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
                  collect=(100,), train_collect=100, cem_steps=3, population=8),
    "default": dict(seeds=8, num_envs=16, log_every=8_000, intervals=12, decay=20_000, eval_episodes=4,
                    rhos=(0.1, 0.3, 0.5), collect=(500, 2_000), train_collect=2_000, cem_steps=100, population=128),
    "full": dict(seeds=16, num_envs=16, log_every=8_000, intervals=20, decay=20_000, eval_episodes=8,
                 rhos=(0.1, 0.3, 0.5), collect=(250, 500, 1_000, 2_000, 4_000), train_collect=2_000, cem_steps=150,
                 population=128),
}


def cal_config(st: dict) -> cal.CalibrationConfig:
    """CEM over the AP fields: range x/4..4x around the twin's (mismatched) values, 1 sample (the
    reward is deterministic given the state; only the next task class is random)."""
    return cal.CalibrationConfig(fields=FIELDS, method="cem", num_samples=1, steps=st["cem_steps"],
                                 population=st["population"], init_std=0.15, range_factor=4.0)


def small_cell_error(p, true) -> float:
    """``mean |log(twin / true)|`` over the small cells' (APs 1-4) entries of every field."""
    a = np.concatenate([np.asarray(getattr(p, f))[..., 1:].reshape(-1) for f in FIELDS])
    b = np.concatenate([np.broadcast_to(np.asarray(getattr(true, f))[1:], np.asarray(getattr(p, f))[..., 1:].shape)
                        .reshape(-1) for f in FIELDS])
    return float(np.mean(np.abs(np.log(a / b))))


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
            eval_episodes=st["eval_episodes"], twin=dt.TwinConfig(num_domains=DOMAINS, action_trials=5))
        arms = [harness.Arm("physical only", base.replace(twin=base.twin.replace(ready_after=NEVER)), perfect),
                harness.Arm("perfect twin", base, perfect)]
        for rho in st["rhos"]:
            arms.append(harness.Arm(f"mismatched rho {rho:g}", base, mismatched[rho]))
            arms.append(harness.Arm(f"calibrated rho {rho:g}", base, calibrated[rho][0]))
        runs = harness.run_arms(arms, env, params, seeds=st["seeds"], device=device)
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
    rec = {}
    for rho in st["rhos"]:
        lo, hi, c = fr[f"mismatched rho {rho:g}"]["mean"], fr["perfect twin"]["mean"], fr[f"calibrated rho {rho:g}"]["mean"]
        rec[f"{rho:g}"] = None if abs(hi - lo) < 1e-9 else (c - lo) / (hi - lo)
    summary["recovered_fraction_of_perfect_minus_mismatched"] = rec
    # Paired per-seed differences (every arm sees the same seed keys): much tighter than the spreads.
    paired = {}
    for name in runs:
        for ref in ("perfect twin", "physical only"):
            if name != ref:
                d = np.asarray(fr[name]["per_seed"]) - np.asarray(fr[ref]["per_seed"])
                paired[f"{name} - {ref}"] = {"mean": float(np.mean(d)), "std": float(np.std(d)),
                                             "seeds_above": int(np.sum(d > 0))}
    summary["paired_differences"] = paired
    summary["collect_steps_for_training_arms"] = {f"{r:g}": calibrated[r][1] for r in st["rhos"]}
    summary["collect_episodes_for_training_arms"] = {f"{r:g}": calibrated[r][2] for r in st["rhos"]}
    curves = {"greedy_vs_episodes": harness.panel(runs, y="eval_return", x="physical_episodes",
                                                  ylabel="greedy return (eval_return)"),
              "greedy_vs_steps": harness.panel(runs, y="eval_return", x="physical_steps",
                                               ylabel="greedy return (eval_return)")}
    config = {"env": "AccessPointSelection-v0", "agent": "DT-QL, action_trials=5, num_domains=5", "fields": FIELDS,
              "mode": mode, "device": _common.describe_device(device), **st,
              "calibration": {"method": "cem", "num_samples": 1, "init_std": 0.15, "range_factor": 4.0,
                              "policy": "uniform random actions", "twin_error_batch": "2000 held-out physical steps"}}
    doc = {"config": config, "summary": summary, "curves": curves}
    harness.write(NAME, mode=mode, config=config, summary=summary, curves=curves, out=args.out,
                  plot=lambda png: plot(doc, png))
    _common.log(f"final greedy return: { {k: round(v['mean'], 1) for k, v in fr.items()} }; recovered {rec}")
    return doc


def plot(doc: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    harness.draw_panel(axes[0], doc["curves"]["greedy_vs_episodes"])
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

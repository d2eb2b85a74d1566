"""Extra training delay of DT construction: wait for a finished twin, or start early on a noisy one?

``AccessPointSelection-v0`` with tabular DT-QL (n = 5 action trials, 5 domains). All arms are rows
of ONE compiled program (``ready_after``, ``build_steps`` and ``build_noise_std`` are traced
``TwinConfig`` fields), seeds included:

* ``physical only``: the twin never switches on (``ready_after`` beyond the run);
* ``wait``: a perfect twin that is ready after ``ready_after`` physical steps (0 = pre-existing);
* ``early``: a twin finished after ``T_build`` steps, used from ``t0 < T_build`` on while still being
  built: extra state noise ``build_noise_std`` at step 0 decays linearly to 0 at ``T_build``
  (``build_steps = T_build``), so the twin starts with noise ``sigma0 * (1 - t0 / T_build)``
  (metres on the vehicle position, m/s on its speed) and is exact from ``T_build`` on.

Reported per arm (``summary["points"]``, per seed; harness schema): final physical return (mean of the
last quarter of the run), mean return over the run, and physical steps until the 3-interval running
mean reaches a target (the physical-only agent's final return, and a higher one: the mean of the
perfect twin's final return and the physical-only one). ``curves["return"]``: return vs physical steps.

    python -m benchmarks.construction_delay [--quick|--full] [--device cpu|gpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import dtrl_jax as dt
from benchmarks import _common, harness
from benchmarks.harness import NEVER, Arm
from dtrl_jax.twin import stack_params

NAME = "construction_delay"

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"seeds": 1, "envs": 4, "log_every": 400, "budget": 3, "decay": 400, "wait": [0, 800], "builds": [800], "starts": [0.0],
                 "sigmas": [300.0]},
    "quick": {"seeds": 4, "envs": 16, "log_every": 4_000, "budget": 16, "decay": 16_000, "wait": [0, 16_000, 32_000],
                  "builds": [32_000], "starts": [0.0, 0.5], "sigmas": [300.0, 3000.0]},
    "default": {"seeds": 4, "envs": 16, "log_every": 8_000, "budget": 20, "decay": 20_000,
                    "wait": [0, 8_000, 16_000, 32_000, 64_000], "builds": [16_000, 64_000], "starts": [0.0, 0.25, 0.5],
                    "sigmas": [300.0, 3000.0]},
    "full": {"seeds": 8, "envs": 16, "log_every": 8_000, "budget": 40, "decay": 20_000,
                 "wait": [0, 8_000, 16_000, 32_000, 64_000, 128_000], "builds": [16_000, 64_000, 128_000],
                 "starts": [0.0, 0.125, 0.25, 0.5, 0.75], "sigmas": [100.0, 300.0, 1000.0, 3000.0]},
}


def make_arms(base, params, st) -> list[Arm]:
    exact = stack_params([params] * base.twin.num_domains)
    tw = base.twin
    arms = [Arm("physical only", base.replace(twin=tw.replace(ready_after=NEVER)), exact,
                info={"kind": "physical", "level": 0.0})]
    for w in st["wait"]:
        arms.append(Arm(f"wait: perfect twin from {w}", base.replace(twin=tw.replace(ready_after=int(w))), exact,
                        info={"kind": "wait", "level": float(w)}))
    for build in st["builds"]:
        for frac in st["starts"]:
            for sigma in st["sigmas"]:
                t0 = round(frac * build)
                cfg = base.replace(twin=tw.replace(ready_after=t0, build_steps=int(build), build_noise_std=sigma))
                arms.append(Arm(f"early: start {t0} on twin built by {build}, sigma0 {sigma:g}", cfg, exact,
                                info={"kind": "early", "level": float(t0), "build": int(build),
                                      "sigma0": float(sigma), "start": t0}))
    return arms


def run(st: dict, key) -> tuple[dict, dict, dict]:
    """All arms x seeds in one program; the config, summary and curves of the study."""
    env, params = dt.make("AccessPointSelection-v0")
    le, budget = st["log_every"], st["budget"]
    base = dt.QLearningConfig(
        total_timesteps=budget * le, log_every=le, num_envs=st["envs"], learning_rate=0.1, gamma=0.9,
        epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=st["decay"],
        twin=dt.TwinConfig(num_domains=5, action_trials=5),
    )
    arms = make_arms(base, params, st)
    _common.log(f"AccessPointSelection-v0, DT-QL n=5: {len(arms)} arms x {st['seeds']} seeds")
    t0 = time.perf_counter()
    runs = harness.run_phased(arms, env, params, seeds=st["seeds"], phases=[budget], key=key)
    wall = time.perf_counter() - t0
    points = {a.name: {**a.info, **harness.returns_summary(runs[a.name])} for a in arms}
    phys = points["physical only"]["final_return"]["mean"]
    perfect = next(p for p in points.values() if p["kind"] == "wait" and p["level"] == 0)["final_return"]["mean"]
    targets = {"physical_final": phys, "midway": 0.5 * (phys + perfect)}
    steps = le * np.arange(1, budget + 1)
    for a in arms:
        for name, target in targets.items():
            hit = harness.reach_steps(steps, runs[a.name]["episode_return"], target, smooth=3)
            points[a.name][f"steps_to_{name}"] = harness.per_seed(hit)
            points[a.name][f"reached_{name}"] = float(np.mean(np.isfinite(hit)))
    config = {"env": "AccessPointSelection-v0", "agent": "DT-QL, action_trials=5, num_domains=5",
              "num_states": int(env.num_states(params)), "log_every": le, "physical_budget": budget * le,
              "wall_s": wall, "twin_replay": "tabular: each twin transition is one Q update when made (no replay)"}
    summary = {"targets": targets, "points": points}
    curves = {"return": harness.panel(runs, y="episode_return", x="physical_steps", ylabel="mean physical episode return")}
    return config, summary, curves


def _diff(a: dict, b: dict, seeds: int) -> int:
    """+1 / -1 when ``a``'s mean return over the run is 2 standard errors above / below ``b``'s, else 0."""
    se = np.sqrt((a["mean_return"]["std"] ** 2 + b["mean_return"]["std"] ** 2) / max(seeds, 1))
    d = a["mean_return"]["mean"] - b["mean_return"]["mean"]
    return int(np.sign(d)) if abs(d) > 2 * se else 0


def conclusion(summary: dict, seeds: int) -> str:
    fmt = _common.fmt1
    pts = summary["points"]
    phys = pts["physical only"]
    waits = sorted([p for p in pts.values() if p["kind"] == "wait"], key=lambda p: p["level"])

    def s2t(p):
        v = p["steps_to_midway"]["mean"]
        return "never" if not np.isfinite(v) else f"{v:.0f}"

    def fm(p):
        return f"{fmt(p['final_return']['mean'])} / {fmt(p['mean_return']['mean'])} / {s2t(p)}"

    parts = [f"physical only: final {fmt(phys['final_return']['mean'])}, mean over run {fmt(phys['mean_return']['mean'])}"]
    parts.append("wait for a perfect twin (ready_after: final / mean over run / steps to midway target "
                 f"{summary['targets']['midway']:.1f}): " + ", ".join(f"{p['level']:.0f}: {fm(p)}" for p in waits))
    for build in sorted({p["build"] for p in pts.values() if p["kind"] == "early"}):
        wait = next((p for p in waits if p["level"] == build), None)
        early = [p for p in pts.values() if p["kind"] == "early" and p["build"] == build]
        txt = ", ".join(f"start {p['start']} sigma0 {p['sigma0']:g}: {fm(p)}" for p in early)
        ref = f" vs waiting {fm(wait)}" if wait else ""
        verdict = ""
        if wait:
            def show(ps):
                return ", ".join(f"(start {p['start']}, sigma0 {p['sigma0']:g})" for p in ps) or "none"

            pays = [p for p in early if _diff(p, wait, seeds) > 0]
            hurts = [p for p in early if _diff(p, wait, seeds) < 0]
            verdict = (f" -> mean return over the run significantly above waiting (2 standard errors) for "
                       f"{show(pays)}; below for {show(hurts)}")
        parts.append(f"twin built by {build}: {txt}{ref}{verdict}")
    return "; ".join(parts)


def plot(doc: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = doc["summary"]
    pts = summary["points"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    phys = pts["physical only"]
    waits = sorted([p for p in pts.values() if p["kind"] == "wait"], key=lambda p: p["level"])
    ax = axes[0]
    ax.errorbar([p["level"] for p in waits], [p["final_return"]["mean"] for p in waits],
                [p["final_return"]["std"] for p in waits], marker="o", capsize=3, label="final return (wait)")
    ax.plot([p["level"] for p in waits], [p["mean_return"]["mean"] for p in waits], marker="s",
            label="mean return over run (wait)")
    ax.axhline(phys["final_return"]["mean"], color="k", ls="--", label="physical only, final")
    ax.axhline(phys["mean_return"]["mean"], color="gray", ls=":", label="physical only, mean over run")
    ax.set_xlabel("ready_after (physical steps)")
    ax.set_ylabel("physical episode return")
    ax.legend(fontsize=7)
    ax.set_title("perfect twin ready after a delay")
    ax = axes[1]
    ax.plot([p["level"] for p in waits], [p["steps_to_midway"]["mean"] for p in waits], marker="o", label="wait")
    early = [p for p in pts.values() if p["kind"] == "early"]
    for build in sorted({p["build"] for p in early}):
        for sigma in sorted({p["sigma0"] for p in early}):
            sel = sorted([p for p in early if p["build"] == build and p["sigma0"] == sigma], key=lambda p: p["start"])
            ax.plot([p["start"] for p in sel], [p["steps_to_midway"]["mean"] for p in sel], marker="^", ls="--",
                    label=f"early, built by {build}, sigma0 {sigma:g}")
    if np.isfinite(phys["steps_to_midway"]["mean"]):
        ax.axhline(phys["steps_to_midway"]["mean"], color="k", ls="--", label="physical only")
    ax.set_xlabel("twin switched on at (physical steps)")
    ax.set_ylabel(f"physical steps to return {summary['targets']['midway']:.1f}")
    ax.legend(fontsize=6)
    names = list(pts)
    shown = [names[0]] + [n for n in names if pts[n]["kind"] == "wait"][:1] + \
        [n for n in names if pts[n]["kind"] == "wait"][-1:] + [n for n in names if pts[n]["kind"] == "early"][:4]
    panel = doc["curves"]["return"]
    harness.draw_panel(axes[2], {**panel, "series": {n: panel["series"][n] for n in shown}}, band=False)
    axes[2].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = _common.add_study_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--replot", action="store_true",
                        help="recompute the conclusion and PNG from the existing JSON (no training)")
    args = parser.parse_args(argv)
    if args.replot:
        path = _common.results_dir(args.out) / f"{NAME}.json"
        doc = harness.load(path)
        doc["summary"]["conclusion"] = conclusion(doc["summary"], doc["config"]["seeds"])
        _common.write_json(NAME, doc, args.out)
        plot(doc, path.with_suffix(".png"))
        _common.log(doc["summary"]["conclusion"])
        return doc
    mode = _common.study_mode(args)
    st = dict(SETTINGS[mode])
    device = _common.select_device(args.device)
    with jax.default_device(device):
        case, summary, curves = run(st, jax.random.key(args.seed))
    config = {"device": _common.describe_device(device), "seed": args.seed, **st, **case}
    summary["conclusion"] = conclusion(summary, st["seeds"])
    _common.log(summary["conclusion"])
    doc = {"config": config, "summary": summary, "curves": curves}
    harness.write(NAME, mode=mode, **doc, out=args.out, plot=lambda png: plot(doc, png))
    return doc


if __name__ == "__main__":
    main()

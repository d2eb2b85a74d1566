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

Reported per arm: final physical return, mean return over the run, and physical steps until the
3-interval running mean reaches a target (the physical-only agent's final return, and a higher
one: the mean of the perfect twin's final return and the physical-only one).

    python -m benchmarks.construction_delay [--quick|--full] [--device cpu|gpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import dtrl_jax as dt
from benchmarks import _common
from benchmarks.twin_noise import NEVER, Arm, broadcast_params, fmt, run_arms, steps_to_target, summarize
from dtrl_jax import population as pop

NAME = "construction_delay"

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": dict(seeds=1, envs=4, log_every=400, budget=3, decay=400, wait=[0, 800], builds=[800], starts=[0.0],
                 sigmas=[300.0]),
    "quick": dict(seeds=4, envs=16, log_every=4_000, budget=16, decay=16_000, wait=[0, 16_000, 32_000],
                  builds=[32_000], starts=[0.0, 0.5], sigmas=[300.0, 3000.0]),
    "default": dict(seeds=4, envs=16, log_every=8_000, budget=20, decay=20_000,
                    wait=[0, 8_000, 16_000, 32_000, 64_000], builds=[16_000, 64_000], starts=[0.0, 0.25, 0.5],
                    sigmas=[300.0, 3000.0]),
    "full": dict(seeds=8, envs=16, log_every=8_000, budget=40, decay=20_000,
                 wait=[0, 8_000, 16_000, 32_000, 64_000, 128_000], builds=[16_000, 64_000, 128_000],
                 starts=[0.0, 0.125, 0.25, 0.5, 0.75], sigmas=[100.0, 300.0, 1000.0, 3000.0]),
}


def make_arms(base, params, st) -> list[Arm]:
    exact = broadcast_params(params, base.twin.num_domains)
    tw = base.twin
    arms = [Arm("physical only", "physical", 0.0, base.replace(twin=tw.replace(ready_after=NEVER)), exact)]
    for w in st["wait"]:
        arms.append(Arm(f"wait: perfect twin from {w}", "wait", float(w),
                        base.replace(twin=tw.replace(ready_after=int(w))), exact))
    for build in st["builds"]:
        for frac in st["starts"]:
            for sigma in st["sigmas"]:
                t0 = int(round(frac * build))
                cfg = base.replace(twin=tw.replace(ready_after=t0, build_steps=int(build), build_noise_std=sigma))
                arms.append(Arm(f"early: start {t0} on twin built by {build}, sigma0 {sigma:g}", "early", float(t0),
                                cfg, exact, info=dict(build=int(build), sigma0=float(sigma), start=t0)))
    return arms


def run(st: dict, key, log=_common.log) -> dict:
    env, params = dt.make("AccessPointSelection-v0")
    le, budget = st["log_every"], st["budget"]
    base = dt.QLearningConfig(
        total_timesteps=budget * le, log_every=le, num_envs=st["envs"], learning_rate=0.1, gamma=0.9,
        epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=st["decay"],
        twin=dt.TwinConfig(num_domains=5, action_trials=5),
    )
    arms = make_arms(base, params, st)
    log(f"AccessPointSelection-v0, DT-QL n=5: {len(arms)} arms x {st['seeds']} seeds")
    m = run_arms(env, params, pop.Member("ap", base), arms, seeds=st["seeds"], phases=[budget], chunk=budget, key=key,
                 log=log)
    tail = max(1, budget // 4)
    points = [summarize(a, m, i, budget, le, tail) for i, a in enumerate(arms)]
    steps = le * np.arange(1, budget + 1)
    phys = points[0]["final_return_mean"]
    perfect = next(p for p in points if p["kind"] == "wait" and p["level"] == 0)["final_return_mean"]
    targets = {"physical_final": phys, "midway": 0.5 * (phys + perfect)}
    for i, (a, p) in enumerate(zip(arms, points)):
        for name, target in targets.items():
            hit = steps_to_target(m["episode_return"][i], steps, target)
            p[f"steps_to_{name}"] = float(np.nanmean(hit)) if np.any(np.isfinite(hit)) else None
            p[f"reached_{name}"] = float(np.mean(np.isfinite(hit)))
    return dict(env="AccessPointSelection-v0", agent="DT-QL, action_trials=5, num_domains=5", log_every=le,
                seeds=st["seeds"],
                physical_budget=budget * le, targets=targets, wall_s=m["wall_s"], points=points)


def _diff(a: dict, b: dict, seeds: int) -> int:
    """+1 / -1 when ``a``'s mean return over the run is 2 standard errors above / below ``b``'s, else 0."""
    se = np.sqrt((a["mean_return_std"] ** 2 + b["mean_return_std"] ** 2) / max(seeds, 1))
    d = a["mean_return_mean"] - b["mean_return_mean"]
    return int(np.sign(d)) if abs(d) > 2 * se else 0


def conclusion(res: dict) -> str:
    pts = res["points"]
    phys = pts[0]
    waits = sorted([p for p in pts if p["kind"] == "wait"], key=lambda p: p["level"])

    def s2t(p):
        v = p.get("steps_to_midway")
        return "never" if v is None else f"{v:.0f}"

    parts = [f"physical only: final {fmt(phys['final_return_mean'])}, mean over run {fmt(phys['mean_return_mean'])}"]
    parts.append("wait for a perfect twin (ready_after: final / mean over run / steps to midway target "
                 f"{res['targets']['midway']:.1f}): " + ", ".join(
                     f"{p['level']:.0f}: {fmt(p['final_return_mean'])} / {fmt(p['mean_return_mean'])} / {s2t(p)}"
                     for p in waits))
    for build in sorted({p["build"] for p in pts if p["kind"] == "early"}):
        wait = next((p for p in waits if p["level"] == build), None)
        early = [p for p in pts if p["kind"] == "early" and p["build"] == build]
        txt = ", ".join(f"start {p['start']} sigma0 {p['sigma0']:g}: {fmt(p['final_return_mean'])} / "
                        f"{fmt(p['mean_return_mean'])} / {s2t(p)}" for p in early)
        ref = (f" vs waiting {fmt(wait['final_return_mean'])} / {fmt(wait['mean_return_mean'])} / {s2t(wait)}"
               if wait else "")
        verdict = ""
        if wait:
            pays = [p for p in early if _diff(p, wait, res["seeds"]) > 0]
            hurts = [p for p in early if _diff(p, wait, res["seeds"]) < 0]
            show = lambda ps: ", ".join(f"(start {p['start']}, sigma0 {p['sigma0']:g})" for p in ps) or "none"  # noqa: E731
            verdict = (f" -> mean return over the run significantly above waiting (2 standard errors) for "
                       f"{show(pays)}; below for {show(hurts)}")
        parts.append(f"twin built by {build}: {txt}{ref}{verdict}")
    return "; ".join(parts)


def plot(res: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = res["points"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    phys = pts[0]
    waits = sorted([p for p in pts if p["kind"] == "wait"], key=lambda p: p["level"])
    ax = axes[0]
    ax.errorbar([p["level"] for p in waits], [p["final_return_mean"] for p in waits],
                [p["final_return_std"] for p in waits], marker="o", capsize=3, label="final return (wait)")
    ax.plot([p["level"] for p in waits], [p["mean_return_mean"] for p in waits], marker="s",
            label="mean return over run (wait)")
    ax.axhline(phys["final_return_mean"], color="k", ls="--", label="physical only, final")
    ax.axhline(phys["mean_return_mean"], color="gray", ls=":", label="physical only, mean over run")
    ax.set_xlabel("ready_after (physical steps)")
    ax.set_ylabel("physical episode return")
    ax.legend(fontsize=7)
    ax.set_title("perfect twin ready after a delay")
    ax = axes[1]
    vals = [(p["steps_to_midway"] if p["steps_to_midway"] is not None else np.nan) for p in waits]
    ax.plot([p["level"] for p in waits], vals, marker="o", label="wait")
    for build in sorted({p["build"] for p in pts if p["kind"] == "early"}):
        for sigma in sorted({p["sigma0"] for p in pts if p["kind"] == "early"}):
            sel = sorted([p for p in pts if p["kind"] == "early" and p["build"] == build and p["sigma0"] == sigma],
                         key=lambda p: p["start"])
            ax.plot([p["start"] for p in sel],
                    [(p["steps_to_midway"] if p["steps_to_midway"] is not None else np.nan) for p in sel],
                    marker="^", ls="--", label=f"early, built by {build}, sigma0 {sigma:g}")
    if phys["steps_to_midway"] is not None:
        ax.axhline(phys["steps_to_midway"], color="k", ls="--", label="physical only")
    ax.set_xlabel("twin switched on at (physical steps)")
    ax.set_ylabel(f"physical steps to return {res['targets']['midway']:.1f}")
    ax.legend(fontsize=6)
    ax = axes[2]
    for p in [phys] + waits[:1] + waits[-1:] + [p for p in pts if p["kind"] == "early"][:4]:
        c = p["curve"]
        ax.plot(c["physical_steps"], c["mean"], label=p["label"], lw=1.3)
    ax.set_xlabel("physical steps")
    ax.set_ylabel("mean physical episode return")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_args(parser)
    parser.add_argument("--tiny", action="store_true", help="smoke-test size (seconds of compute, nothing learned)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replot", action="store_true",
                        help="recompute the conclusion and PNG from the existing JSON (no training)")
    args = parser.parse_args(argv)
    if args.replot:
        path = _common.results_dir(args.out) / f"{NAME}.json"
        doc = json.loads(path.read_text())
        doc["ap"].setdefault("seeds", doc["config"]["seeds"])
        doc["conclusion"] = conclusion(doc["ap"])
        path.write_text(json.dumps(doc, indent=2) + "\n")
        plot(doc["ap"], path.with_suffix(".png"))
        _common.log(doc["conclusion"])
        return doc
    mode = "tiny" if args.tiny else _common.run_mode(args)
    st = dict(SETTINGS[mode])
    device = _common.select_device(args.device)
    t0 = time.perf_counter()
    with jax.default_device(device):
        res = run(st, jax.random.key(args.seed))
    doc = {"config": {"mode": mode, "device": _common.describe_device(device), **st}, "ap": res,
           "wall_s": time.perf_counter() - t0}
    doc["conclusion"] = conclusion(res)
    _common.log(doc["conclusion"])
    path = _common.write_json(NAME, doc, args.out)
    plot(res, path.with_suffix(".png"))
    _common.log(f"wrote {path} and {path.with_suffix('.png')} ({doc['wall_s']:.0f} s)")
    return doc


if __name__ == "__main__":
    main()

"""Scenario adaptation: train across scenarios in the twin's domains, then survive a physical change.

``AccessPointSelection-v0`` with feature observations (the features encode each AP's coverage
relative to the vehicle, so one network can serve many layouts) and DT-DQN with n = 5 action
trials. A *scenario* is an ``EnvParams``: AP positions and radii and task sizes (the load) scaled
by ``1 + spread * N(0, 1)`` (floored at 10 %, positions clipped to the road). The physical scenario
is the default layout for the first half of the run; then it changes to a fresh draw (one per
seed, never seen in training), by continuing the same runner state with ``make_train`` on the new
params (``ScenarioTrainer``: one compiled program for every arm and seed). Arms:

* ``physical only``: plain DQN (the twin never switches on);
* ``DT on the physical scenario``: the trial domains twin the current physical scenario (and are
  rebuilt on the new one at the change, instantly: the most favourable case for this arm);
* ``DT on a scenario distribution (spread s)``: the trial domains run scenarios drawn from the
  distribution, redrawn every ``redraw`` logging intervals (a ``twin_params`` stack per chunk).

Reported: return before the change, in the first interval after it (epsilon is at its floor, so
this is the transferred policy), the drop, the recovery time (physical steps after the change
until the 2-interval running mean reaches 95 % of the best arm's final return in that seed's new
scenario, and 95 % of the arm's own), and the final return in the new scenario.

    python -m benchmarks.scenario_adaptation [--quick|--full] [--device cpu|gpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import dtrl_jax as dt
from benchmarks import _common
from benchmarks.twin_noise import NEVER, Arm, broadcast_params, fmt, quiet_nan, run_arms, smooth
from dtrl_jax import population as pop
from dtrl_jax.twin import perturb_params

NAME = "scenario_adaptation"
FIELDS = ("ap_position_m", "ap_radius_m", "task_size_mbit")

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": dict(seeds=1, envs=2, log_every=200, before=2, after=2, redraw=1, decay=200, learning_starts=100,
                 spreads=[0.3], change_spread=0.3, hidden=(16,)),
    "quick": dict(seeds=4, envs=10, log_every=2_000, before=10, after=10, redraw=2, decay=10_000,
                  learning_starts=1_000, spreads=[0.3], change_spread=0.3, hidden=(64, 64)),
    "default": dict(seeds=6, envs=10, log_every=3_000, before=20, after=20, redraw=2, decay=20_000,
                    learning_starts=1_000, spreads=[0.1, 0.3], change_spread=0.3, hidden=(64, 64)),
    "full": dict(seeds=8, envs=10, log_every=5_000, before=40, after=40, redraw=2, decay=50_000,
                 learning_starts=2_000, spreads=[0.1, 0.3, 0.5], change_spread=0.3, hidden=(120, 84)),
}


def draw_scenarios(key, params, num: int, spread: float):
    """``num`` scenarios: ``FIELDS`` scaled by ``1 + spread * N(0, 1)``, floored at 10 %, positions on the road."""
    stack = perturb_params(key, params, num, spread, fields=FIELDS, min_scale=0.1)
    return stack.replace(ap_position_m=jnp.clip(stack.ap_position_m, 0.0, jnp.asarray(params.road_length_m)))


def take(stack, i):
    return jax.tree.map(lambda x: x[i], stack)


@quiet_nan
def run(st: dict, key, log=_common.log) -> dict:
    env, params = dt.make("AccessPointSelection-v0", observation="features")
    le, before, after, redraw = st["log_every"], st["before"], st["after"], st["redraw"]
    domains = 5
    base = dt.DQNConfig(
        total_timesteps=(before + after) * le, log_every=le, num_envs=st["envs"], learning_rate=1e-3, gamma=0.9,
        learning_starts=st["learning_starts"], buffer_size=10_000, epsilon_start=1.0, epsilon_end=0.01,
        epsilon_decay_steps=st["decay"], hidden_sizes=tuple(st["hidden"]),
        twin=dt.TwinConfig(num_domains=domains, action_trials=5),
    )
    tw = base.twin
    n_chunks = (before + after) // redraw
    change_chunk = before // redraw
    seeds = st["seeds"]
    # The new physical scenario of each seed: a draw never used in training.
    new_phys = draw_scenarios(jax.random.fold_in(key, 999), params, seeds, st["change_spread"])
    arms = [Arm("physical only", "physical", 0.0, base.replace(twin=tw.replace(ready_after=NEVER)),
                broadcast_params(params, domains)),
            Arm("DT on the physical scenario", "physical_twin", 0.0, base, broadcast_params(params, domains))]
    for i, spread in enumerate(st["spreads"]):
        twins = tuple(draw_scenarios(jax.random.fold_in(jax.random.fold_in(key, 100 + i), c), params, domains, spread)
                      for c in range(n_chunks))
        arms.append(Arm(f"DT on a scenario distribution (spread {spread:g})", "distribution", spread, base,
                        twins[0], phase_twin=twins))
    # The physical scenario after the change differs per seed, so every (arm, seed) is its own row.
    rows: list[Arm] = []
    for arm in arms:
        for s in range(seeds):
            new = take(new_phys, s)
            phase_params = tuple(params if c < change_chunk else new for c in range(n_chunks))
            if arm.kind == "physical_twin":
                phase_twin = tuple(broadcast_params(p, domains) for p in phase_params)
            elif arm.kind == "distribution":
                phase_twin = arm.phase_twin
            else:
                phase_twin = ()
            rows.append(Arm(f"{arm.label}#{s}", arm.kind, arm.level, arm.config, arm.twin_params,
                            phase_params=phase_params, phase_twin=phase_twin))
    log(f"AccessPointSelection-v0 (features), DT-DQN n=5: {len(arms)} arms x {seeds} seeds, change after "
        f"{before * le} physical steps")
    m = run_arms(env, params, pop.Member("ap", base), rows, seeds=1, phases=[redraw] * n_chunks, chunk=redraw,
                 key=key, log=log)
    ret = m["episode_return"][:, 0, :].reshape(len(arms), seeds, -1)  # [arms, seeds, intervals]
    steps_after = le * np.arange(1, after + 1)
    tail = max(1, after // 4)
    with np.errstate(invalid="ignore"):
        finals = np.nanmean(ret[:, :, -tail:], axis=2)  # [arms, seeds]
    best_final = np.nanmax(finals, axis=0)  # [seeds]: the best arm's final return in each seed's new scenario
    points = []
    for a, arm in enumerate(arms):
        r = ret[a]
        sm = smooth(r[:, before:], 2)
        with np.errstate(invalid="ignore"):
            pre = np.nanmean(r[:, before - 2 : before], axis=1)
            first = r[:, before]

        def recovery(target_per_seed):
            out = []
            for s in range(seeds):
                hit = np.nonzero(sm[s] >= target_per_seed[s])[0]
                out.append(float(steps_after[hit[0]]) if hit.size else np.nan)
            return np.asarray(out)

        rec_common = recovery(0.95 * best_final)
        rec_own = recovery(0.95 * finals[a])
        points.append(dict(
            label=arm.label, kind=arm.kind, spread=arm.level,
            before_change_mean=float(np.nanmean(pre)), before_change_std=float(np.nanstd(pre)),
            right_after_mean=float(np.nanmean(first)), right_after_std=float(np.nanstd(first)),
            drop_mean=float(np.nanmean(pre - first)),
            right_after_minus_physical_mean=float(np.nanmean(first - ret[0, :, before])),
            right_after_minus_physical_std=float(np.nanstd(first - ret[0, :, before])),
            final_after_mean=float(np.nanmean(finals[a])), final_after_std=float(np.nanstd(finals[a])),
            recovery_steps_common_mean=float(np.nanmean(rec_common)) if np.any(np.isfinite(rec_common)) else None,
            recovered_common_fraction=float(np.mean(np.isfinite(rec_common))),
            recovery_steps_own_mean=float(np.nanmean(rec_own)) if np.any(np.isfinite(rec_own)) else None,
            recovery_steps_common_per_seed=rec_common.tolist(), recovery_steps_own_per_seed=rec_own.tolist(),
            curve=dict(physical_steps=(le * np.arange(1, before + after + 1)).tolist(),
                       mean=np.nanmean(r, axis=0).tolist(), std=np.nanstd(r, axis=0).tolist(),
                       per_seed=r.tolist()),
        ))
    return dict(env="AccessPointSelection-v0 (features)", agent="DT-DQN, action_trials=5, num_domains=5",
                scenario_fields=list(FIELDS), change_at=before * le, log_every=le, redraw_every=redraw * le,
                recovery_target_per_seed=(0.95 * best_final).tolist(), wall_s=m["wall_s"], points=points)


def conclusion(res: dict) -> str:
    parts = []
    for p in res["points"]:
        rc = p["recovery_steps_common_mean"]
        parts.append(
            f"{p['label']}: before {fmt(p['before_change_mean'])}, right after {fmt(p['right_after_mean'])} "
            f"(drop {fmt(p['drop_mean'])}; paired vs physical only {fmt(p['right_after_minus_physical_mean'])} +- "
            f"{fmt(p['right_after_minus_physical_std'])}), recovery to 95 % of the best arm's final return in {'never' if rc is None else f'{rc:.0f}'} "
            f"steps ({p['recovered_common_fraction']:.0%} of seeds), to 95 % of its own in "
            f"{fmt(p['recovery_steps_own_mean'])}, final {fmt(p['final_after_mean'])}")
    return "; ".join(parts)


def plot(res: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    ax = axes[0]
    for p in res["points"]:
        c = p["curve"]
        mean, std = np.asarray(c["mean"]), np.asarray(c["std"])
        (line,) = ax.plot(c["physical_steps"], mean, label=p["label"], lw=1.4)
        ax.fill_between(c["physical_steps"], mean - std, mean + std, color=line.get_color(), alpha=0.15, lw=0)
    ax.axvline(res["change_at"], color="k", ls=":", label="physical scenario changes")
    ax.set_xlabel("physical steps")
    ax.set_ylabel("mean physical episode return")
    ax.legend(fontsize=7)
    ax = axes[1]
    labels = [p["label"].replace("DT on a scenario distribution", "DT distribution") for p in res["points"]]
    x = np.arange(len(labels))
    ax.bar(x - 0.25, [p["before_change_mean"] for p in res["points"]], 0.25, label="before change")
    ax.bar(x, [p["right_after_mean"] for p in res["points"]], 0.25, yerr=[p["right_after_std"] for p in res["points"]],
           label="right after change")
    ax.bar(x + 0.25, [p["final_after_mean"] for p in res["points"]], 0.25, label="final, new scenario")
    ax.set_xticks(x, labels, fontsize=7, rotation=10)
    ax.set_ylabel("physical episode return")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_args(parser)
    parser.add_argument("--tiny", action="store_true", help="smoke-test size (seconds of compute, nothing learned)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
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

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
scenario, and 95 % of the arm's own), and the final return in the new scenario; per seed in
``summary["points"]`` (harness schema; every arm sees the same seed keys, so "paired vs physical
only" is a per-seed difference). ``curves["return"]``: return vs physical steps.

    python -m benchmarks.scenario_adaptation [--quick|--full] [--device cpu|gpu] [--out DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import dtrl_jax as dt
from benchmarks import _common, harness
from benchmarks.harness import NEVER, Arm
from dtrl_jax import convergence
from dtrl_jax.twin import perturb_params, stack_params

NAME = "scenario_adaptation"
FIELDS = ("ap_position_m", "ap_radius_m", "task_size_mbit")

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"seeds": 1, "envs": 2, "log_every": 200, "before": 2, "after": 2, "redraw": 1, "decay": 200, "learning_starts": 100,
                 "spreads": [0.3], "change_spread": 0.3, "hidden": (16,)},
    "quick": {"seeds": 4, "envs": 10, "log_every": 2_000, "before": 10, "after": 10, "redraw": 2, "decay": 10_000,
                  "learning_starts": 1_000, "spreads": [0.3], "change_spread": 0.3, "hidden": (64, 64)},
    "default": {"seeds": 6, "envs": 10, "log_every": 3_000, "before": 20, "after": 20, "redraw": 2, "decay": 20_000,
                    "learning_starts": 1_000, "spreads": [0.1, 0.3], "change_spread": 0.3, "hidden": (64, 64)},
    "full": {"seeds": 8, "envs": 10, "log_every": 5_000, "before": 40, "after": 40, "redraw": 2, "decay": 50_000,
                 "learning_starts": 2_000, "spreads": [0.1, 0.3, 0.5], "change_spread": 0.3, "hidden": (120, 84)},
}


def draw_scenarios(key, params, num: int, spread: float):
    """``num`` scenarios: ``FIELDS`` scaled by ``1 + spread * N(0, 1)``, floored at 10 %, positions on the road."""
    stack = perturb_params(key, params, num, spread, fields=FIELDS, min_scale=0.1)
    return stack.replace(ap_position_m=jnp.clip(stack.ap_position_m, 0.0, jnp.asarray(params.road_length_m)))


def repeat(tree, n: int):
    """``n`` copies of a params pytree stacked on a new leading axis."""
    return stack_params([tree] * n)


def make_arms(base, params, st, key) -> list[Arm]:
    """The arms; the physical scenario after the change is a fresh draw per seed (``per_seed_phases``)."""
    le, before, after, redraw, seeds = st["log_every"], st["before"], st["after"], st["redraw"], st["seeds"]
    domains = base.twin.num_domains
    n_chunks = (before + after) // redraw
    change_chunk = before // redraw
    new_phys = draw_scenarios(jax.random.fold_in(key, 999), params, seeds, st["change_spread"])  # [seeds]
    phase_params = tuple(repeat(params, seeds) if c < change_chunk else new_phys for c in range(n_chunks))
    exact = repeat(params, domains)
    twin_of_phys = tuple(jax.vmap(lambda p: repeat(p, domains))(pp) for pp in phase_params)  # [seeds, domains]
    arms = [Arm("physical only", base.replace(twin=base.twin.replace(ready_after=NEVER)), exact,
                phase_params=phase_params, per_seed_phases=True, info={"kind": "physical", "spread": 0.0}),
            Arm("DT on the physical scenario", base, exact, phase_params=phase_params, phase_twin=twin_of_phys,
                per_seed_phases=True, info={"kind": "physical_twin", "spread": 0.0})]
    for i, spread in enumerate(st["spreads"]):
        twins = tuple(repeat(draw_scenarios(jax.random.fold_in(jax.random.fold_in(key, 100 + i), c), params, domains,
                                            spread), seeds) for c in range(n_chunks))
        arms.append(Arm(f"DT on a scenario distribution (spread {spread:g})", base, exact, phase_params=phase_params,
                        phase_twin=twins, per_seed_phases=True, info={"kind": "distribution", "spread": spread}))
    _common.log(f"AccessPointSelection-v0 (features), DT-DQN n=5: {len(arms)} arms x {seeds} seeds, change after "
                f"{before * le} physical steps")
    return arms


def run(st: dict, key) -> tuple[dict, dict, dict]:
    env, params = dt.make("AccessPointSelection-v0", observation="features")
    le, before, after, redraw = st["log_every"], st["before"], st["after"], st["redraw"]
    base = dt.DQNConfig(
        total_timesteps=(before + after) * le, log_every=le, num_envs=st["envs"], learning_rate=1e-3, gamma=0.9,
        learning_starts=st["learning_starts"], buffer_size=10_000, epsilon_start=1.0, epsilon_end=0.01,
        epsilon_decay_steps=st["decay"], hidden_sizes=tuple(st["hidden"]),
        twin=dt.TwinConfig(num_domains=5, action_trials=5),
    )
    arms = make_arms(base, params, st, key)
    n_chunks = (before + after) // redraw
    runs = harness.run_phased(arms, env, params, seeds=st["seeds"], phases=[redraw] * n_chunks, chunk=redraw, key=key)
    ret = {a.name: np.asarray(runs[a.name]["episode_return"], np.float64) for a in arms}  # [seeds, intervals]
    steps_after = le * np.arange(1, after + 1)
    finals = {n: convergence.plateau(r[:, before:], 0.25) for n, r in ret.items()}
    best_final = np.nanmax(np.stack(list(finals.values())), axis=0)  # [seeds]: the best arm in each new scenario
    phys_first = ret["physical only"][:, before]
    points = {}
    for a in arms:
        r = ret[a.name]
        pre = convergence.plateau(r[:, before - 2: before], 1.0)
        first = r[:, before]
        rec_common = harness.reach_steps(steps_after, r[:, before:], 0.95 * best_final, smooth=2)
        rec_own = harness.reach_steps(steps_after, r[:, before:], 0.95 * finals[a.name], smooth=2)
        points[a.name] = {
            **a.info,
            "before_change": harness.per_seed(pre), "right_after": harness.per_seed(first),
            "drop": harness.per_seed(pre - first),
            "right_after_minus_physical": harness.paired(first, phys_first),
            "final_after": harness.per_seed(finals[a.name]),
            "recovery_steps_common": harness.per_seed(rec_common),
            "recovered_common_fraction": float(np.mean(np.isfinite(rec_common))),
            "recovery_steps_own": harness.per_seed(rec_own),
        }
    config = {"env": "AccessPointSelection-v0 (features)", "agent": "DT-DQN, action_trials=5, num_domains=5",
              "scenario_fields": list(FIELDS), "change_at": before * le, "log_every": le, "redraw_every": redraw * le,
              "wall_s": runs[arms[0].name]["_timing"]["run_s"],
              "twin_replay": {"twin_buffer_size": base.twin.twin_buffer_size,
                              "twin_buffer_per_domain": base.buffer_size,
                              "note": "default: buffer_size per trial domain (the physical buffer's window)"}}
    summary = {"recovery_target_per_seed": (0.95 * best_final).tolist(), "points": points}
    curves = {"return": harness.panel(runs, y="episode_return", x="physical_steps",
                                      ylabel="mean physical episode return")}
    return config, summary, curves


def conclusion(summary: dict) -> str:
    fmt = _common.fmt1
    parts = []
    for name, p in summary["points"].items():
        rc = p["recovery_steps_common"]["mean"]
        parts.append(
            f"{name}: before {fmt(p['before_change']['mean'])}, right after {fmt(p['right_after']['mean'])} "
            f"(drop {fmt(p['drop']['mean'])}; paired vs physical only {fmt(p['right_after_minus_physical']['mean'])} +- "
            f"{fmt(p['right_after_minus_physical']['std'])}), recovery to 95 % of the best arm's final return in "
            f"{'never' if not np.isfinite(rc) else f'{rc:.0f}'} steps ({p['recovered_common_fraction']:.0%} of seeds), "
            f"to 95 % of its own in {fmt(p['recovery_steps_own']['mean'])}, final {fmt(p['final_after']['mean'])}")
    return "; ".join(parts)


def plot(doc: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = doc["summary"]["points"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    harness.draw_panel(axes[0], doc["curves"]["return"])
    axes[0].axvline(doc["config"]["change_at"], color="k", ls=":", label="physical scenario changes")
    axes[0].legend(fontsize=7)
    ax = axes[1]
    labels = [n.replace("DT on a scenario distribution", "DT distribution") for n in pts]
    x = np.arange(len(labels))
    vals = list(pts.values())
    ax.bar(x - 0.25, [p["before_change"]["mean"] for p in vals], 0.25, label="before change")
    ax.bar(x, [p["right_after"]["mean"] for p in vals], 0.25, yerr=[p["right_after"]["std"] for p in vals],
           label="right after change")
    ax.bar(x + 0.25, [p["final_after"]["mean"] for p in vals], 0.25, label="final, new scenario")
    ax.set_xticks(x, labels, fontsize=7, rotation=10)
    ax.set_ylabel("physical episode return")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = _common.add_study_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    mode = _common.study_mode(args)
    st = dict(SETTINGS[mode])
    device = _common.select_device(args.device)
    with jax.default_device(device):
        case, summary, curves = run(st, jax.random.key(args.seed))
    config: dict[str, Any] = {"device": _common.describe_device(device), "seed": args.seed, **st, **case}
    summary["conclusion"] = conclusion(summary)
    _common.log(summary["conclusion"])
    doc = {"config": config, "summary": summary, "curves": curves}
    harness.write(NAME, mode=mode, **doc, out=args.out, plot=lambda png: plot(doc, png))
    return doc


if __name__ == "__main__":
    main()

"""Imperfect twins (paper: "Noise in DT"): final physical return vs twin noise, and two mitigations.

Two cases, each ONE compiled program per static configuration, every point x seed a row of one
``vmap`` (``benchmarks.harness.run_phased``; the same seed keys for every point):

* ``AccessPointSelection-v0``, tabular DT-QL with n = 5 action trials (index observations).
* ``MultiUAV-v0``, DT-DQN with k = 4 look-ahead averaged over M = 4 rollouts, and the same without
  averaging (``average_rollouts=False``: one random domain's rollout per transition).

Noise kinds: ``state`` = ``TwinConfig.state_noise_std`` (Gaussian noise on every float leaf of the
state copied at each sync: the AP vehicle's position in m and speed in m/s, the UAV and user
coordinates in m), ``params`` = mismatched twin ``EnvParams`` per domain
(``twin.perturb_params`` with relative std rho on the fields listed in the JSON; floored at 10 % of
the true value so a rate or radius never turns negative). The physical-only baseline is the same
program with ``ready_after`` beyond the run (the loop is then exactly physical RL). ``pretrain``
arms train on a mismatched twin (rho) *as if physical* for ``pretrain`` steps (twin steps, not
counted as physical), then continue on the true params (``make_train(...).run`` on the same
runner state: Q-table / network, optimiser and replay kept) with physical data only; the step
counter restarts at the switch, so the fine-tuning gets the same epsilon schedule as the
physical-only baseline. Every arm is compared at the same physical budget.

    python -m benchmarks.twin_noise [--quick|--full] [--device cpu|gpu] [--out DIR]

Writes ``benchmarks/results/twin_noise.{json,png}`` (harness schema): ``summary[case]["points"]``
holds each point's final return (mean of the last quarter of its physical budget) and mean return over
the run, per seed; ``curves["<case>/return"]`` the return against physical steps.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import jax

import dtrl_jax as dt
from benchmarks import _common, harness
from benchmarks.harness import NEVER, Arm
from dtrl_jax.twin import perturb_params, stack_params

NAME = "twin_noise"


def mismatched_params(key, params, num: int, rho: float, fields: Sequence[str]):
    """``perturb_params`` with relative std ``rho`` on ``fields``, floored at 10 % of the true values."""
    return perturb_params(key, params, num, rho, fields=tuple(fields), min_scale=0.1)


# ------------------------------------------------------------------------------------- settings

SETTINGS: dict[str, dict[str, Any]] = {
    # smoke-test size (tests/benchmarks/test_studies.py): every code path, nothing learned
    "tiny": {
        "seeds": 1, "ap_envs": 4, "ap_log_every": 400, "ap_budget": 2, "ap_pretrain": 1, "ap_decay": 400,
        "ap_state": [0.0, 300.0], "ap_param": [0.5], "ap_pretrain_rho": [0.5],
        "uav_envs": 2, "uav_log_every": 100, "uav_budget": 2, "uav_pretrain": 1, "uav_decay": 100, "uav_learning_starts": 50,
        "uav_state": [0.0, 50.0], "uav_param": [0.3], "uav_pretrain_rho": [0.3], "uav_noavg_state": [], "uav_noavg_param": [],
        "uav_hidden": (16,), "uav_num_uavs": 1, "parts": ("ap", "uav"),
    },
    "quick": {
        "seeds": 4, "ap_envs": 16, "ap_log_every": 4_000, "ap_budget": 12, "ap_pretrain": 4, "ap_decay": 16_000,
        "ap_state": [0.0, 30.0, 300.0], "ap_param": [0.1, 0.5], "ap_pretrain_rho": [0.5],
        "uav_envs": 10, "uav_log_every": 1_000, "uav_budget": 8, "uav_pretrain": 2, "uav_decay": 4_000, "uav_learning_starts": 500,
        "uav_state": [0.0, 50.0], "uav_param": [0.3], "uav_pretrain_rho": [0.3], "uav_noavg_state": [50.0], "uav_noavg_param": [],
        "uav_hidden": (64, 64), "uav_num_uavs": 2, "parts": ("ap", "uav"),
    },
    "default": {
        "seeds": 4, "ap_envs": 16, "ap_log_every": 8_000, "ap_budget": 15, "ap_pretrain": 5, "ap_decay": 20_000,
        "ap_state": [0.0, 30.0, 100.0, 300.0, 1000.0], "ap_param": [0.05, 0.2, 0.5], "ap_pretrain_rho": [0.2, 0.5],
        "uav_envs": 10, "uav_log_every": 1_500, "uav_budget": 16, "uav_pretrain": 4, "uav_decay": 12_000, "uav_learning_starts": 1_000,
        "uav_state": [0.0, 10.0, 50.0], "uav_param": [0.3], "uav_pretrain_rho": [0.3], "uav_noavg_state": [10.0, 50.0],
        "uav_noavg_param": [0.3], "uav_hidden": (64, 64), "uav_num_uavs": 2, "parts": ("ap", "uav"),
    },
    "full": {
        "seeds": 8, "ap_envs": 16, "ap_log_every": 8_000, "ap_budget": 25, "ap_pretrain": 10, "ap_decay": 20_000,
        "ap_state": [0.0, 10.0, 30.0, 100.0, 300.0, 1000.0], "ap_param": [0.02, 0.05, 0.1, 0.2, 0.5],
        "ap_pretrain_rho": [0.0, 0.2, 0.5],
        "uav_envs": 10, "uav_log_every": 5_000, "uav_budget": 40, "uav_pretrain": 10, "uav_decay": 50_000, "uav_learning_starts": 2_000,
        "uav_state": [0.0, 5.0, 10.0, 20.0, 50.0, 150.0], "uav_param": [0.1, 0.3, 0.5], "uav_pretrain_rho": [0.1, 0.3],
        "uav_noavg_state": [5.0, 10.0, 20.0, 50.0, 150.0], "uav_noavg_param": [0.1, 0.3, 0.5], "uav_hidden": (120, 84),
        "uav_num_uavs": 4, "parts": ("ap", "uav"),
    },
}

AP_FIELDS = ("ap_position_m", "ap_radius_m", "ap_rate_mbps", "ap_cost")
UAV_FIELDS = ("tx_power_w", "bandwidth_hz", "carrier_hz", "uav_speed_mps", "user_speed_std_mps")


def noise_arms(base, params, *, state, param, pretrain_rho, pretrain, fields, domains, key, with_physical=True,
               suffix=""):
    """Physical-only, state-noise, param-mismatch and pre-train arms for ``base`` (a DT config).

    Pre-train arms run ``pretrain`` intervals on one mismatched twin as if physical (twin off),
    then the true params; the others run the true params throughout and count from interval 0.
    """
    exact = stack_params([params] * domains)
    tw = base.twin
    off = base.replace(twin=tw.replace(ready_after=NEVER))
    arms = [Arm("physical only", off, exact, info={"kind": "physical", "level": 0.0})] if with_physical else []
    for s in state:
        arms.append(Arm(f"DT state noise {s:g}{suffix}", base.replace(twin=tw.replace(state_noise_std=s)), exact,
                        info={"kind": "state", "level": s}))
    for i, rho in enumerate(param):
        tp = mismatched_params(jax.random.fold_in(key, i), params, domains, rho, fields)
        arms.append(Arm(f"DT params rho {rho:g}{suffix}", base, tp, info={"kind": "params", "level": rho}))
    for i, rho in enumerate(pretrain_rho):
        twin_env = jax.tree.map(lambda x: x[0], mismatched_params(jax.random.fold_in(key, 100 + i), params, 1, rho,
                                                                  fields))
        arms.append(Arm(f"pre-train on twin rho {rho:g}, then physical", off, exact, phase_params=(twin_env, params),
                        physical_from=pretrain, info={"kind": "pretrain", "level": rho}))
    return arms


def run_case(env, params, arms, *, st, budget, pre, log_every, key, case):
    """Train the arms (one program), summarise each point at the same physical budget; points, panel, wall."""
    t0 = time.perf_counter()
    runs = harness.run_phased(arms, env, params, seeds=st["seeds"], phases=[pre, budget] if pre else [budget],
                              key=key)
    phys = harness.physical_part(runs, arms, budget, log_every)
    points = {a.name: {**a.info, **harness.returns_summary(phys[a.name])} for a in arms}
    panel = harness.panel(phys, y="episode_return", x="physical_steps", ylabel="mean physical episode return",
                          arms=[a.name for a in arms if "(1 rollout)" not in a.name])
    return points, {f"{case}/return": panel}, time.perf_counter() - t0


def run_ap(st: dict, key) -> tuple[dict, dict, dict]:
    env, params = dt.make("AccessPointSelection-v0")
    budget, pre, le = st["ap_budget"], st["ap_pretrain"], st["ap_log_every"]
    base = dt.QLearningConfig(
        total_timesteps=(budget + pre) * le, log_every=le, num_envs=st["ap_envs"], learning_rate=0.1, gamma=0.9,
        epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=st["ap_decay"],
        twin=dt.TwinConfig(num_domains=5, action_trials=5),
    )
    arms = noise_arms(base, params, state=st["ap_state"], param=st["ap_param"], pretrain_rho=st["ap_pretrain_rho"],
                      pretrain=pre, fields=AP_FIELDS, domains=5, key=jax.random.fold_in(key, 7))
    _common.log(f"AccessPointSelection-v0, DT-QL n=5: {len(arms)} arms")
    points, curves, wall = run_case(env, params, arms, st=st, budget=budget, pre=pre, log_every=le, key=key, case="ap")
    config = {"env": "AccessPointSelection-v0", "agent": "DT-QL, action_trials=5, num_domains=5",
              "num_states": int(env.num_states(params)), "state_noise_unit": "m (position) and m/s (speed)",
              "param_fields": list(AP_FIELDS), "physical_budget": budget * le, "pretrain_steps": pre * le,
              "log_every": le, "wall_s": wall,
              "twin_replay": "tabular: each twin transition is one Q update when made (no replay)"}
    return config, {"points": points}, curves


def run_uav(st: dict, key) -> tuple[dict, dict, dict]:
    env, params = dt.make("MultiUAV-v0", num_uavs=st["uav_num_uavs"])
    budget, pre, le = st["uav_budget"], st["uav_pretrain"], st["uav_log_every"]
    domains = 4
    points, curves, walls, base = {}, {}, {}, None
    for averaged in (True, False):
        base = dt.DQNConfig(
            total_timesteps=(budget + pre) * le, log_every=le, num_envs=st["uav_envs"], learning_rate=1e-3, gamma=0.95,
            learning_starts=st["uav_learning_starts"], buffer_size=10_000, epsilon_decay_steps=st["uav_decay"],
            hidden_sizes=tuple(st["uav_hidden"]),
            twin=dt.TwinConfig(num_domains=domains, lookahead=4, lookahead_rollouts=4, average_rollouts=averaged),
        )
        if averaged:
            arms = noise_arms(base, params, state=st["uav_state"], param=st["uav_param"],
                              pretrain_rho=st["uav_pretrain_rho"], pretrain=pre, fields=UAV_FIELDS, domains=domains,
                              key=jax.random.fold_in(key, 7))
        else:
            arms = noise_arms(base, params, state=st["uav_noavg_state"], param=st["uav_noavg_param"], pretrain_rho=[],
                              pretrain=pre, fields=UAV_FIELDS, domains=domains, key=jax.random.fold_in(key, 7),
                              with_physical=False, suffix=" (1 rollout)")
        if not arms:
            continue
        _common.log(f"MultiUAV-v0 ({st['uav_num_uavs']} UAVs), DT-DQN k=4 M=4 average_rollouts={averaged}: "
                    f"{len(arms)} arms")
        pts, c, wall = run_case(env, params, arms, st=st, budget=budget, pre=pre, log_every=le, key=key, case="uav")
        points.update(pts)
        walls["averaged" if averaged else "single"] = wall
        if averaged:
            curves.update(c)
    config = {"env": "MultiUAV-v0", "num_uavs": st["uav_num_uavs"],
              "agent": "DT-DQN, lookahead=4, lookahead_rollouts=4, num_domains=4", "state_noise_unit": "m",
              "param_fields": list(UAV_FIELDS), "physical_budget": budget * le, "pretrain_steps": pre * le,
              "log_every": le, "wall_s": walls,
              "twin_replay": {"twin_buffer_size": base.twin.twin_buffer_size,
                              "note": "look-ahead only (no action trials): no twin replay buffer"}}
    return config, {"points": points}, curves


def stops_helping(points: list[dict], baseline: dict) -> float | None:
    """Smallest noise level whose final return is no better than the physical-only baseline (None: never)."""
    for p in sorted(points, key=lambda p: p["level"]):
        if p["final_return"]["mean"] <= baseline["final_return"]["mean"]:
            return p["level"]
    return None


def _conclude(points: dict[str, dict], what: str) -> str:
    fmt = _common.fmt1
    base = next(p for p in points.values() if p["kind"] == "physical")
    parts = [f"{what}: physical only {fmt(base['final_return']['mean'])} +- {fmt(base['final_return']['std'])}"]
    for kind in ("state", "params"):
        pts = [p for n, p in points.items() if p["kind"] == kind and "(1 rollout)" not in n]
        if pts:
            vals = ", ".join(f"{p['level']:g}: {fmt(p['final_return']['mean'])}" for p in sorted(pts, key=lambda p: p["level"]))
            stop = stops_helping(pts, base)
            parts.append(f"{kind} noise -> {vals} (no better than physical from {stop if stop is not None else 'never'})")
    single = [p for n, p in points.items() if "(1 rollout)" in n]
    if single:
        parts.append("without averaging: " + ", ".join(f"{p['kind']} {p['level']:g}: {fmt(p['final_return']['mean'])}"
                                                      for p in single))
    pre = [p for p in points.values() if p["kind"] == "pretrain"]
    if pre:
        parts.append("pre-train then physical: " + ", ".join(
            f"rho {p['level']:g}: {fmt(p['final_return']['mean'])} (mean over run {fmt(p['mean_return']['mean'])} vs "
            f"physical {fmt(base['mean_return']['mean'])})" for p in pre))
    return "; ".join(parts)


def plot(doc: dict, path) -> None:
    """Per case: final return vs state noise, vs param mismatch (with pre-training), and the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [k for k in ("ap", "uav") if k in doc["summary"]]
    ncol = max(1, len(cases))
    fig, axes = plt.subplots(3, ncol, figsize=(6.5 * ncol, 12), squeeze=False)
    for col, case in enumerate(cases):
        pts = [{"label": n, **p} for n, p in doc["summary"][case]["points"].items()]
        cfg = doc["config"]["sections"][case]
        base = next((p for p in pts if p["kind"] == "physical"), None)
        for row, kind in ((0, "state"), (1, "params")):
            ax = axes[row, col]
            if base:
                ax.axhline(base["final_return"]["mean"], color="k", ls="--", label="physical only")
            for single in (False, True):
                sel = sorted([p for p in pts if p["kind"] == kind and ("(1 rollout)" in p["label"]) == single],
                             key=lambda p: p["level"])
                if kind == "params" and not single:  # rho = 0 is the perfect twin
                    sel = [p for p in pts if p["kind"] == "state" and p["level"] == 0] + sel
                if sel:
                    ax.errorbar([p["level"] for p in sel], [p["final_return"]["mean"] for p in sel],
                                [p["final_return"]["std"] for p in sel], marker="o" if kind == "state" else "s",
                                capsize=3, ls=":" if single else "-",
                                label="DT, M rollouts averaged" if not single else "DT, 1 rollout (no averaging)")
            if kind == "params":
                for p in (p for p in pts if p["kind"] == "pretrain"):
                    ax.errorbar([p["level"]], [p["final_return"]["mean"]], [p["final_return"]["std"]], marker="*",
                                ms=12, capsize=3, ls="none", label=f"pre-train on twin rho {p['level']:g}, then physical")
            levels = [p["level"] for p in pts if p["kind"] == kind and p["level"] > 0]
            if levels:
                ax.set_xscale("symlog", linthresh=min(levels))
            ax.set_xlabel("twin state-noise std (" + cfg["state_noise_unit"] + ")" if kind == "state"
                          else "twin param mismatch rho (relative std)")
            ax.set_ylabel("final physical episode return")
            ax.set_title(f"{cfg['env']}: {cfg['agent']}", fontsize=9)
            ax.legend(fontsize=7)
        harness.draw_panel(axes[2, col], doc["curves"][f"{case}/return"], band=False)
        axes[2, col].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = _common.add_study_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--parts", default=None, help="comma-separated subset of: ap,uav")
    args = parser.parse_args(argv)
    mode = _common.study_mode(args)
    st = dict(SETTINGS[mode])
    if args.parts:
        st["parts"] = tuple(p.strip() for p in args.parts.split(","))
    device = _common.select_device(args.device)
    key = jax.random.key(args.seed)
    config: dict[str, Any] = {"device": _common.describe_device(device), "seed": args.seed, **st, "sections": {}}
    summary: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    t0 = time.perf_counter()
    with jax.default_device(device):
        for part, fn, k in (("ap", run_ap, 1), ("uav", run_uav, 2)):
            if part in st["parts"]:
                config["sections"][part], summary[part], c = fn(st, jax.random.fold_in(key, k))
                curves.update(c)
    config["wall_s"] = time.perf_counter() - t0
    summary["conclusions"] = {}
    if "ap" in summary:
        summary["conclusions"]["ap"] = _conclude(summary["ap"]["points"], "AP DT-QL")
    if "uav" in summary and any(p["kind"] == "physical" for p in summary["uav"]["points"].values()):
        summary["conclusions"]["uav"] = _conclude(summary["uav"]["points"], "MultiUAV DT-DQN")
    for k, v in summary["conclusions"].items():
        _common.log(f"[{k}] {v}")
    doc = {"config": config, "summary": summary, "curves": curves}
    harness.write(NAME, mode=mode, **doc, out=args.out, plot=lambda png: plot(doc, png))
    return doc


if __name__ == "__main__":
    main()

"""Imperfect twins (paper: "Noise in DT"): final physical return vs twin noise, and two mitigations.

Two cases, each ONE compiled program per static configuration, every point x seed a row of one
``vmap`` (``dtrl_jax.population.ScenarioTrainer``):

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

Writes ``benchmarks/results/twin_noise.{json,png}``. The helpers at the top (arms, phases,
summaries) are shared by ``construction_delay`` and ``scenario_adaptation``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import dtrl_jax as dt
from benchmarks import _common
from dtrl_jax import population as pop
from dtrl_jax.twin import perturb_params, stack_params

NAME = "twin_noise"
#: ``ready_after`` beyond any run: the twin never switches on, so the program is plain physical RL.
NEVER = 2**30

# ------------------------------------------------------------------------ shared study helpers


def mismatched_params(key, params, num: int, rho: float, fields: Sequence[str]):
    """``perturb_params`` with relative std ``rho`` on ``fields``, floored at 10 % of the true values."""
    return perturb_params(key, params, num, rho, fields=tuple(fields), min_scale=0.1)


def broadcast_params(params, num: int):
    """``num`` copies of ``params`` stacked (a perfect twin's per-domain params, or a batch)."""
    return stack_params([params] * num)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One point of a study: a label, the member config, twin params ``[D]`` and per-phase physical params.

    ``phase_params[i]`` is the physical ``EnvParams`` of phase ``i`` (None = the true params), and
    ``phase_twin[i]`` the twin params of phase ``i`` (None = ``twin_params``).
    ``physical_from``: the first interval whose steps count as physical (pre-training before it);
    when it is a phase boundary, the arm's step counter restarts there (a fresh epsilon schedule).
    ``info``: extra JSON fields for the arm's summary.
    """

    label: str
    kind: str
    level: float
    config: Any
    twin_params: Any = None
    phase_params: tuple = ()
    phase_twin: tuple = ()
    physical_from: int = 0
    info: dict = dataclasses.field(default_factory=dict)


def run_arms(env, params, template: pop.Member, arms: Sequence[Arm], *, seeds: int, phases: Sequence[int],
             chunk: int, key, with_twin_params: bool = True, log=_common.log):
    """Train every arm x seed as rows of one ``ScenarioTrainer`` (one compilation).

    Args:
      phases: interval counts of the phases (their sum = the configs' ``num_intervals``).
    Returns:
      dict of metrics ``[arms, seeds, intervals]`` plus ``wall_s``.
    """
    rows_cfg, rows_keys = [], []
    phase_env = [[] for _ in phases]
    phase_tp = [[] for _ in phases]
    for a, arm in enumerate(arms):
        for s in range(seeds):
            rows_cfg.append(arm.config)
            rows_keys.append(jax.random.fold_in(jax.random.fold_in(key, a), s))
            for p in range(len(phases)):
                ep = arm.phase_params[p] if p < len(arm.phase_params) else None
                phase_env[p].append(params if ep is None else ep)
                if with_twin_params:
                    tp = arm.phase_twin[p] if p < len(arm.phase_twin) else None
                    phase_tp[p].append(arm.twin_params if tp is None else tp)
    configs = pop.stack_configs(rows_cfg)
    keys = jnp.stack(rows_keys)
    sched = [(n, stack_params(phase_env[p]), stack_params(phase_tp[p]) if with_twin_params else None)
             for p, n in enumerate(phases)]
    trainer = pop.ScenarioTrainer(env, template, with_twin_params=with_twin_params)
    t0 = time.perf_counter()
    restart = {}
    for p in range(1, len(phases)):
        flags = [arm.physical_from == sum(phases[:p]) and arm.physical_from > 0 for arm in arms for _ in range(seeds)]
        if any(flags):
            restart[p] = np.asarray(flags)
    _, metrics = trainer.train(configs, keys, sched, chunk=chunk, restart_steps=restart or None)
    wall = time.perf_counter() - t0
    log(f"  {len(arms)} arms x {seeds} seeds = {len(rows_cfg)} rows, {sum(phases)} intervals: {wall:.1f} s")
    out = {k: np.asarray(v).reshape(len(arms), seeds, -1) for k, v in metrics.items()}
    out["wall_s"] = wall
    return out


def quiet_nan(fn):
    """Decorator: NaN means (no episode finished in a window) are expected; silence their warnings."""

    def wrapped(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)

    wrapped.__doc__, wrapped.__name__ = fn.__doc__, fn.__name__
    return wrapped


def physical_window(arm: Arm, budget: int) -> slice:
    """Intervals of ``arm`` that hold its first ``budget`` physical intervals."""
    return slice(arm.physical_from, arm.physical_from + budget)


@quiet_nan
def smooth(x: np.ndarray, w: int) -> np.ndarray:
    """Trailing running mean over ``w`` intervals along the last axis, NaN-aware."""
    x = np.asarray(x, np.float64)
    out = np.full_like(x, np.nan)
    for t in range(x.shape[-1]):
        win = x[..., max(0, t - w + 1) : t + 1]
        with np.errstate(invalid="ignore"):
            out[..., t] = np.nanmean(win, axis=-1) if np.any(np.isfinite(win)) else np.nan
    return out


def steps_to_target(returns: np.ndarray, steps: np.ndarray, target: float, w: int = 3) -> np.ndarray:
    """Per seed: first physical step at which the ``w``-interval running mean reaches ``target`` (NaN: never)."""
    sm = smooth(returns, w)
    out = np.full(sm.shape[0], np.nan)
    for s in range(sm.shape[0]):
        hit = np.nonzero(sm[s] >= target)[0]
        if hit.size:
            out[s] = steps[hit[0]]
    return out


@quiet_nan
def summarize(arm: Arm, metrics: dict, index: int, budget: int, log_every: int, tail: int) -> dict:
    """Final return (mean of the last ``tail`` physical intervals), mean return over the run, curve."""
    win = physical_window(arm, budget)
    ret = metrics["episode_return"][index][:, win]  # [seeds, budget]
    with np.errstate(invalid="ignore"):
        final = np.nanmean(ret[:, -tail:], axis=1)
        auc = np.nanmean(ret, axis=1)
    steps = log_every * np.arange(1, budget + 1)
    return {
        "label": arm.label,
        "kind": arm.kind,
        "level": arm.level,
        **arm.info,
        "final_return_mean": float(np.nanmean(final)),
        "final_return_std": float(np.nanstd(final)),
        "final_return_per_seed": final.tolist(),
        "mean_return_mean": float(np.nanmean(auc)),
        "mean_return_std": float(np.nanstd(auc)),
        "curve": {
            "physical_steps": steps.tolist(),
            "mean": np.nanmean(ret, axis=0).tolist(),
            "std": np.nanstd(ret, axis=0).tolist(),
        },
    }


def stops_helping(points: list[dict], baseline: dict, key: str = "final_return_mean") -> float | None:
    """Smallest noise level whose return is no better than the physical-only baseline (None: never)."""
    for p in sorted(points, key=lambda p: p["level"]):
        if p[key] <= baseline[key]:
            return p["level"]
    return None


def fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.1f}"


# ------------------------------------------------------------------------------------- settings

SETTINGS: dict[str, dict[str, Any]] = {
    # smoke-test size (tests/test_benchmarks_studies.py): every code path, nothing learned
    "tiny": dict(
        seeds=1, ap_envs=4, ap_log_every=400, ap_budget=2, ap_pretrain=1, ap_decay=400,
        ap_state=[0.0, 300.0], ap_param=[0.5], ap_pretrain_rho=[0.5],
        uav_envs=2, uav_log_every=100, uav_budget=2, uav_pretrain=1, uav_decay=100, uav_learning_starts=50,
        uav_state=[0.0, 50.0], uav_param=[0.3], uav_pretrain_rho=[0.3], uav_noavg_state=[], uav_noavg_param=[],
        uav_hidden=(16,), uav_num_uavs=1, parts=("ap", "uav"),
    ),
    "quick": dict(
        seeds=4, ap_envs=16, ap_log_every=4_000, ap_budget=12, ap_pretrain=4, ap_decay=16_000,
        ap_state=[0.0, 30.0, 300.0], ap_param=[0.1, 0.5], ap_pretrain_rho=[0.5],
        uav_envs=10, uav_log_every=1_000, uav_budget=8, uav_pretrain=2, uav_decay=4_000, uav_learning_starts=500,
        uav_state=[0.0, 50.0], uav_param=[0.3], uav_pretrain_rho=[0.3], uav_noavg_state=[50.0], uav_noavg_param=[],
        uav_hidden=(64, 64), uav_num_uavs=2, parts=("ap", "uav"),
    ),
    "default": dict(
        seeds=4, ap_envs=16, ap_log_every=8_000, ap_budget=15, ap_pretrain=5, ap_decay=20_000,
        ap_state=[0.0, 30.0, 100.0, 300.0, 1000.0], ap_param=[0.05, 0.2, 0.5], ap_pretrain_rho=[0.2, 0.5],
        uav_envs=10, uav_log_every=1_500, uav_budget=16, uav_pretrain=4, uav_decay=12_000, uav_learning_starts=1_000,
        uav_state=[0.0, 10.0, 50.0], uav_param=[0.3], uav_pretrain_rho=[0.3], uav_noavg_state=[10.0, 50.0],
        uav_noavg_param=[0.3], uav_hidden=(64, 64), uav_num_uavs=2, parts=("ap", "uav"),
    ),
    "full": dict(
        seeds=8, ap_envs=16, ap_log_every=8_000, ap_budget=25, ap_pretrain=10, ap_decay=20_000,
        ap_state=[0.0, 10.0, 30.0, 100.0, 300.0, 1000.0], ap_param=[0.02, 0.05, 0.1, 0.2, 0.5],
        ap_pretrain_rho=[0.0, 0.2, 0.5],
        uav_envs=10, uav_log_every=5_000, uav_budget=40, uav_pretrain=10, uav_decay=50_000, uav_learning_starts=2_000,
        uav_state=[0.0, 5.0, 10.0, 20.0, 50.0, 150.0], uav_param=[0.1, 0.3, 0.5], uav_pretrain_rho=[0.1, 0.3],
        uav_noavg_state=[5.0, 10.0, 20.0, 50.0, 150.0], uav_noavg_param=[0.1, 0.3, 0.5], uav_hidden=(120, 84),
        uav_num_uavs=4, parts=("ap", "uav"),
    ),
}

AP_FIELDS = ("ap_position_m", "ap_radius_m", "ap_rate_mbps", "ap_cost")
UAV_FIELDS = ("tx_power_w", "bandwidth_hz", "carrier_hz", "uav_speed_mps", "user_speed_std_mps")


def noise_arms(base, params, *, state, param, pretrain_rho, pretrain, fields, domains, key, with_physical=True,
               suffix=""):
    """Physical-only, state-noise, param-mismatch and pre-train arms for ``base`` (a DT config).

    Pre-train arms run ``pretrain`` intervals on one mismatched twin as if physical (twin off),
    then the true params; the others run the true params throughout and count from interval 0.
    """
    exact = broadcast_params(params, domains)
    tw = base.twin
    arms = []
    if with_physical:
        arms.append(Arm("physical only", "physical", 0.0, base.replace(twin=tw.replace(ready_after=NEVER)), exact))
    for s in state:
        arms.append(Arm(f"DT state noise {s:g}{suffix}", "state", s, base.replace(twin=tw.replace(state_noise_std=s)),
                        exact))
    for i, rho in enumerate(param):
        tp = mismatched_params(jax.random.fold_in(key, i), params, domains, rho, fields)
        arms.append(Arm(f"DT params rho {rho:g}{suffix}", "params", rho, base, tp))
    for i, rho in enumerate(pretrain_rho):
        twin_env = mismatched_params(jax.random.fold_in(key, 100 + i), params, 1, rho, fields)
        twin_env = jax.tree.map(lambda x: x[0], twin_env)
        arms.append(Arm(f"pre-train on twin rho {rho:g}, then physical", "pretrain", rho,
                        base.replace(twin=tw.replace(ready_after=NEVER)), exact,
                        phase_params=(twin_env, params), physical_from=pretrain))
    return arms


def run_ap(st: dict, key, log=_common.log) -> dict:
    env, params = dt.make("AccessPointSelection-v0")
    budget, pre, le = st["ap_budget"], st["ap_pretrain"], st["ap_log_every"]
    base = dt.QLearningConfig(
        total_timesteps=(budget + pre) * le, log_every=le, num_envs=st["ap_envs"], learning_rate=0.1, gamma=0.9,
        epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=st["ap_decay"],
        twin=dt.TwinConfig(num_domains=5, action_trials=5),
    )
    arms = noise_arms(base, params, state=st["ap_state"], param=st["ap_param"], pretrain_rho=st["ap_pretrain_rho"],
                      pretrain=pre, fields=AP_FIELDS, domains=5, key=jax.random.fold_in(key, 7))
    log(f"AccessPointSelection-v0, DT-QL n=5: {len(arms)} arms")
    m = run_arms(env, params, pop.Member("ap", base), arms, seeds=st["seeds"], phases=[pre, budget] if pre else [budget],
                 chunk=_chunk(pre, budget), key=key, log=log)
    tail = max(1, budget // 4)
    points = [summarize(a, m, i, budget, le, tail) for i, a in enumerate(arms)]
    return dict(env="AccessPointSelection-v0", agent="DT-QL, action_trials=5, num_domains=5",
                state_noise_unit="m (position) and m/s (speed)", param_fields=list(AP_FIELDS),
                physical_budget=budget * le, pretrain_steps=pre * le, log_every=le, wall_s=m["wall_s"],
                points=points)


def run_uav(st: dict, key, log=_common.log) -> dict:
    env, params = dt.make("MultiUAV-v0", num_uavs=st["uav_num_uavs"])
    budget, pre, le = st["uav_budget"], st["uav_pretrain"], st["uav_log_every"]
    domains = 4
    results = {}
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
            log(f"MultiUAV-v0 ({st['uav_num_uavs']} UAVs), DT-DQN k=4 M=4 average_rollouts={averaged}: {len(arms)} arms")
        m = run_arms(env, params, pop.Member("uav", base), arms, seeds=st["seeds"],
                     phases=[pre, budget] if pre else [budget], chunk=_chunk(pre, budget), key=key, log=log)
        tail = max(1, budget // 4)
        results["averaged" if averaged else "single"] = dict(
            wall_s=m["wall_s"], points=[summarize(a, m, i, budget, le, tail) for i, a in enumerate(arms)])
    return dict(env="MultiUAV-v0", num_uavs=st["uav_num_uavs"],
                agent="DT-DQN, lookahead=4, lookahead_rollouts=4, num_domains=4", state_noise_unit="m",
                param_fields=list(UAV_FIELDS), physical_budget=budget * le, pretrain_steps=pre * le, log_every=le,
                **results)


def _chunk(pre: int, budget: int) -> int:
    return int(np.gcd(pre, budget)) if pre else budget


def conclusions(doc: dict) -> dict[str, str]:
    out = {}
    if "ap" in doc:
        out["ap"] = _conclude(doc["ap"]["points"], "AP DT-QL")
    if "uav" in doc and "averaged" in doc["uav"]:
        pts = doc["uav"]["averaged"]["points"] + doc["uav"].get("single", {}).get("points", [])
        out["uav"] = _conclude(pts, "MultiUAV DT-DQN")
    return out


def _conclude(points: list[dict], what: str) -> str:
    base = next(p for p in points if p["kind"] == "physical")
    b = base["final_return_mean"]
    parts = [f"{what}: physical only {fmt(b)} +- {fmt(base['final_return_std'])}"]
    for kind in ("state", "params"):
        pts = [p for p in points if p["kind"] == kind and "(1 rollout)" not in p["label"]]
        if pts:
            vals = ", ".join(f"{p['level']:g}: {fmt(p['final_return_mean'])}" for p in sorted(pts, key=lambda p: p["level"]))
            stop = stops_helping(pts, base)
            parts.append(f"{kind} noise -> {vals} (no better than physical from {stop if stop is not None else 'never'})")
    single = [p for p in points if "(1 rollout)" in p["label"]]
    if single:
        parts.append("without averaging: " + ", ".join(f"{p['kind']} {p['level']:g}: {fmt(p['final_return_mean'])}"
                                                      for p in single))
    pre = [p for p in points if p["kind"] == "pretrain"]
    if pre:
        parts.append("pre-train then physical: " + ", ".join(
            f"rho {p['level']:g}: {fmt(p['final_return_mean'])} (mean over run {fmt(p['mean_return_mean'])} vs "
            f"physical {fmt(base['mean_return_mean'])})" for p in pre))
    return "; ".join(parts)


def _case_points(name: str, case: dict) -> list[dict]:
    if name == "ap":
        return case["points"]
    return case.get("averaged", {}).get("points", []) + case.get("single", {}).get("points", [])


def plot(doc: dict, path) -> None:
    """Per case: final return vs state noise, vs param mismatch (with pre-training), and the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [(k, doc[k]) for k in ("ap", "uav") if k in doc]
    ncol = max(1, len(cases))
    fig, axes = plt.subplots(3, ncol, figsize=(6.5 * ncol, 12), squeeze=False)
    for col, (name, case) in enumerate(cases):
        pts = _case_points(name, case)
        base = next((p for p in pts if p["kind"] == "physical"), None)
        for row, kind in ((0, "state"), (1, "params")):
            ax = axes[row, col]
            if base:
                ax.axhline(base["final_return_mean"], color="k", ls="--", label="physical only")
            for single in (False, True):
                sel = sorted([p for p in pts if p["kind"] == kind and ("(1 rollout)" in p["label"]) == single],
                             key=lambda p: p["level"])
                if kind == "params" and not single:  # rho = 0 is the perfect twin
                    sel = [p for p in pts if p["kind"] == "state" and p["level"] == 0] + sel
                if sel:
                    ax.errorbar([p["level"] for p in sel], [p["final_return_mean"] for p in sel],
                                [p["final_return_std"] for p in sel], marker="o" if kind == "state" else "s",
                                capsize=3, ls=":" if single else "-",
                                label="DT, M rollouts averaged" if not single else "DT, 1 rollout (no averaging)")
            if kind == "params":
                for p in (p for p in pts if p["kind"] == "pretrain"):
                    ax.errorbar([p["level"]], [p["final_return_mean"]], [p["final_return_std"]], marker="*", ms=12,
                                capsize=3, ls="none", label=f"pre-train on twin rho {p['level']:g}, then physical")
            levels = [p["level"] for p in pts if p["kind"] == kind and p["level"] > 0]
            if levels:
                ax.set_xscale("symlog", linthresh=min(levels))
            ax.set_xlabel("twin state-noise std (" + case["state_noise_unit"] + ")" if kind == "state"
                          else "twin param mismatch rho (relative std)")
            ax.set_ylabel("final physical episode return")
            ax.set_title(f"{case['env']}: {case['agent']}", fontsize=9)
            ax.legend(fontsize=7)
        ax = axes[2, col]
        for p in pts:
            if "(1 rollout)" in p["label"]:
                continue
            c = p["curve"]
            ax.plot(c["physical_steps"], c["mean"], label=p["label"], lw=1.4,
                    ls="--" if p["kind"] == "physical" else "-")
        ax.set_xlabel("physical steps")
        ax.set_ylabel("mean physical episode return")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_args(parser)
    parser.add_argument("--tiny", action="store_true", help="smoke-test size (seconds of compute, nothing learned)")
    parser.add_argument("--parts", default=None, help="comma-separated subset of: ap,uav")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    mode = "tiny" if args.tiny else _common.run_mode(args)
    st = dict(SETTINGS[mode])
    if args.parts:
        st["parts"] = tuple(p.strip() for p in args.parts.split(","))
    device = _common.select_device(args.device)
    key = jax.random.key(args.seed)
    doc: dict[str, Any] = {"config": {"mode": mode, "device": _common.describe_device(device), **st}}
    t0 = time.perf_counter()
    with jax.default_device(device):
        if "ap" in st["parts"]:
            doc["ap"] = run_ap(st, jax.random.fold_in(key, 1))
        if "uav" in st["parts"]:
            doc["uav"] = run_uav(st, jax.random.fold_in(key, 2))
    doc["wall_s"] = time.perf_counter() - t0
    doc["conclusions"] = conclusions(doc)
    for k, v in doc["conclusions"].items():
        _common.log(f"[{k}] {v}")
    path = _common.write_json(NAME, doc, args.out)
    plot(doc, path.with_suffix(".png"))
    _common.log(f"wrote {path} and {path.with_suffix('.png')} ({doc['wall_s']:.0f} s)")
    return doc


if __name__ == "__main__":
    main()

"""Observation capability enhancement: DQN on a partially observed multi-UAV network, with the twin's global view.

The paper's "observation capability enhancement": every entity is mirrored in the digital twin, so an
agent whose own sensors see only part of the network can read the rest from the twin (POMDP -> MDP).
In ``dtrl_jax`` this is ``TwinConfig(share_global_obs=True)``: the agent's observation is
``concat(own observation, global observation read from the identical domain)`` (see
``dtrl_jax.twin.global_obs``).

Arms (DQN, the same hyper-parameters, network and seeds in every arm; seeds as one ``jax.vmap``):

* ``partial``: ``MultiUAVPartial-v0``, ``twin=None``: the fleet sees only users within
  ``observe_radius_m`` = 150 m of some UAV (unseen users are zeros plus a visibility flag);
* ``partial_global``: ``MultiUAVPartial-v0`` with ``TwinConfig(num_domains=1, share_global_obs=True)``;
* ``full``: the fully observed ``MultiUAV-v0``, ``twin=None``: the ceiling.

Scenarios: ``fixed_layout`` is the registered default, where every reset restores the same user
layout (``user_seed=0``) and users random-walk about 10 m per episode, so the hidden information is
almost the same in every episode and can be memorised; ``resampled_layout`` sets
``resample_users=True`` (a fresh uniform layout every episode), where the partial observation really
hides something. The default mode runs ``fixed_layout``; ``--scenarios resampled_layout --merge`` adds
the other to the same ``global_obs.json`` (``--merge`` keeps the scenarios of an existing file that are
not run now), so each part fits in about ten minutes on a 2-core CPU; ``--full`` runs both.

Reported per arm: the mean user rate in Mbps per step (= episode return / 100, the horizon) against
physical episodes as a 10-episode moving average (mean +- std over seeds), the final training rate
(episodes finished in the last 10 % of training, epsilon-greedy) and the final greedy rate (the final
agent's greedy policy on fresh physical episodes, per seed).

Usage::

    python -m benchmarks.global_obs                 # default: fixed layout, 150k physical steps x 4 seeds
    python -m benchmarks.global_obs --scenarios resampled_layout --merge   # adds the resampled layouts
    python -m benchmarks.global_obs --quick         # fixed layout, 20k steps
    python -m benchmarks.global_obs --full --device gpu   # 1M physical steps (10k episodes) x 8 seeds

Outputs ``benchmarks/results/global_obs.json`` and ``global_obs.png`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import dtrl_jax as dt
from benchmarks import _common
from benchmarks.shield import (
    _config_dict,
    _read_existing,
    _silence,
    compile_and_run,
    final_training_return,
    git_info,
    make_seeded_run,
    mean_std,
    moving_average,
)
from dtrl_jax.twin.global_obs import GlobalObservation

NAME = "global_obs"

#: Episodes in the moving average of the reported curves.
SMOOTH_EPISODES = 10

MODES: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 4, "steps": 20_000, "log_every": 1_000, "eval_episodes": 4, "scenarios": ("fixed_layout",)},
    "default": {
        "seeds": 4,
        "steps": 150_000,
        "log_every": 1_000,
        "eval_episodes": 16,
        "scenarios": ("fixed_layout",),
    },
    "full": {
        "seeds": 8,
        "steps": 1_000_000,
        "log_every": 1_000,
        "eval_episodes": 32,
        "scenarios": ("fixed_layout", "resampled_layout"),
    },
}

#: Env overrides of each scenario (passed to ``dt.make``).
SCENARIOS: dict[str, dict[str, Any]] = {
    "fixed_layout": {},
    "resampled_layout": {"resample_users": True},
}

#: Arm -> (env id, TwinConfig kwargs or None).
ARMS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "partial": ("MultiUAVPartial-v0", None),
    "partial_global": ("MultiUAVPartial-v0", dict(num_domains=1, share_global_obs=True)),
    "full": ("MultiUAV-v0", None),
}


def dqn_config(total_steps: int, log_every: int) -> dt.DQNConfig:
    """The DQN of every arm: 10 envs, Adam 5e-4, gamma 0.95, huber loss, 50k replay, 1 update per 10 steps.

    epsilon decays 1 -> 0.05 over the first half of the run; ``learning_starts`` is a tenth of the run
    (at most 10,000 physical steps). The network is the default MLP (120, 84) with 625 outputs.
    """
    return dt.DQNConfig(
        total_timesteps=total_steps,
        log_every=log_every,
        num_envs=10,
        learning_rate=5e-4,
        gamma=0.95,
        epsilon_start=1.0,
        epsilon_end=0.05,
        epsilon_decay_steps=total_steps // 2,
        buffer_size=50_000,
        batch_size=64,
        learning_starts=min(10_000, total_steps // 10),
        train_every=10,
        target_update_every=1_000,
        loss="huber",
    )


def run_arm(arm: str, scenario: str, *, steps: int, log_every: int, seeds: int, eval_episodes: int) -> dict[str, Any]:
    """Train and evaluate one arm in one scenario; returns its JSON entry."""
    env_id, twin_kw = ARMS[arm]
    env, params = dt.make(env_id, **SCENARIOS[scenario])
    cfg = dqn_config(steps, log_every).replace(twin=None if twin_kw is None else dt.TwinConfig(**twin_kw))
    horizon = int(params.max_steps_in_episode)
    eval_env, eval_params = env, params
    if twin_kw is not None and twin_kw.get("share_global_obs"):
        # The agent's input is the wrapped observation; greedy evaluation reads it the same way (scale 1:
        # the twin is ready from step 0 in this benchmark).
        eval_env = GlobalObservation(env)
        eval_params = eval_env.wrap_params(params)
    fn = make_seeded_run(cfg, env, params, eval_env=eval_env, eval_params=eval_params,
                         eval_episodes=eval_episodes, eval_max_steps=horizon)
    keys = jax.random.split(jax.random.key(0), seeds)
    (metrics, ev), compile_s, run_s = compile_and_run(fn, keys)

    ret = metrics["episode_return"].astype(np.float64)
    rate = ret / horizon
    finished = metrics["episodes_finished"]
    eps_per_interval = float(np.mean(finished))
    window = max(1, int(round(SMOOTH_EPISODES / max(eps_per_interval, 1e-9))))
    smoothed = moving_average(rate, window)
    with np.errstate(invalid="ignore"), _silence():
        curve_mean = np.nanmean(smoothed, axis=0)
        curve_std = np.nanstd(smoothed, axis=0)
        raw_mean = np.nanmean(rate, axis=0)
        raw_std = np.nanstd(rate, axis=0)
    final_train = final_training_return(ret, finished) / horizon
    greedy = ev["return"].astype(np.float64).mean(axis=1) / horizon
    obs_size = int(np.prod(jax.eval_shape(lambda k: eval_env.reset(k, eval_params)[0], jax.random.key(0)).shape))
    return {
        "env_id": env_id,
        "twin": twin_kw,
        "observation_size": obs_size,
        "curves": {
            "physical_steps": [float(v) for v in metrics["physical_steps"][0]],
            "physical_episodes": [float(v) for v in metrics["physical_episodes"].astype(np.float64).mean(axis=0)],
            "mean_rate_mbps": {"mean": [float(v) for v in curve_mean], "std": [float(v) for v in curve_std]},
            "mean_rate_mbps_raw": {
                "mean": [float(v) for v in raw_mean],
                "std": [float(v) for v in raw_std],
            },
            "smoothing": {"episodes": SMOOTH_EPISODES, "window_intervals": window,
                          "episodes_per_interval": eps_per_interval},
            "epsilon": [float(v) for v in metrics["epsilon"][0]],
        },
        "summary": {
            "physical_steps": float(metrics["physical_steps"][0, -1]),
            "physical_episodes": mean_std(metrics["physical_episodes"][:, -1]),
            "first_interval_rate_mbps": mean_std(rate[:, 0]),
            "final_training_rate_mbps": mean_std(final_train),
            "greedy_eval_rate_mbps": mean_std(greedy),
            "greedy_eval_episodes_per_seed": int(ev["return"].shape[1]),
            "twin_ready_at_end": int(np.min(metrics["twin_ready"][:, -1])),
            # episode_return is NaN only in intervals where no episode finished.
            "all_finite": bool(
                np.all(np.isfinite(ret[finished > 0])) and np.any(finished > 0) and np.all(np.isfinite(ev["return"]))
            ),
        },
        "compile_s": compile_s,
        "run_s": run_s,
        "physical_steps_per_s_all_seeds": steps * seeds / run_s,
    }


def format_summary(doc: dict[str, Any]) -> str:
    rows = []
    for scenario, section in doc["scenarios"].items():
        for arm, entry in section["arms"].items():
            s = entry["summary"]
            rows.append(
                [
                    f"{scenario}/{arm}",
                    entry["observation_size"],
                    f"{s['first_interval_rate_mbps']['mean']:.3f}",
                    f"{s['final_training_rate_mbps']['mean']:.3f}±{s['final_training_rate_mbps']['std']:.3f}",
                    f"{s['greedy_eval_rate_mbps']['mean']:.3f}±{s['greedy_eval_rate_mbps']['std']:.3f}",
                    f"{entry['compile_s']:.0f}/{entry['run_s']:.0f}",
                ]
            )
    header = ["scenario/arm", "obs size", "first rate", "final train rate (Mbps)", "final greedy rate (Mbps)",
              "compile/run s"]
    return _common.format_table(header, rows)


_STYLES = {"partial": dict(color="tab:blue"), "partial_global": dict(color="tab:red"),
           "full": dict(color="black", linestyle="--")}


def plot(doc: dict[str, Any], path: Path, title: str) -> Path:
    """One panel per scenario: mean user rate (10-episode moving average) vs physical episodes."""
    from matplotlib.figure import Figure

    scen = list(doc["scenarios"])
    fig = Figure(figsize=(max(9.0, 6.5 * len(scen)), 5.0), layout="constrained")
    axes = fig.subplots(1, len(scen), squeeze=False)[0]
    for ax, scenario in zip(axes, scen):
        for arm, entry in doc["scenarios"][scenario]["arms"].items():
            c = entry["curves"]
            x = np.asarray(c["physical_episodes"])
            m = np.asarray(c["mean_rate_mbps"]["mean"], dtype=np.float64)
            s = np.asarray(c["mean_rate_mbps"]["std"], dtype=np.float64)
            ok = np.isfinite(m)
            label = {"partial": "partial obs (physical DQN)", "partial_global": "partial obs + twin global obs",
                     "full": "fully observed MultiUAV-v0 (ceiling)"}.get(arm, arm)
            (line,) = ax.plot(x[ok], m[ok], label=label, lw=1.6, **_STYLES.get(arm, {}))
            ax.fill_between(x[ok], (m - s)[ok], (m + s)[ok], color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xlabel("physical episodes")
        ax.set_ylabel(f"mean user rate (Mbps per step)\n{SMOOTH_EPISODES}-episode moving average")
        ax.set_title(scenario.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.global_obs",
        description="DQN on MultiUAVPartial-v0 with and without the twin's global observation; MultiUAV-v0 as ceiling.",
    )
    _common.add_common_args(parser)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (one vmap); default per mode")
    parser.add_argument("--steps", type=int, default=None, help="physical steps per seed")
    parser.add_argument("--log-every", type=int, default=None, help="physical steps per metrics row (multiple of 10)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="greedy evaluation episodes per seed")
    parser.add_argument("--scenarios", default=None, help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--arms", default=None, help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the scenarios not run now from an existing global_obs.json in the output directory",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``global_obs.json`` (and ``global_obs.png``) and print a summary table."""
    args = build_parser().parse_args(argv)
    mode = _common.run_mode(args)
    cfg = dict(MODES[mode])
    for field in ("seeds", "steps", "log_every", "eval_episodes"):
        value = getattr(args, field)
        if value is not None:
            if value < 1:
                raise SystemExit(f"--{field.replace('_', '-')} must be >= 1")
            cfg[field] = value
    if args.scenarios is not None:
        cfg["scenarios"] = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
        bad = set(cfg["scenarios"]) - set(SCENARIOS)
        if bad:
            raise SystemExit(f"--scenarios: unknown {sorted(bad)}; expected some of {list(SCENARIOS)}")
    arms = list(ARMS) if args.arms is None else [a.strip() for a in args.arms.split(",") if a.strip()]
    if set(arms) - set(ARMS):
        raise SystemExit(f"--arms: unknown {sorted(set(arms) - set(ARMS))}; expected some of {list(ARMS)}")
    if cfg["steps"] % cfg["log_every"] or cfg["log_every"] % 10:
        raise SystemExit(f"steps={cfg['steps']} must be a multiple of log_every={cfg['log_every']}, itself a multiple of 10")

    device = _common.select_device(args.device)
    device_name = _common.describe_device(device)
    _common.log(f"global_obs: mode={mode}, device={device_name}, {cfg}, arms={arms}")
    load_start = _common.load_average()
    wall0 = time.perf_counter()
    scenarios: dict[str, Any] = {}
    with jax.default_device(device):
        for scenario in cfg["scenarios"]:
            t_scen = time.perf_counter()
            section: dict[str, Any] = {
                "env_overrides": SCENARIOS[scenario],
                "git": git_info(),
                "mode": mode,
                "physical_steps": cfg["steps"],
                "seeds": cfg["seeds"],
                "log_every": cfg["log_every"],
                "eval_episodes": cfg["eval_episodes"],
                "timestamp_utc": _common.utc_timestamp(),
                "arms": {},
            }
            for arm in arms:
                entry = run_arm(arm, scenario, steps=cfg["steps"], log_every=cfg["log_every"], seeds=cfg["seeds"],
                                eval_episodes=cfg["eval_episodes"])
                section["arms"][arm] = entry
                s = entry["summary"]
                _common.log(
                    f"[{scenario}] {arm:<15} final train rate {s['final_training_rate_mbps']['mean']:.3f}"
                    f"±{s['final_training_rate_mbps']['std']:.3f}  greedy {s['greedy_eval_rate_mbps']['mean']:.3f}"
                    f"±{s['greedy_eval_rate_mbps']['std']:.3f} Mbps  (compile {entry['compile_s']:.0f}s, run {entry['run_s']:.0f}s)"
                )
            a = section["arms"]
            if "partial" in a and "partial_global" in a:
                gain = (np.asarray(a["partial_global"]["summary"]["final_training_rate_mbps"]["per_seed"])
                        - np.asarray(a["partial"]["summary"]["final_training_rate_mbps"]["per_seed"]))
                ggain = (np.asarray(a["partial_global"]["summary"]["greedy_eval_rate_mbps"]["per_seed"])
                         - np.asarray(a["partial"]["summary"]["greedy_eval_rate_mbps"]["per_seed"]))
                section["global_obs_gain_mbps"] = {"final_training": mean_std(gain), "greedy_eval": mean_std(ggain),
                                                   "note": "partial_global - partial, same seeds"}
            section["wall_time_s"] = time.perf_counter() - t_scen
            scenarios[scenario] = section
    wall = time.perf_counter() - wall0
    merged_from = None
    if args.merge:
        old = _read_existing(_common.results_dir(args.out) / f"{NAME}.json")
        if old is not None:
            kept = {k: v for k, v in old.get("scenarios", {}).items() if k not in scenarios}
            if kept:
                merged_from = {"scenarios": sorted(kept), "timestamp_utc": old.get("timestamp_utc")}
                scenarios = {**kept, **scenarios}
                scenarios = {k: scenarios[k] for k in SCENARIOS if k in scenarios}

    base = dqn_config(cfg["steps"], cfg["log_every"])
    payload: dict[str, Any] = {
        "description": (
            "DQN on MultiUAVPartial-v0 with and without TwinConfig(num_domains=1, share_global_obs=True), and on "
            "the fully observed MultiUAV-v0 as a ceiling; same hyper-parameters and seeds (one jax.vmap). "
            "Mean user rate in Mbps per step = episode return / 100 (the horizon). Curves: 10-episode moving "
            "average against physical episodes, mean +- std over seeds. final_training_rate = episodes finished "
            "in the last 10% of training (epsilon-greedy); greedy_eval_rate = final agent's greedy policy."
        ),
        "config": {
            "mode": mode,
            "device": args.device,
            "device_description": device_name,
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "arms": arms,
            "dqn_config": _config_dict(base),
            "load_average_at_start": load_start,
            "load_average_at_end": _common.load_average(),
        },
        "scenarios": scenarios,
        "merged_from": merged_from,
        "wall_time_s": wall,
    }
    out_dir = _common.results_dir(args.out)
    files = {}
    if not args.no_plot:
        runs = sorted({f"{sec.get('seeds', '?')} seeds x {sec.get('physical_steps', 0):,} physical steps"
                       for sec in scenarios.values()})
        title = f"Twin global observation, DQN, {'; '.join(runs)} — {device_name}"
        files["png"] = str(plot(payload, out_dir / f"{NAME}.png", title))
    files["json"] = str(out_dir / f"{NAME}.json")
    payload["files"] = {k: Path(v).name for k, v in files.items()}
    json_path = _common.write_json(NAME, payload, args.out)

    print()
    print(f"Global observation ({device_name}, mode {mode}, {wall:.0f}s total)")
    print(format_summary(payload))
    for scenario, section in scenarios.items():
        g = section.get("global_obs_gain_mbps")
        if g:
            print(f"{scenario}: global obs gain (partial_global - partial): training {g['final_training']['mean']:+.3f}"
                  f"±{g['final_training']['std']:.3f}, greedy {g['greedy_eval']['mean']:+.3f}±{g['greedy_eval']['std']:.3f} Mbps")
    print(f"\nwrote {json_path}" + (f" and {files['png']}" if "png" in files else ""))
    result = dict(payload)
    result["files"] = files
    return result


if __name__ == "__main__":
    main()

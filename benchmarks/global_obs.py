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

Reported per arm (``benchmarks.harness``; ``summary[scenario]["arms"]``, mean, std and per seed): the
final training rate (episodes finished in the last 10 % of training, epsilon-greedy) and the final
greedy rate (the final agent's greedy policy on fresh physical episodes), as the mean user rate in
Mbps per step (= episode return / 100, the horizon); ``global_obs_gain_mbps``: partial_global minus
partial on the same seeds. Curves: ``curves["<scenario>/rate"]``, the rate against physical episodes
as a 10-episode moving average (mean +- std over seeds).

Usage::

    python -m benchmarks.global_obs                 # default: fixed layout, 150k physical steps x 4 seeds
    python -m benchmarks.global_obs --scenarios resampled_layout --merge   # adds the resampled layouts
    python -m benchmarks.global_obs --quick         # fixed layout, 20k steps
    python -m benchmarks.global_obs --full --device gpu   # 1M physical steps (10k episodes) x 8 seeds

Outputs ``benchmarks/results/global_obs.json`` and ``global_obs.png`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import dtrl_jax as dt
from benchmarks import _common, harness
from dtrl_jax.twin.global_obs import GlobalObservation

NAME = "global_obs"

#: Episodes in the moving average of the reported curves.
SMOOTH_EPISODES = 10
KEEP = ("physical_steps", "physical_episodes", "episode_return", "episodes_finished", "epsilon", "twin_ready")

MODES: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 4, "steps": 20_000, "log_every": 1_000, "eval_episodes": 4, "scenarios": ("fixed_layout",)},
    "default": {"seeds": 4, "steps": 150_000, "log_every": 1_000, "eval_episodes": 16, "scenarios": ("fixed_layout",)},
    "full": {"seeds": 8, "steps": 1_000_000, "log_every": 1_000, "eval_episodes": 32,
             "scenarios": ("fixed_layout", "resampled_layout")},
}

#: Env overrides of each scenario (passed to ``dt.make``).
SCENARIOS: dict[str, dict[str, Any]] = {
    "fixed_layout": {},
    "resampled_layout": {"resample_users": True},
}

#: Arm -> (env id, TwinConfig kwargs or None).
ARMS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "partial": ("MultiUAVPartial-v0", None),
    "partial_global": ("MultiUAVPartial-v0", {"num_domains": 1, "share_global_obs": True}),
    "full": ("MultiUAV-v0", None),
}
LABELS = {"partial": "partial obs (physical DQN)", "partial_global": "partial obs + twin global obs",
          "full": "fully observed MultiUAV-v0 (ceiling)"}
COLORS = {"partial": "tab:blue", "partial_global": "tab:red", "full": "black"}


def dqn_config(total_steps: int, log_every: int) -> dt.DQNConfig:
    """The DQN of every arm: 10 envs, Adam 5e-4, gamma 0.95, huber loss, 50k replay, 1 update per 10 steps.

    epsilon decays 1 -> 0.05 over the first half of the run; ``learning_starts`` is a tenth of the run
    (at most 10,000 physical steps). The network is the default MLP (120, 84) with 625 outputs.
    """
    return dt.DQNConfig(total_timesteps=total_steps, log_every=log_every, num_envs=10, learning_rate=5e-4,
                        gamma=0.95, epsilon_start=1.0, epsilon_end=0.05, epsilon_decay_steps=total_steps // 2,
                        buffer_size=50_000, batch_size=64, learning_starts=min(10_000, total_steps // 10),
                        train_every=10, target_update_every=1_000, loss="huber")


def observation_size(env, params, twin_kw) -> int:
    """Size of the observation the agent sees (the env's, plus the twin's global view when shared)."""
    if twin_kw is not None and twin_kw.get("share_global_obs"):
        env = GlobalObservation(env)
        params = env.wrap_params(params)
    return int(math.prod(jax.eval_shape(lambda k: env.reset(k, params)[0], jax.random.key(0)).shape))


def run_scenario(scenario: str, arm_names: Sequence[str], st: dict[str, Any], device):
    """Train and evaluate the arms in one scenario (one ``run_arms`` per env); config, summary, panels."""
    t0 = time.perf_counter()
    base = dqn_config(st["steps"], st["log_every"])
    runs: dict[str, Any] = {}
    config_arms: dict[str, Any] = {}
    horizon = None
    for env_id in dict.fromkeys(ARMS[a][0] for a in arm_names):
        env, params = dt.make(env_id, **SCENARIOS[scenario])
        horizon = int(params.max_steps_in_episode)
        names = [a for a in arm_names if ARMS[a][0] == env_id]
        arms = [harness.Arm(a, base.replace(twin=None if ARMS[a][1] is None else dt.TwinConfig(**ARMS[a][1])))
                for a in names]
        runs.update(harness.run_arms(arms, env, params, seeds=st["seeds"], device=device, keep=KEEP,
                                     final_eval=st["eval_episodes"]))
        for a in names:
            config_arms[a] = {"env": env_id, "twin": ARMS[a][1], "observation_size": observation_size(env, params, ARMS[a][1])}
    runs = {a: runs[a] for a in arm_names}
    arms_summary = {}
    for a, m in runs.items():
        finished = m["episodes_finished"]
        ret = np.asarray(m["episode_return"], np.float64)
        arms_summary[a] = {
            "physical_episodes": harness.per_seed(m["physical_episodes"][:, -1]),
            "first_interval_rate_mbps": harness.per_seed(ret[:, 0] / horizon),
            "final_training_rate_mbps": harness.per_seed(harness.final_training_return(ret, finished) / horizon),
            "greedy_eval_rate_mbps": harness.per_seed(np.mean(m["_final_eval"]["return"], axis=1) / horizon),
            "greedy_eval_episodes_per_seed": int(m["_final_eval"]["return"].shape[1]),
            "twin_ready_at_end": int(np.min(m["twin_ready"][:, -1])),
            "compile_s": m["_timing"]["compile_s"], "run_s": m["_timing"]["run_s"],
            # episode_return is NaN only in intervals where no episode finished.
            "all_finite": bool(np.any(finished > 0) and np.all(np.isfinite(ret[finished > 0]))
                               and np.all(np.isfinite(m["_final_eval"]["return"]))),
        }
    summary: dict[str, Any] = {"arms": arms_summary}
    if "partial" in runs and "partial_global" in runs:
        g, p = arms_summary["partial_global"], arms_summary["partial"]
        summary["global_obs_gain_mbps"] = {
            k: harness.paired(g[f"{k}_rate_mbps"]["per_seed"], p[f"{k}_rate_mbps"]["per_seed"])
            for k in ("final_training", "greedy_eval")} | {"note": "partial_global - partial, same seeds"}
    # log_every physical steps (all envs together) finish log_every / horizon episodes per interval.
    window = max(1, round(SMOOTH_EPISODES * horizon / st["log_every"]))
    curves = {f"{scenario}/rate": harness.panel(
        runs, y="episode_return", x="physical_episodes", smooth=window, scale=1.0 / horizon,
        ylabel=f"mean user rate (Mbps per step)\n{SMOOTH_EPISODES}-episode moving average")}
    config = harness.stamped({
        "env_overrides": SCENARIOS[scenario], "physical_steps": st["steps"], "seeds": st["seeds"],
        "log_every": st["log_every"], "eval_episodes": st["eval_episodes"], "horizon": horizon,
        "smoothing_intervals": window, "arms": config_arms,
        "dqn_config": dataclasses.asdict(base),
        "twin_replay": "no twin replay: num_domains=1, no action trials (the twin only supplies the global view)",
    }, time.perf_counter() - t0)
    for a, s in arms_summary.items():
        _common.log(f"[{scenario}] {a:<15} final train rate {s['final_training_rate_mbps']['mean']:.3f}"
                    f"±{s['final_training_rate_mbps']['std']:.3f}  greedy {s['greedy_eval_rate_mbps']['mean']:.3f}"
                    f"±{s['greedy_eval_rate_mbps']['std']:.3f} Mbps")
    return config, summary, curves


def format_summary(doc: dict[str, Any]) -> str:
    """One row per scenario/arm."""
    rows = []
    for scenario, section in doc["summary"].items():
        for arm, s in section["arms"].items():
            size = doc["config"]["sections"][scenario]["arms"][arm]["observation_size"]
            rows.append([f"{scenario}/{arm}", size, f"{s['first_interval_rate_mbps']['mean']:.3f}",
                         *(f"{s[k]['mean']:.3f}±{s[k]['std']:.3f}"
                           for k in ("final_training_rate_mbps", "greedy_eval_rate_mbps")),
                         f"{s['compile_s']:.0f}/{s['run_s']:.0f}"])
    header = ["scenario/arm", "obs size", "first rate", "final train rate (Mbps)", "final greedy rate (Mbps)",
              "compile/run s"]
    return _common.format_table(header, rows)


def plot(doc: dict[str, Any], path) -> None:
    """One panel per scenario: mean user rate (10-episode moving average) vs physical episodes."""
    from matplotlib.figure import Figure

    scen = list(doc["summary"])
    fig = Figure(figsize=(max(9.0, 6.5 * len(scen)), 5.0), layout="constrained")
    axes = fig.subplots(1, len(scen), squeeze=False)[0]
    for ax, scenario in zip(axes, scen):
        panel = doc["curves"][f"{scenario}/rate"]
        panel = {**panel, "series": {LABELS.get(a, a): s for a, s in panel["series"].items()}}
        harness.draw_panel(ax, panel, colors={LABELS[a]: c for a, c in COLORS.items()})
        ax.set_title(scenario.replace("_", " "))
        ax.legend(fontsize=8)
    sec = doc["config"]["sections"]
    runs = sorted({f"{s['seeds']} seeds x {s['physical_steps']:,} physical steps" for s in sec.values()})
    fig.suptitle(f"Twin global observation, DQN, {'; '.join(runs)}", fontsize=10)
    fig.savefig(path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.global_obs", description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    for flag, what in (("seeds", "seeds per arm"), ("steps", "physical steps per seed"),
                       ("log-every", "physical steps per metrics row (multiple of 10)"),
                       ("eval-episodes", "greedy episodes of the final agent per seed")):
        parser.add_argument(f"--{flag}", type=int, default=None, help=f"{what} (default per mode)")
    parser.add_argument("--scenarios", default=None, help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--arms", default=None, help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--merge", action="store_true",
                        help="keep the scenarios not run now from an existing global_obs.json in the output directory")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``global_obs.json`` (and ``global_obs.png``); print the summary; return the document."""
    args = build_parser().parse_args(argv)
    mode = _common.run_mode(args)
    st = _common.override(MODES[mode], args, ("seeds", "steps", "log_every", "eval_episodes"))
    st["scenarios"] = tuple(_common.subset(args.scenarios, list(SCENARIOS), "scenarios") or st["scenarios"])
    arms = _common.subset(args.arms, list(ARMS), "arms") or list(ARMS)
    if st["steps"] % st["log_every"] or st["log_every"] % 10:
        raise SystemExit(f"steps={st['steps']} must be a multiple of log_every={st['log_every']}, itself a multiple of 10")
    device = _common.select_device(args.device)
    _common.log(f"{NAME}: mode={mode}, device={_common.describe_device(device)}, {st}, arms={arms}")
    config = {"device": _common.describe_device(device), "load_average_at_start": _common.load_average()}
    sections = {scenario: run_scenario(scenario, arms, st, device) for scenario in st["scenarios"]}
    doc = harness.write_sections(NAME, sections, mode=mode, config=config, order=list(SCENARIOS), out=args.out,
                                 merge=args.merge, plot=None if args.no_plot else plot)
    summary = doc["summary"]
    print(format_summary(doc))
    for scenario, section in summary.items():
        g = section.get("global_obs_gain_mbps")
        if g:
            print(f"{scenario}: global obs gain (partial_global - partial): training {g['final_training']['mean']:+.3f}"
                  f"±{g['final_training']['std']:.3f}, greedy {g['greedy_eval']['mean']:+.3f}±{g['greedy_eval']['std']:.3f} Mbps")
    return doc


if __name__ == "__main__":
    main()

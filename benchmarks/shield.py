"""Safe exploration: physical safety violations with and without the digital twin's shield.

The paper's "driving safety" application (Cheng et al., IEEE Network 2024): an exploratory physical
action is first tried in the twin, and an action the twin sees fail is not taken physically. In
``dtrl_jax`` this is ``TwinConfig(shield=True)``: an epsilon-exploratory action that the identical
domain flags with ``info["violation"]`` is replaced by the greedy action, and the vetoed action's twin
transition is learned (tabular Q updates on it; DQN keeps it in a replay of its own,
``DQNStorage.vetoed``, drawn like physical experience). On ``AccessPointSelection-v0`` a violation is
a failed URLLC task (coverage passed, left the coverage before the last bit, or deadline missed).

Arms (every arm runs the *same* number of physical steps on the same seed keys; ``benchmarks.harness``):

* QL (tabular, index observation): ``physical`` (``twin=None``); ``twin_no_shield``
  (``TwinConfig(num_domains=2)``, the twin present and no feature on: by construction the same
  program as ``physical``, the JSON records whether the curves agree exactly); ``shield``
  (``num_domains=2, shield=True``); ``shield_checked`` (the same with the per-env health check,
  ``health_samples=4``, which gates the shield); ``trials5`` (``num_domains=5, action_trials=5``) and
  ``shield_trials5`` (the same with the shield).
* DQN (feature observation; ``--agents dqn``, in ``--full``): ``physical`` and ``shield``.

Reported per arm in ``summary[agent]["arms"]`` (mean, std and the per-seed values): violations per
1,000 physical steps in the first and last 10 % of training and in total; ``shielded`` (exploratory
actions the shield replaced); the training return (episodes finished in the last 10 %, epsilon-greedy,
shield active); the greedy return (the final agent's greedy policy, no shield, ``eval_episodes`` fresh
physical episodes per seed) and its violation rate. ``summary[agent]["comparisons"]``: each shielded
arm against its control, with the *cost of the shield* (control minus shielded, per seed) for both
returns. Curves (``curves["ql/violations"]`` ...): cumulative violations and shielded actions against
physical steps, training return (moving average) and greedy return (``eval_return``) against
physical episodes.

Usage::

    python -m benchmarks.shield                        # QL, 200k physical steps (~1,800 episodes) x 8 seeds
    python -m benchmarks.shield --agents dqn --merge   # adds DQN (150k steps x 8 seeds) to shield.json
    python -m benchmarks.shield --quick                # QL, 20k steps x 8 seeds
    python -m benchmarks.shield --full --device gpu    # paper scale: 2.24M steps (20k episodes) x 16 seeds

``--merge`` keeps the sections of the other agent from an existing ``shield.json`` (harness schema).
Outputs ``benchmarks/results/shield.json`` and ``shield.png`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import dtrl_jax as dt
from benchmarks import _common, harness
from dtrl_jax import convergence
from dtrl_jax.storage import twin_capacity_per_domain

NAME = "shield"
ENV_ID = "AccessPointSelection-v0"
AGENTS = ("ql", "dqn")
KEEP = ("physical_steps", "physical_episodes", "episode_return", "episodes_finished", "twin_transitions",
        "epsilon", "violations", "shielded", "twin_ready", "twin_faults", "eval_return")

#: Per mode: seeds, physical steps per seed of each agent, steps per metrics row, greedy episodes of
#: the final agent per seed, greedy episodes per interval (the ``eval_return`` curve), agents run.
MODES: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 8, "ql_steps": 20_000, "dqn_steps": 10_000, "log_every": 1_000, "eval_episodes": 8,
              "curve_eval_episodes": 2, "agents": ("ql",)},
    "default": {"seeds": 8, "ql_steps": 200_000, "dqn_steps": 150_000, "log_every": 1_000, "eval_episodes": 32,
                "curve_eval_episodes": 4, "agents": ("ql",)},
    "full": {"seeds": 16, "ql_steps": 2_240_000, "dqn_steps": 500_000, "log_every": 10_000, "eval_episodes": 64,
             "curve_eval_episodes": 8, "agents": ("ql", "dqn")},
}

#: Arm -> (TwinConfig kwargs or None, the control arm a shielded arm is compared with).
ARMS: dict[str, dict[str, tuple[dict | None, str | None]]] = {
    "ql": {
        "physical": (None, None),
        "twin_no_shield": ({"num_domains": 2}, None),
        "shield": ({"num_domains": 2, "shield": True}, "physical"),
        "shield_checked": ({"num_domains": 2, "shield": True, "health_samples": 4}, "physical"),
        "trials5": ({"num_domains": 5, "action_trials": 5}, None),
        "shield_trials5": ({"num_domains": 5, "action_trials": 5, "shield": True}, "trials5"),
    },
    "dqn": {
        "physical": (None, None),
        "shield": ({"num_domains": 2, "shield": True}, "physical"),
    },
}

COLORS = {"physical": "tab:blue", "twin_no_shield": "tab:cyan", "shield": "tab:red", "shield_checked": "tab:purple",
          "trials5": "tab:green", "shield_trials5": "tab:orange"}


def base_config(agent: str, steps: int, log_every: int, curve_eval_episodes: int):
    """QL: alpha 0.1, gamma 0.9, epsilon 1 -> 0.05 over half the run (as ``dtrl_jax.experiment.demo``). DQN: 10 envs,
    Adam 5e-4, gamma 0.9, huber, 20k replay, one update per 10 steps, ``learning_starts`` a tenth of the
    run (at most 10,000) so that short runs still learn."""
    common = {"total_timesteps": steps, "log_every": log_every, "eval_episodes": curve_eval_episodes, "gamma": 0.9,
              "epsilon_start": 1.0, "epsilon_end": 0.05, "epsilon_decay_steps": steps // 2}
    if agent == "ql":
        return dt.QLearningConfig(learning_rate=0.1, **common)
    return dt.DQNConfig(num_envs=10, learning_rate=5e-4, buffer_size=20_000, batch_size=64,
                        learning_starts=min(10_000, steps // 10), train_every=10, target_update_every=500,
                        loss="huber", **common)


def twin_replay(cfg) -> dict[str, Any]:
    """How twin data is replayed in an arm (issue 15 item 8: reported in every benchmark JSON)."""
    twin = cfg.twin
    if twin is None:
        return {"twin": None}
    if isinstance(cfg, dt.QLearningConfig):
        return {"replay": None, "note": "tabular: each twin (and vetoed) transition is one Q update when made"}
    out: dict[str, Any] = {"twin_buffer_size": twin.twin_buffer_size, "twin_data_fraction": twin.twin_data_fraction}
    if twin.uses_trials:
        per = twin_capacity_per_domain(cfg.buffer_size, twin.twin_buffer_size, twin.action_trials - 1, cfg.num_envs)
        out.update(twin_buffer_per_domain=per, twin_window_physical_steps=per // cfg.num_envs)
    if twin.shield:
        out.update(vetoed_buffer_size=cfg.buffer_size,
                   vetoed_draw="each slot of the physical share: n_vetoed / (n_vetoed + n_physical)")
    out["physical_window_physical_steps"] = cfg.buffer_size // cfg.num_envs
    return out


def summarise_arm(m: dict[str, Any]) -> dict[str, Any]:
    """Summary figures of one arm from its ``[seeds, intervals]`` metrics and final evaluation."""
    steps, viol, shielded = (np.asarray(m[k], np.float64) for k in ("physical_steps", "violations", "shielded"))
    ev = m["_final_eval"]
    total = steps[:, -1]
    rate = {f"{w}_10pct": harness.per_seed(harness.window_rate(viol, steps, *span))
            for w, span in (("first", (0.0, 0.1)), ("last", (0.9, 1.0)))}
    return {
        "physical_steps": float(total[0]),
        "physical_episodes": harness.per_seed(m["physical_episodes"][:, -1]),
        "total_violations": harness.per_seed(viol[:, -1]),
        "violations_per_1k_steps": {**rate, "whole_run": harness.per_seed(viol[:, -1] / total * 1000)},
        "total_shielded": harness.per_seed(shielded[:, -1]),
        "shielded_per_1k_steps": {f"{w}_10pct": harness.per_seed(harness.window_rate(shielded, steps, *span))
                                  for w, span in (("first", (0.0, 0.1)), ("last", (0.9, 1.0)))},
        "twin_transitions": harness.per_seed(m["twin_transitions"][:, -1]),
        "twin_faults": harness.per_seed(m["twin_faults"][:, -1]),
        "final_training_return": harness.per_seed(harness.final_training_return(m["episode_return"],
                                                                                m["episodes_finished"])),
        "greedy_eval_return": harness.per_seed(np.mean(ev["return"], axis=1)),
        "greedy_eval_violations_per_1k_steps": harness.per_seed(
            ev["violations"].sum(1) / np.maximum(ev["length"].sum(1), 1) * 1000),
        "greedy_eval_episodes_per_seed": int(ev["return"].shape[1]),
        "greedy_curve_plateau": harness.per_seed(convergence.plateau(np.asarray(m["eval_return"], np.float64))),
        "compile_s": m["_timing"]["compile_s"],
        "run_s": m["_timing"]["run_s"],
        "all_finite": bool(np.all(np.isfinite(viol)) and np.all(np.isfinite(ev["return"]))
                           and np.any(m["episodes_finished"] > 0)
                           and np.all(np.isfinite(np.asarray(m["episode_return"])[m["episodes_finished"] > 0]))),
    }


def compare(arm: dict[str, Any], control: dict[str, Any]) -> dict[str, Any]:
    """A shielded arm against its control: violation reductions and the cost (control - shielded, per seed)."""

    def reduction(get) -> float:
        a, b = get(arm)["mean"], get(control)["mean"]
        return float("nan") if b == 0 else 1.0 - a / b

    def cost(key: str) -> dict[str, Any]:
        return harness.paired(control[key]["per_seed"], arm[key]["per_seed"])

    return {
        "total_violations_reduction": reduction(lambda s: s["total_violations"]),
        "first_10pct_violation_rate_reduction": reduction(lambda s: s["violations_per_1k_steps"]["first_10pct"]),
        "last_10pct_violation_rate_reduction": reduction(lambda s: s["violations_per_1k_steps"]["last_10pct"]),
        "violations_avoided": cost("total_violations"),
        "greedy_violation_rate_reduction_per_1k": cost("greedy_eval_violations_per_1k_steps"),
        "training_return_cost": cost("final_training_return"),
        "greedy_return_cost": cost("greedy_eval_return"),
        "note": "cost = control - shielded on the same seeds; negative = the shielded arm ended higher",
    }


def run_agent(agent: str, st: dict[str, Any], device, arm_names: Sequence[str] | None):
    """Train and evaluate the arms of ``agent``; returns its config section, summary section and panels."""
    env, params = dt.make(ENV_ID, observation="index" if agent == "ql" else "features")
    steps = st[f"{agent}_steps"]
    base = base_config(agent, steps, st["log_every"], st["curve_eval_episodes"])
    table = {n: v for n, v in ARMS[agent].items() if arm_names is None or n in arm_names}
    arms = [harness.Arm(n, base.replace(twin=None if kw is None else dt.TwinConfig(**kw))) for n, (kw, _) in table.items()]
    t0 = time.perf_counter()
    runs = harness.run_arms(arms, env, params, seeds=st["seeds"], device=device, keep=KEEP,
                            final_eval=st["eval_episodes"])
    wall = time.perf_counter() - t0
    arm_summary = {n: summarise_arm(runs[n]) for n in table}
    comparisons = {f"{n}_vs_{c}": compare(arm_summary[n], arm_summary[c])
                   for n, (_, c) in table.items() if c is not None and c in arm_summary}
    summary: dict[str, Any] = {"arms": arm_summary, "comparisons": comparisons}
    if "physical" in runs and "twin_no_shield" in runs:
        summary["twin_no_shield_identical_to_physical"] = bool(
            np.array_equal(runs["physical"]["violations"], runs["twin_no_shield"]["violations"]))
    smooth = max(1, round(base.num_intervals / 50))
    curves = {
        f"{agent}/violations": harness.panel(runs, y="violations", x="physical_steps",
                                             ylabel="cumulative physical violations (failed URLLC tasks)"),
        f"{agent}/shielded": harness.panel(runs, y="shielded", x="physical_steps",
                                           ylabel="cumulative shielded exploratory actions"),
        f"{agent}/training_return": harness.panel(runs, y="episode_return", smooth=smooth,
                                                  ylabel=f"training return ({smooth}-interval moving average)"),
        f"{agent}/greedy_return": harness.panel(runs, y="eval_return",
                                                ylabel="greedy return (eval_return, no shield)"),
    }
    cfg_dict = dataclasses.asdict(base.replace(twin=None))
    config = harness.stamped({
        "env": ENV_ID, "observation": params.observation, "num_states": None if agent == "dqn" else int(env.num_states(params)),
        "agent": agent, "physical_steps": steps, "seeds": st["seeds"], "log_every": st["log_every"],
        "eval_episodes": st["eval_episodes"], "curve_eval_episodes": st["curve_eval_episodes"],
        "base_config": cfg_dict, "smoothing_intervals": smooth,
        "arms": {n: {"twin": kw, "control": c, "twin_replay": twin_replay(a.config)}
                 for (n, (kw, c)), a in zip(table.items(), arms)},
        "vetoed_transitions_learned": True,
    }, wall)
    for n, s in arm_summary.items():
        v = s["violations_per_1k_steps"]
        _common.log(f"[{agent}] {n:<15} viol/1k first10% {v['first_10pct']['mean']:7.1f} last10% "
                    f"{v['last_10pct']['mean']:6.1f}  total {s['total_violations']['mean']:9.0f}  shielded "
                    f"{s['total_shielded']['mean']:8.0f}  train {s['final_training_return']['mean']:6.1f}  greedy "
                    f"{s['greedy_eval_return']['mean']:6.1f}  faults {s['twin_faults']['mean']:5.0f}")
    return config, summary, curves


def format_summary(summary: dict[str, Any]) -> str:
    """The summary table (one row per agent/arm) and one line per comparison."""
    rows, lines = [], []
    for agent, sec in summary.items():
        for arm, s in sec["arms"].items():
            v = s["violations_per_1k_steps"]
            rows.append([f"{agent}/{arm}", *(f"{x['mean']:.1f}±{x['std']:.1f}" for x in (v["first_10pct"], v["last_10pct"])),
                         f"{s['total_violations']['mean']:.0f}±{s['total_violations']['std']:.0f}",
                         f"{s['total_shielded']['mean']:.0f}",
                         *(f"{s[k]['mean']:.1f}±{s[k]['std']:.1f}" for k in ("final_training_return", "greedy_eval_return")),
                         f"{s['greedy_eval_violations_per_1k_steps']['mean']:.1f}"])
        for name, c in sec["comparisons"].items():
            lines.append(f"{agent}/{name}: violations -{100 * c['total_violations_reduction']:.1f}% total, "
                         f"-{100 * c['first_10pct_violation_rate_reduction']:.1f}% first 10%, "
                         f"-{100 * c['last_10pct_violation_rate_reduction']:.1f}% last 10%; cost (control - shield): "
                         f"training {c['training_return_cost']['mean']:+.2f}±{c['training_return_cost']['std']:.2f}, "
                         f"greedy {c['greedy_return_cost']['mean']:+.2f}±{c['greedy_return_cost']['std']:.2f}")
        if "twin_no_shield_identical_to_physical" in sec:
            lines.append(f"{agent}: twin_no_shield identical to physical: {sec['twin_no_shield_identical_to_physical']}")
    header = ["arm", "viol/1k first10%", "viol/1k last10%", "total viol", "shielded", "train return",
              "greedy return", "greedy viol/1k"]
    return "\n".join([_common.format_table(header, rows), "", *lines])


def plot(doc: dict[str, Any], path) -> None:
    """Three panels: cumulative violations vs physical steps; training and greedy return vs physical episodes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(18, 5), layout="constrained")
    axes = fig.subplots(1, 3)
    for agent in AGENTS:
        if f"{agent}/violations" not in doc["curves"]:
            continue
        for ax, what in zip(axes, ("violations", "training_return", "greedy_return")):
            harness.draw_panel(ax, doc["curves"][f"{agent}/{what}"], colors=COLORS, origin=what == "violations",
                               linestyle="--" if agent == "dqn" else "-", label_prefix=f"{agent.upper()} ")
    for ax, title in zip(axes, ("Physical safety violations", "Training return (epsilon-greedy, shield on)",
                                "Greedy evaluation at each interval (no shield)")):
        ax.set_title(f"{title} (mean ± std over seeds)", fontsize=10)
        ax.legend(fontsize=7)
    sec = doc["config"]["sections"]
    fig.suptitle(f"Shield on {ENV_ID}: " + ", ".join(
        f"{a.upper()} {s['seeds']} seeds x {s['physical_steps']:,} physical steps" for a, s in sec.items()))
    fig.savefig(path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shield", description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    for flag, what in (("seeds", "seeds per arm"), ("ql-steps", "physical steps per seed, Q-learning"),
                       ("dqn-steps", "physical steps per seed, DQN"), ("log-every", "physical steps per metrics row"),
                       ("eval-episodes", "greedy episodes of the final agent per seed")):
        parser.add_argument(f"--{flag}", type=int, default=None, help=f"{what} (default per mode)")
    parser.add_argument("--agents", default=None, help="comma-separated subset of ql,dqn (default per mode)")
    parser.add_argument("--arms", default=None, help="comma-separated subset of the arms (default: all)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--merge", action="store_true", help="keep the other agent's sections of an existing shield.json")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the study; write ``shield.json`` (and ``shield.png``); print the summary; return the document."""
    args = build_parser().parse_args(argv)
    mode = _common.run_mode(args)
    st = _common.override(MODES[mode], args, ("seeds", "ql_steps", "dqn_steps", "log_every", "eval_episodes"))
    st["agents"] = tuple(_common.subset(args.agents, AGENTS, "agents") or st["agents"])
    arm_names = _common.subset(args.arms, sorted({a for t in ARMS.values() for a in t}), "arms")
    for agent in st["agents"]:
        if st[f"{agent}_steps"] % st["log_every"]:
            raise SystemExit(f"{agent}_steps={st[f'{agent}_steps']} must be a multiple of log_every={st['log_every']}")
    device = _common.select_device(args.device)
    _common.log(f"{NAME}: mode={mode}, device={_common.describe_device(device)}, {st}")
    config = {"env": ENV_ID, "device": _common.describe_device(device), "load_average_at_start": _common.load_average()}
    sections = {agent: run_agent(agent, st, device, arm_names) for agent in st["agents"]}
    doc = harness.write_sections(NAME, sections, mode=mode, config=config, order=AGENTS, out=args.out,
                                 merge=args.merge, plot=None if args.no_plot else plot)
    print(format_summary(doc["summary"]))
    return doc


if __name__ == "__main__":
    main()

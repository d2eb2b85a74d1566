"""What greedy evaluation costs: time per logging interval with 0 / 8 / 32 ``eval_episodes``.

``python -m benchmarks.eval_cost [--quick] [--device cpu|gpu] [--out DIR]``

Evaluation runs inside the compiled program at the end of every logging interval (see
``dtrl_jax.evaluate``): E greedy episodes, vmapped, in a ``while_loop`` that stops when all of them
have ended. Its cost per interval is about ``E x episode length`` env steps plus one Q-evaluation per
step and episode, against ``log_every`` training steps (with their updates and twin work). For each
case this script compiles ``train`` once per E (E is static) and times whole runs
(``_common.time_compiled``: compile separate, best of the repeats), then reports seconds per interval,
the overhead against E = 0 and the evaluation's own cost per episode. On a CPU the overhead is
computed from this process's CPU seconds (steadier than wall time on a shared machine; the wall
figures are stored too).

Cases (one seed each, library defaults otherwise):
  * ``ql-ap``: tabular Q on ``AccessPointSelection-v0``, 1 env, ``log_every`` 3,000 (about 25
    training episodes per interval; an evaluation episode is up to 300 steps).
  * ``dqn-uav``: DQN on ``MultiUAV-v0``, 10 envs, ``log_every`` 1,000 (100-step episodes).
  * ``dqn-cartpole``: DQN on gymnax ``CartPole-v1``, 10 envs, ``log_every`` 1,000 (episodes up to 500).
Writes ``eval_cost.json`` (harness schema ``dtrl-bench/1``: ``summary["cases"][case]["rows"]`` per E,
panels ``s_per_interval`` and ``overhead`` against E, one series per case) and ``eval_cost.png``.
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnax
import jax
import numpy as np

import dtrl_jax as dt
from benchmarks import _common, harness

NAME = "eval_cost"

CASES: dict[str, dict[str, Any]] = {
    "ql-ap": dict(env="AccessPointSelection-v0", agent="ql", num_envs=1, log_every=3_000),
    "dqn-uav": dict(env="MultiUAV-v0", agent="dqn", num_envs=10, log_every=1_000),
    "dqn-cartpole": dict(env="CartPole-v1", agent="dqn", num_envs=10, log_every=1_000),
}

MODES = {
    "quick": dict(episodes=(0, 2), intervals=2, repeats=1, scale=0.1),
    "default": dict(episodes=(0, 8, 32), intervals=10, repeats=7, scale=1.0),
    "full": dict(episodes=(0, 8, 32, 128), intervals=10, repeats=5, scale=1.0),
}


def make_case(name: str, eval_episodes: int, intervals: int, scale: float):
    """``(train, config)`` of one case with ``eval_episodes`` greedy episodes per interval."""
    c = CASES[name]
    log_every = max(c["num_envs"], int(c["log_every"] * scale) // c["num_envs"] * c["num_envs"])
    total = log_every * intervals
    if c["env"] == "CartPole-v1":
        env, params = gymnax.make("CartPole-v1")
    else:
        env, params = dt.make(c["env"])
    common = dict(total_timesteps=total, num_envs=c["num_envs"], log_every=log_every, eval_episodes=eval_episodes)
    if c["agent"] == "ql":
        cfg = dt.QLearningConfig(**common)
    else:
        cfg = dt.DQNConfig(**common, learning_starts=min(total // 4, 1_000))
    return dt.make_train(cfg, env, params), cfg


def measure(name: str, episodes: tuple[int, ...], intervals: int, repeats: int, scale: float,
            device: jax.Device) -> dict[str, Any]:
    rows = []
    key = jax.device_put(jax.random.key(0), device)
    for e in episodes:
        train, cfg = make_case(name, e, intervals, scale)
        timing = _common.time_compiled(train, key, repeats=repeats)
        m = timing.output.metrics
        rows.append({
            "eval_episodes": e,
            "compile_s": timing.trace_and_compile_s,
            "s_per_interval": timing.best_s / intervals,
            "s_per_interval_median": timing.median_s / intervals,
            "cpu_s_per_interval": timing.best_cpu_s / intervals,
            "mean_eval_length": float(np.nanmean(np.asarray(m["eval_length"]))) if e else None,
        })
        _common.log(f"  {name:13s} E={e:3d}: {rows[-1]['s_per_interval'] * 1e3:8.1f} ms/interval "
                    f"(compile {rows[-1]['compile_s']:.1f} s)")
    # On a CPU backend, CPU seconds of this process are steadier than wall time when other processes
    # share the cores (see _common.Timing); on an accelerator only wall time means anything.
    basis = "cpu_s_per_interval" if device.platform == "cpu" else "s_per_interval"
    base = rows[0][basis]
    for r in rows:
        r["overhead_vs_no_eval"] = r[basis] / base - 1.0
        extra = r[basis] - base
        r["ms_per_eval_episode"] = extra / r["eval_episodes"] * 1e3 if r["eval_episodes"] else None
    return {"log_every": cfg.log_every, "num_envs": cfg.num_envs, "intervals": intervals, "timing_basis": basis,
            "rows": rows}


def plot(doc: dict[str, Any], png) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = doc["summary"]["cases"]
    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 3.2), squeeze=False)
    for ax, (name, case) in zip(axes[0], cases.items()):
        e = [r["eval_episodes"] for r in case["rows"]]
        t = [r[case["timing_basis"]] * 1e3 for r in case["rows"]]
        ax.bar([str(v) for v in e], t, color="tab:blue")
        for i, r in enumerate(case["rows"]):
            ax.text(i, t[i], f"+{100 * r['overhead_vs_no_eval']:.0f}%", ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{name} (log_every {case['log_every']:,})", fontsize=9)
        ax.set_xlabel("eval_episodes per interval")
        ax.set_ylabel("ms per logging interval" + (" (CPU time)" if case["timing_basis"].startswith("cpu") else ""))
    fig.suptitle(f"cost of greedy evaluation ({doc['config']['device']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict[str, Any]:
    parser = _common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {unknown}; choose from {sorted(CASES)}")
    mode = _common.run_mode(args)
    setting = MODES[mode]
    device = _common.select_device(args.device)
    _common.log(f"{NAME} ({mode}) on {_common.describe_device(device)}")
    with jax.default_device(device):
        results = {c: measure(c, setting["episodes"], setting["intervals"], setting["repeats"], setting["scale"],
                              device) for c in cases}
    config = {"device": _common.describe_device(device), "setting": dict(setting),
              "cases": {c: {**CASES[c], **{k: v for k, v in r.items() if k != "rows"}} for c, r in results.items()}}
    summary = {"cases": results}  # per case and E: seconds per interval, overhead vs E = 0, cost per episode
    rows = [{"case": c, **row, "basis_s": row[r["timing_basis"]]} for c, r in results.items() for row in r["rows"]]
    curves = {
        "s_per_interval": harness.points_panel(rows, x="eval_episodes", y="basis_s", series_of=lambda row: row["case"],
                                               xlabel="eval_episodes per logging interval",
                                               ylabel="seconds per logging interval (the case's timing basis)"),
        "overhead": harness.points_panel(rows, x="eval_episodes", y="overhead_vs_no_eval",
                                         series_of=lambda row: row["case"], xlabel="eval_episodes per logging interval",
                                         ylabel="overhead against eval_episodes = 0 (fraction)"),
    }
    doc = {"config": config, "summary": summary, "curves": curves}
    harness.write(NAME, mode=mode, **doc, out=args.out, plot=lambda png: plot(doc, png))
    return doc


if __name__ == "__main__":
    main()

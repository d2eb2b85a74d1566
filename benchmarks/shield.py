"""Safe exploration: physical safety violations with and without the digital twin's shield.

The paper's "driving safety" application (Cheng et al., IEEE Network 2024): an exploratory physical
action is first tried in the twin, and an action the twin sees fail is not taken physically. In
``dtrl_jax`` this is ``TwinConfig(shield=True)``: an epsilon-exploratory action that the identical
domain flags with ``info["violation"]`` is replaced by the greedy action (see
``dtrl_jax.train`` / ``dtrl_jax.twin.space.DigitalSpace.shield_violation``). On
``AccessPointSelection-v0`` a violation is a failed URLLC task (coverage passed, left the coverage
before the last bit, or deadline missed).

Arms (tabular ``QLearningConfig`` on the index observation; every arm runs the *same* number of
physical steps, seeds as one ``jax.vmap`` over keys, the same seeds in every arm):

* ``physical``: ``twin=None``, plain physical Q-learning;
* ``twin_no_shield``: ``TwinConfig(num_domains=2)``, the twin present but no feature on (by
  construction the same program as ``physical``; the JSON records whether the curves agree exactly);
* ``shield``: ``TwinConfig(num_domains=2, shield=True)``; tabular Q learns each vetoed action's twin
  transition (the risk is learned in the twin without its physical consequence);
* ``shield_checked``: the same with the per-env health check (``health_samples=4``), which gates the
  shield: on this stochastic env a right twin must keep passing it (``twin_faults`` near 0);
* ``trials5``: ``TwinConfig(num_domains=5, action_trials=5)`` (the control of the next arm);
* ``shield_trials5``: ``TwinConfig(num_domains=5, action_trials=5, shield=True)``.

With ``--agents dqn`` (``--full`` includes it) the same comparison is made for DQN on
``observation="features"`` (arms ``physical`` and ``shield``). ``--merge`` keeps the other agents'
sections of an existing ``shield.json``, so the QL and DQN parts can run as separate invocations of
about ten minutes each on a 2-core CPU.

Reported per arm (mean and std over seeds, plus the per-seed values):

* the cumulative physical violations against physical steps (one point per ``log_every`` steps);
* violations per 1,000 physical steps in the first 10 % and in the last 10 % of training, and in total;
* ``shielded``: exploratory actions the shield replaced (cumulative curve, total, early/late rates);
* final return: the training return (mean physical episode return of the episodes finished in the
  last 10 % of training, epsilon-greedy, shield active) and the greedy return (the final agent's greedy
  policy on the physical env, no shield, ``eval_episodes`` fresh episodes per seed) with its violation
  rate; and the *cost of the shield*: control minus shielded arm for both returns.

The PNG has two panels: cumulative violations against physical steps (mean +- std band) and the
training return against physical episodes (moving average, mean +- std band).

Usage::

    python -m benchmarks.shield                   # default: QL, 200k physical steps (~1,800 episodes) x 8 seeds
    python -m benchmarks.shield --agents dqn --merge   # adds DQN (150k steps x 8 seeds) to shield.json
    python -m benchmarks.shield --quick           # 20k steps, about 2-3 minutes on 2 CPU cores
    python -m benchmarks.shield --full --device gpu   # paper scale: 20k episodes (2.24M steps) x 16 seeds

Outputs ``benchmarks/results/shield.json`` and ``shield.png`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import dtrl_jax as dt
from benchmarks import _common
from dtrl_jax.storage import twin_capacity_per_domain
from dtrl_jax.train import build_agent, inspect_env

NAME = "shield"
ENV_ID = "AccessPointSelection-v0"

#: The metrics kept from ``train`` (the rest of the run's output stays on the device and is dropped).
KEPT_METRICS: tuple[str, ...] = (
    "physical_steps",
    "physical_episodes",
    "episode_return",
    "episodes_finished",
    "twin_transitions",
    "epsilon",
    "violations",
    "shielded",
    "twin_ready",
    "twin_faults",
    "eval_return",
)

#: Per-mode scale. ``ql_steps`` / ``dqn_steps``: physical steps per seed (the same in every arm);
#: ``log_every``: physical steps per metrics row; ``eval_episodes``: greedy evaluation episodes per seed.
MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": 8,
        "ql_steps": 20_000,
        "dqn_steps": 10_000,
        "log_every": 1_000,
        "eval_episodes": 8,
        "curve_eval_episodes": 2,
        "agents": ("ql",),
    },
    "default": {
        "seeds": 8,
        "ql_steps": 200_000,
        "dqn_steps": 150_000,
        "log_every": 1_000,
        "eval_episodes": 32,
        "curve_eval_episodes": 4,
        "agents": ("ql",),
    },
    "full": {
        "seeds": 16,
        "ql_steps": 2_240_000,  # ~20,000 episodes, the x-range of the paper's Fig. 4
        "dqn_steps": 500_000,
        "log_every": 10_000,
        "eval_episodes": 64,
        "curve_eval_episodes": 8,
        "agents": ("ql", "dqn"),
    },
}

#: The arms of each agent: name -> TwinConfig (or None) and, for paired arms, the control arm whose
#: violations / returns the shielded arm is compared with.
QL_ARMS: dict[str, dict[str, Any]] = {
    "physical": {"twin": None, "control": None},
    "twin_no_shield": {"twin": dict(num_domains=2), "control": None},
    "shield": {"twin": dict(num_domains=2, shield=True), "control": "physical"},
    "shield_checked": {"twin": dict(num_domains=2, shield=True, health_samples=4), "control": "physical"},
    "trials5": {"twin": dict(num_domains=5, action_trials=5), "control": None},
    "shield_trials5": {"twin": dict(num_domains=5, action_trials=5, shield=True), "control": "trials5"},
}
DQN_ARMS: dict[str, dict[str, Any]] = {
    "physical": {"twin": None, "control": None},
    "shield": {"twin": dict(num_domains=2, shield=True), "control": "physical"},
}


# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------


def ql_config(total_steps: int, log_every: int, curve_eval_episodes: int = 0) -> dt.QLearningConfig:
    """Tabular Q-learning as in ``dtrl_jax.experiment.demo``: alpha 0.1, gamma 0.9, epsilon 1 -> 0.05 over half the run.

    ``curve_eval_episodes`` greedy episodes per logging interval give the ``eval_return`` curve.
    """
    return dt.QLearningConfig(
        total_timesteps=total_steps,
        log_every=log_every,
        eval_episodes=curve_eval_episodes,
        learning_rate=0.1,
        gamma=0.9,
        epsilon_start=1.0,
        epsilon_end=0.05,
        epsilon_decay_steps=total_steps // 2,
    )


def dqn_config(total_steps: int, log_every: int, curve_eval_episodes: int = 0) -> dt.DQNConfig:
    """DQN on the feature observation: 10 envs, gamma 0.9, epsilon 1 -> 0.05 over half the run.

    ``learning_starts`` is a tenth of the run (at most the default 10,000) so short runs still learn.
    """
    return dt.DQNConfig(
        total_timesteps=total_steps,
        log_every=log_every,
        eval_episodes=curve_eval_episodes,
        num_envs=10,
        learning_rate=5e-4,
        gamma=0.9,
        epsilon_start=1.0,
        epsilon_end=0.05,
        epsilon_decay_steps=total_steps // 2,
        buffer_size=20_000,
        batch_size=64,
        learning_starts=min(10_000, total_steps // 10),
        train_every=10,
        target_update_every=500,
        loss="huber",
    )


# --------------------------------------------------------------------------------------------------
# Greedy evaluation (shared with benchmarks.global_obs)
# --------------------------------------------------------------------------------------------------


def make_greedy_eval(agent: Any, env: Any, params: Any, num_episodes: int, max_steps: int) -> Callable:
    """``evaluate(agent_state, key) -> dict`` of the greedy policy on ``num_episodes`` fresh episodes.

    The library's one greedy rule (``dtrl_jax.evaluate``: argmax Q, random ties, at most
    ``max_steps`` steps per episode). Returns per-episode ``return``, ``steps`` and ``violations``
    (0 when the env defines none), each ``[num_episodes]``.
    """

    def evaluate(agent_state, key):
        res = dt.evaluate(key, agent, agent_state, env, params, num_episodes, max_steps=max_steps)
        return {"return": res.returns, "violations": res.violations, "steps": res.lengths}

    return evaluate


def make_seeded_run(config: Any, env: Any, params: Any, *, eval_env: Any, eval_params: Any, eval_episodes: int,
                    eval_max_steps: int) -> Callable:
    """``run(keys[S]) -> (metrics {name: [S, intervals]}, eval {name: [S, episodes]})``, one vmap.

    Training uses ``dt.make_train(config, env, params)``; the final agent is evaluated greedily on
    ``eval_env`` / ``eval_params`` (the env as the agent sees it, e.g. with the global-observation
    wrapper). Only the kept metrics and the evaluation leave the compiled program.
    """
    train = dt.make_train(config, env, params)
    agent = build_agent(config, inspect_env(eval_env, eval_params))
    evaluate = make_greedy_eval(agent, eval_env, eval_params, eval_episodes, eval_max_steps)

    def one(key):
        k_train, k_eval = jax.random.split(key)
        out = train(k_train)
        metrics = {k: out.metrics[k] for k in KEPT_METRICS}
        return metrics, evaluate(out.runner_state.agent_state, k_eval)

    return jax.vmap(one)


def compile_and_run(fn: Callable, keys: jax.Array) -> tuple[Any, float, float]:
    """Compile ``jax.jit(fn)`` ahead of time, run it once; ``(host output, compile_s, run_s)``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(keys).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()
    return jax.tree.map(np.asarray, out), t1 - t0, t2 - t1


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def mean_std(values: Any) -> dict[str, Any]:
    """``{"mean", "std", "per_seed"}`` of a ``[seeds]`` array (NaNs ignored in mean/std)."""
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return {
            "mean": float(np.nanmean(arr)) if np.any(np.isfinite(arr)) else float("nan"),
            "std": float(np.nanstd(arr)) if np.any(np.isfinite(arr)) else float("nan"),
            "per_seed": [float(v) for v in arr],
        }


def window_rate(cumulative: np.ndarray, steps: np.ndarray, start_frac: float, end_frac: float) -> np.ndarray:
    """Per-seed events per 1,000 physical steps between two fractions of the run.

    ``cumulative`` and ``steps`` are ``[seeds, intervals]`` cumulative counters sampled at the end of
    each logging interval; the window ``(start_frac * T, end_frac * T]`` is snapped to interval ends.
    """
    n = steps.shape[1]
    lo = min(int(round(start_frac * n)), n - 1)
    hi = min(max(int(round(end_frac * n)), lo + 1), n)  # at least one interval
    c_lo = np.zeros(cumulative.shape[0]) if lo == 0 else cumulative[:, lo - 1]
    s_lo = 0 if lo == 0 else steps[0, lo - 1]
    span = steps[0, hi - 1] - s_lo
    return (cumulative[:, hi - 1] - c_lo) / span * 1000.0


def final_training_return(ret: np.ndarray, finished: np.ndarray, frac: float = 0.1) -> np.ndarray:
    """Per-seed mean return of the episodes finished in the last ``frac`` of the intervals."""
    n = ret.shape[1]
    lo = n - max(1, int(round(frac * n)))
    r, f = ret[:, lo:], finished[:, lo:].astype(np.float64)
    total = np.nansum(np.where(f > 0, np.nan_to_num(r) * f, 0.0), axis=1)
    count = f.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis over ``window`` points, NaNs ignored."""
    y = np.asarray(y, dtype=np.float64)
    if window <= 1:
        return y
    out = np.full_like(y, np.nan)
    for i in range(y.shape[-1]):
        seg = y[..., max(0, i - window + 1) : i + 1]
        with np.errstate(invalid="ignore"), _silence():
            out[..., i] = np.nanmean(seg, axis=-1)
    return out


class _silence:
    """Silence numpy's 'Mean of empty slice' warning (all-NaN windows stay NaN)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def _curve(arr: np.ndarray) -> dict[str, list[float]]:
    with np.errstate(invalid="ignore"), _silence():
        return {
            "mean": [float(v) for v in np.nanmean(arr, axis=0)],
            "std": [float(v) for v in np.nanstd(arr, axis=0)],
        }


def summarise_arm(metrics: dict[str, np.ndarray], ev: dict[str, np.ndarray], smooth: int) -> dict[str, Any]:
    """Curves and summary figures of one arm from ``[seeds, intervals]`` metrics and the evaluation."""
    steps = metrics["physical_steps"].astype(np.float64)
    viol = metrics["violations"].astype(np.float64)
    shielded = metrics["shielded"].astype(np.float64)
    ret = metrics["episode_return"].astype(np.float64)
    finished = metrics["episodes_finished"]
    total_steps = float(steps[0, -1])
    eval_steps = ev["steps"].astype(np.float64).sum(axis=1)
    eval_viol = ev["violations"].astype(np.float64).sum(axis=1)
    curves = {
        "physical_steps": [float(v) for v in steps[0]],
        "physical_episodes": [float(v) for v in metrics["physical_episodes"].astype(np.float64).mean(axis=0)],
        "cumulative_violations": _curve(viol),
        "cumulative_shielded": _curve(shielded),
        "episode_return": _curve(ret),
        "episode_return_smoothed": _curve(moving_average(ret, smooth)),
        "smoothing_window_intervals": smooth,
        "epsilon": [float(v) for v in metrics["epsilon"][0]],
        "greedy_eval_return": _curve(metrics["eval_return"].astype(np.float64)),
    }
    summary = {
        "physical_steps": total_steps,
        "physical_episodes": mean_std(metrics["physical_episodes"][:, -1]),
        "total_violations": mean_std(viol[:, -1]),
        "violations_per_1k_steps": {
            "first_10pct": mean_std(window_rate(viol, steps, 0.0, 0.1)),
            "last_10pct": mean_std(window_rate(viol, steps, 0.9, 1.0)),
            "whole_run": mean_std(viol[:, -1] / total_steps * 1000.0),
        },
        "total_shielded": mean_std(shielded[:, -1]),
        "shielded_per_1k_steps": {
            "first_10pct": mean_std(window_rate(shielded, steps, 0.0, 0.1)),
            "last_10pct": mean_std(window_rate(shielded, steps, 0.9, 1.0)),
        },
        "twin_transitions": mean_std(metrics["twin_transitions"][:, -1]),
        "final_training_return": mean_std(final_training_return(ret, finished)),
        "greedy_eval_return": mean_std(ev["return"].astype(np.float64).mean(axis=1)),
        "greedy_eval_violations_per_1k_steps": mean_std(eval_viol / np.maximum(eval_steps, 1) * 1000.0),
        "greedy_eval_episodes_per_seed": int(ev["return"].shape[1]),
        # plateau of the in-loop greedy curve (mean of its last quarter per seed; NaN when off)
        "greedy_curve_plateau": mean_std(np.nanmean(
            metrics["eval_return"][:, -max(1, metrics["eval_return"].shape[1] // 4):].astype(np.float64), axis=1)),
        "twin_faults": mean_std(metrics["twin_faults"][:, -1]),
        # episode_return is NaN only in intervals where no episode finished.
        "all_finite": bool(
            np.all(np.isfinite(viol)) and np.all(np.isfinite(ev["return"])) and np.any(finished > 0)
            and np.all(np.isfinite(ret[finished > 0]))
        ),
    }
    return {"curves": curves, "summary": summary}


def compare(arm: dict[str, Any], control: dict[str, Any]) -> dict[str, Any]:
    """Shielded arm vs its control: violation reduction and the cost in return (control - shielded)."""
    s, c = arm["summary"], control["summary"]

    def reduction(a: float, b: float) -> float:
        return float("nan") if b == 0 else float(1.0 - a / b)

    def per_seed_diff(key: str) -> dict[str, Any]:
        diff = np.asarray(c[key]["per_seed"]) - np.asarray(s[key]["per_seed"])
        return mean_std(diff)

    return {
        "total_violations_reduction": reduction(s["total_violations"]["mean"], c["total_violations"]["mean"]),
        "first_10pct_violation_rate_reduction": reduction(
            s["violations_per_1k_steps"]["first_10pct"]["mean"], c["violations_per_1k_steps"]["first_10pct"]["mean"]
        ),
        "last_10pct_violation_rate_reduction": reduction(
            s["violations_per_1k_steps"]["last_10pct"]["mean"], c["violations_per_1k_steps"]["last_10pct"]["mean"]
        ),
        "violations_avoided": per_seed_diff("total_violations"),
        "training_return_cost": per_seed_diff("final_training_return"),
        "greedy_return_cost": per_seed_diff("greedy_eval_return"),
        "note": "cost = control - shielded (same seeds); a negative cost means the shielded arm ended higher",
    }


# --------------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------------


def run_agent(agent_name: str, *, steps: int, log_every: int, seeds: int, eval_episodes: int,
              arms: Sequence[str] | None = None, curve_eval_episodes: int = 0) -> dict[str, Any]:
    """Train and evaluate every arm of ``agent_name`` (``"ql"`` or ``"dqn"``); returns its JSON section."""
    if agent_name == "ql":
        env, params = dt.make(ENV_ID)
        base = ql_config(steps, log_every, curve_eval_episodes)
        table = QL_ARMS
    elif agent_name == "dqn":
        env, params = dt.make(ENV_ID, observation="features")
        base = dqn_config(steps, log_every, curve_eval_episodes)
        table = DQN_ARMS
    else:
        raise ValueError(f"unknown agent {agent_name!r}; expected 'ql' or 'dqn'")
    names = list(table) if arms is None else [a for a in table if a in arms]
    keys = jax.random.split(jax.random.key(0), seeds)
    smooth = max(1, int(round(steps // log_every / 50)))
    section: dict[str, Any] = {
        "git": git_info(),
        "physical_steps": steps,
        "seeds": seeds,
        "log_every": log_every,
        "eval_episodes": eval_episodes,
        "curve_eval_episodes": curve_eval_episodes,
        # Tabular Q learns each vetoed action's twin transition; DQN's shield only vetoes (its twin
        # replay has no buffer for them).
        "vetoed_transitions_learned": agent_name == "ql",
        "timestamp_utc": _common.utc_timestamp(),
        "env_id": ENV_ID,
        "observation": params.observation,
        "agent": agent_name,
        "base_config": _config_dict(base),
        "arms": {},
        "comparisons": {},
    }
    for name in names:
        twin_kw = table[name]["twin"]
        cfg = base.replace(twin=None if twin_kw is None else dt.TwinConfig(**twin_kw))
        fn = make_seeded_run(cfg, env, params, eval_env=env, eval_params=params, eval_episodes=eval_episodes,
                             eval_max_steps=int(params.max_steps_in_episode))
        (metrics, ev), compile_s, run_s = compile_and_run(fn, keys)
        entry = summarise_arm(metrics, ev, smooth)
        entry["twin"] = twin_kw
        if agent_name == "dqn" and cfg.twin is not None and cfg.twin.uses_trials:
            # the twin replay window (dtrl_jax.storage.twin_capacity_per_domain)
            entry["twin_buffer_per_domain"] = twin_capacity_per_domain(
                cfg.buffer_size, cfg.twin.twin_buffer_size, cfg.twin.action_trials - 1, cfg.num_envs)
        entry["compile_s"] = compile_s
        entry["run_s"] = run_s
        entry["physical_steps_per_s_all_seeds"] = steps * seeds / run_s
        section["arms"][name] = entry
        s = entry["summary"]
        _common.log(
            f"[{agent_name}] {name:<15} viol/1k first10% {s['violations_per_1k_steps']['first_10pct']['mean']:7.1f}"
            f" last10% {s['violations_per_1k_steps']['last_10pct']['mean']:6.1f}  total {s['total_violations']['mean']:9.0f}"
            f"  shielded {s['total_shielded']['mean']:8.0f}  train ret {s['final_training_return']['mean']:6.1f}"
            f"  greedy ret {s['greedy_eval_return']['mean']:6.1f}  faults {s['twin_faults']['mean']:5.0f}  (compile {compile_s:.0f}s, run {run_s:.0f}s)"
        )
    for name in names:
        control = table[name]["control"]
        if control is not None and control in section["arms"]:
            section["comparisons"][f"{name}_vs_{control}"] = compare(section["arms"][name], section["arms"][control])
    if "physical" in section["arms"] and "twin_no_shield" in section["arms"]:
        a = np.asarray(section["arms"]["physical"]["curves"]["cumulative_violations"]["mean"])
        b = np.asarray(section["arms"]["twin_no_shield"]["curves"]["cumulative_violations"]["mean"])
        section["twin_no_shield_identical_to_physical"] = bool(np.array_equal(a, b))
    return section


def _config_dict(cfg: Any) -> dict[str, Any]:
    import dataclasses

    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.name == "twin":
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else (float(v) if isinstance(v, (np.floating,)) else v)
    return out


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------


def format_summary(doc: dict[str, Any]) -> str:
    rows = []
    for agent_name, section in doc["agents"].items():
        for arm, entry in section.get("arms", {}).items():
            s = entry["summary"]
            v = s["violations_per_1k_steps"]
            rows.append(
                [
                    f"{agent_name}/{arm}",
                    f"{v['first_10pct']['mean']:.1f}±{v['first_10pct']['std']:.1f}",
                    f"{v['last_10pct']['mean']:.1f}±{v['last_10pct']['std']:.1f}",
                    f"{s['total_violations']['mean']:.0f}±{s['total_violations']['std']:.0f}",
                    f"{s['total_shielded']['mean']:.0f}",
                    f"{s['final_training_return']['mean']:.1f}±{s['final_training_return']['std']:.1f}",
                    f"{s['greedy_eval_return']['mean']:.1f}±{s['greedy_eval_return']['std']:.1f}",
                    f"{s['greedy_eval_violations_per_1k_steps']['mean']:.1f}",
                ]
            )
    header = ["arm", "viol/1k first10%", "viol/1k last10%", "total viol", "shielded", "train return",
              "greedy return", "greedy viol/1k"]
    text = _common.format_table(header, rows)
    lines = [text, ""]
    for agent_name, section in doc["agents"].items():
        for name, c in section.get("comparisons", {}).items():
            lines.append(
                f"{agent_name}/{name}: violations -{100 * c['total_violations_reduction']:.1f}% total, "
                f"-{100 * c['first_10pct_violation_rate_reduction']:.1f}% first 10%, "
                f"-{100 * c['last_10pct_violation_rate_reduction']:.1f}% last 10%; return cost (control - shield): "
                f"training {c['training_return_cost']['mean']:+.2f}±{c['training_return_cost']['std']:.2f}, "
                f"greedy {c['greedy_return_cost']['mean']:+.2f}±{c['greedy_return_cost']['std']:.2f}"
            )
        if "twin_no_shield_identical_to_physical" in section:
            lines.append(f"{agent_name}: twin_no_shield identical to physical: {section['twin_no_shield_identical_to_physical']}")
    return "\n".join(lines)


_STYLES = {
    "physical": dict(color="tab:blue"),
    "twin_no_shield": dict(color="tab:cyan", linestyle=":"),
    "shield": dict(color="tab:red"),
    "shield_checked": dict(color="tab:purple", linestyle=":"),
    "trials5": dict(color="tab:green"),
    "shield_trials5": dict(color="tab:orange"),
}


def plot(doc: dict[str, Any], path: Path, title: str) -> Path:
    """Three panels: cumulative violations vs physical steps; training and greedy return vs physical episodes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(18, 5), layout="constrained")
    ax_v, ax_r, ax_g = fig.subplots(1, 3)
    for agent_name, section in doc["agents"].items():
        dashed = agent_name == "dqn"
        for arm, entry in section.get("arms", {}).items():
            c = entry["curves"]
            style = dict(_STYLES.get(arm, {}))
            if dashed:
                style["linestyle"] = "--"
            label = f"{agent_name.upper()} {arm}"
            # Cumulative counters start at (0, 0).
            x = np.concatenate([[0.0], c["physical_steps"]])
            m = np.concatenate([[0.0], c["cumulative_violations"]["mean"]])
            s = np.concatenate([[0.0], c["cumulative_violations"]["std"]])
            (line,) = ax_v.plot(x, m, label=label, lw=1.6, **style)
            ax_v.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.15, lw=0)
            xe = np.asarray(c["physical_episodes"])
            m = np.asarray(c["episode_return_smoothed"]["mean"], dtype=np.float64)
            s = np.asarray(c["episode_return_smoothed"]["std"], dtype=np.float64)
            ok = np.isfinite(m)
            (line,) = ax_r.plot(xe[ok], m[ok], label=label, lw=1.4, **style)
            ax_r.fill_between(xe[ok], (m - s)[ok], (m + s)[ok], color=line.get_color(), alpha=0.15, lw=0)
            g = c.get("greedy_eval_return")
            if g is not None:
                m, s = (np.asarray(g[k], dtype=np.float64) for k in ("mean", "std"))
                ok = np.isfinite(m)
                (line,) = ax_g.plot(xe[ok], m[ok], label=label, lw=1.4, **style)
                ax_g.fill_between(xe[ok], (m - s)[ok], (m + s)[ok], color=line.get_color(), alpha=0.15, lw=0)
    ax_v.set_xlabel("physical steps")
    ax_v.set_ylabel("cumulative physical violations (failed URLLC tasks)")
    ax_v.set_title("Physical safety violations (mean ± std over seeds)")
    ax_r.set_xlabel("physical episodes")
    ax_r.set_ylabel("physical episode return (training, moving average)")
    ax_r.set_title("Training return (mean ± std over seeds)")
    ax_g.set_xlabel("physical episodes")
    ax_g.set_ylabel("greedy return (eval_return, no shield)")
    ax_g.set_title("Greedy evaluation at each interval (mean ± std over seeds)")
    for ax in (ax_v, ax_r, ax_g):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def git_info() -> dict[str, Any]:
    """The repository's HEAD commit and whether ``dtrl_jax/`` differs from it (None outside git)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "dtrl_jax"], cwd=root, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dtrl_jax_modified": None}
    return {"commit": head, "dtrl_jax_modified": bool(dirty)}


def _read_existing(path: Path) -> dict[str, Any] | None:
    """The JSON document at ``path``, or None when it is missing or unreadable."""
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shield",
        description="Physical safety violations with and without the twin's shield on AccessPointSelection-v0.",
    )
    _common.add_common_args(parser)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (one vmap); default per mode")
    parser.add_argument("--ql-steps", type=int, default=None, help="physical steps per seed for Q-learning")
    parser.add_argument("--dqn-steps", type=int, default=None, help="physical steps per seed for DQN")
    parser.add_argument("--log-every", type=int, default=None, help="physical steps per metrics row")
    parser.add_argument("--eval-episodes", type=int, default=None, help="greedy evaluation episodes per seed")
    parser.add_argument("--agents", default=None, help="comma-separated subset of ql,dqn (default per mode)")
    parser.add_argument("--arms", default=None, help="comma-separated subset of the arms (default: all)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the sections of agents not run now from an existing shield.json in the output directory",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``shield.json`` (and ``shield.png``) and print a summary table."""
    args = build_parser().parse_args(argv)
    mode = _common.run_mode(args)
    cfg = dict(MODES[mode])
    for field in ("seeds", "ql_steps", "dqn_steps", "log_every", "eval_episodes"):
        value = getattr(args, field)
        if value is not None:
            if value < 1:
                raise SystemExit(f"--{field.replace('_', '-')} must be >= 1")
            cfg[field] = value
    if args.agents is not None:
        cfg["agents"] = tuple(a.strip() for a in args.agents.split(",") if a.strip())
        bad = set(cfg["agents"]) - {"ql", "dqn"}
        if bad:
            raise SystemExit(f"--agents: unknown {sorted(bad)}; expected ql and/or dqn")
    arms = None if args.arms is None else [a.strip() for a in args.arms.split(",") if a.strip()]
    for key in ("ql_steps", "dqn_steps"):
        if cfg[key] % cfg["log_every"]:
            raise SystemExit(f"{key}={cfg[key]} must be a multiple of log_every={cfg['log_every']}")

    device = _common.select_device(args.device)
    device_name = _common.describe_device(device)
    _common.log(f"shield: mode={mode}, device={device_name}, {cfg}")
    load_start = _common.load_average()
    wall0 = time.perf_counter()
    agents: dict[str, Any] = {}
    with jax.default_device(device):
        for agent_name in cfg["agents"]:
            t_agent = time.perf_counter()
            agents[agent_name] = run_agent(
                agent_name,
                steps=cfg[f"{agent_name}_steps"],
                log_every=cfg["log_every"],
                seeds=cfg["seeds"],
                eval_episodes=cfg["eval_episodes"],
                arms=arms,
                curve_eval_episodes=cfg["curve_eval_episodes"],
            )
            agents[agent_name]["mode"] = mode
            agents[agent_name]["wall_time_s"] = time.perf_counter() - t_agent
    wall = time.perf_counter() - wall0
    merged_from = None
    if args.merge:
        old = _read_existing(_common.results_dir(args.out) / f"{NAME}.json")
        if old is not None:
            kept = {k: v for k, v in old.get("agents", {}).items() if k not in agents}
            if kept:
                merged_from = {"agents": sorted(kept), "timestamp_utc": old.get("timestamp_utc")}
                agents = {**kept, **agents}
                agents = {k: agents[k] for k in ("ql", "dqn") if k in agents}

    payload: dict[str, Any] = {
        "description": (
            "Physical safety violations (info['violation'] = failed URLLC task) on AccessPointSelection-v0 "
            "with the twin's shield on/off at equal physical steps; seeds as one jax.vmap over keys. "
            "final_training_return = mean return of the episodes finished in the last 10% of training "
            "(epsilon-greedy, shield active); greedy_eval_return = the final agent's greedy policy on "
            "fresh physical episodes (no shield); curves.greedy_eval_return = the in-loop greedy evaluation "
            "(eval_return, curve_eval_episodes per interval). QL shield arms learn each vetoed action's twin "
            "transition (vetoed_transitions_learned); shield_checked adds the per-env health check."
        ),
        "config": {
            "mode": mode,
            "device": args.device,
            "device_description": device_name,
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "arms": arms,
            "load_average_at_start": load_start,
            "load_average_at_end": _common.load_average(),
        },
        "agents": agents,
        "merged_from": merged_from,
        "wall_time_s": wall,
    }
    out_dir = _common.results_dir(args.out)
    files = {}
    if not args.no_plot:
        title = (f"Shield on {ENV_ID}: "
                 + ", ".join(f"{a.upper()} {sec.get('seeds', '?')} seeds x {sec.get('physical_steps', 0):,} physical steps"
                             for a, sec in agents.items())
                 + f" — {device_name}")
        files["png"] = str(plot(payload, out_dir / f"{NAME}.png", title))
    files["json"] = str(out_dir / f"{NAME}.json")
    payload["files"] = {k: Path(v).name for k, v in files.items()}
    json_path = _common.write_json(NAME, payload, args.out)

    print()
    print(f"Shield ({device_name}, mode {mode}, {wall:.0f}s total)")
    print(format_summary(payload))
    print(f"\nwrote {json_path}" + (f" and {files['png']}" if "png" in files else ""))
    result = dict(payload)
    result["files"] = files
    return result


if __name__ == "__main__":
    main()

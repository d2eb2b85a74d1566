"""Paper Fig. 4: DT-enhanced tabular Q-learning with simultaneous action trials on ``AccessPointSelection-v0``.

Physical Q-learning (``twin=None``) against DT-enhanced Q-learning with n = 2, 3, 4, 5 simultaneous
action trials (``TwinConfig(num_domains=n, action_trials=n)``: from every physical state, the physical
action plus n - 1 other distinct APs are executed, the others in digital domains, and every outcome
updates Q; n = 5 is a full sweep of the 5 APs). Every variant is the same program with the twin on or
off; each variant's seeds run as one ``jax.jit(jax.vmap(...))`` over keys, the per-seed function being
``dt.make_train(cfg, env, params)`` split with ``train.init`` / ``train.run`` at every logging interval
(equal to one full run, see ``make_train``) to read the Q-table there.

Metric: the **greedy return**, the expected undiscounted return of one drive under the greedy policy of
the current Q-table (argmax, ties split uniformly, as the library's greedy rule), computed exactly with
``access_point.greedy_return`` (the action never changes the next state, so the expectation over drives
is a fixed sum over (state, AP); no evaluation episodes, no sampling noise). It is plotted and reported
against physical episodes (one vehicle drive, ~110 decisions), next to the return of the training
episodes (exploration included) and epsilon. The reference lines are computed by
``access_point.reference_returns``: the "small cell if covered, else macro" heuristic, the best policy
of the tabular observation (the ceiling of any tabular learner) and the best AP for the exact state.

Reported per variant: the greedy plateau (mean of the last quarter of the run, per seed, then mean and
std over seeds); the paired gain over physical Q-learning (seeds share keys); the physical episodes to
first reach physical Q-learning's plateau (and that level minus 0.5 and 1.0), on the seed-mean curve
and per seed (median, min, max, seeds that reach it), with the ratio to physical's own episodes; and the
episodes after which the variant stays within 1.0 / 0.5 / 0.2 of its own plateau (per seed).

Paper (Cheng et al., IEEE Network 2024, Fig. 4): n = 5 converges at about 6,000 episodes with a return
of about 85; physical Q-learning needs more than 20,000 episodes and reaches about 65; curves ordered
by n. Our environment's constants and reward scale are our own (``dtrl_jax/envs/access_point.py``), so
compare shapes and ratios.

Hyper-parameters (our choices, identical for every variant; see ``HYPER``):
  * learning rate 0.1, q_init 0: the paper says Q values start low, so an action never tried is never
    chosen greedily; with gamma = 0.9 every true Q here is above 0 (value 0 is our choice);
  * gamma 0.9: the action does not change the next state (a contextual bandit with a moving context),
    so gamma only adds an action-independent bootstrap term (and the lock-in it causes, see the
    sensitivity table in ``benchmarks/README.md``);
  * epsilon decays linearly from 1.0 to 0.01 over the first 1,000 episodes (in physical steps: 1,000 x
    the mean episode length) and stays at 0.01: exploration that stops early, the regime the paper
    describes ("if this exploration probability drops too soon, the agent may not fully explore");
  * 16 physical vehicles (``num_envs``) per seed stepped together (Q updated after every vectorised
    step; same (s, a) updates averaged), so that the CPU run is affordable; episodes are counted over
    all of them.

``--sensitivity`` adds one-factor-at-a-time variations of those (``SENSITIVITY``) for physical
Q-learning and n = 5, on fewer seeds.

Usage::

    python -m benchmarks.ap_selection --quick                 # 1,500 episodes, 16 seeds (minutes on 2 CPU cores)
    python -m benchmarks.ap_selection --sensitivity           # 4,000 episodes, 16 seeds + sensitivity (CPU)
    python -m benchmarks.ap_selection --full --device gpu     # 30,000 episodes, 64 seeds (paper scale)

Writes ``benchmarks/results/ap_selection.json`` and ``ap_selection.png`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import dtrl_jax as dt
from benchmarks import _common, _paper
from dtrl_jax import convergence as conv
from dtrl_jax.envs import access_point as apm

NAME = "ap_selection"
ENV_ID = "AccessPointSelection-v0"

#: The paper's headline values (Fig. 4).
PAPER = {
    "figure": "Cheng et al., IEEE Network 2024, Fig. 4",
    "physical_final_return": 65.0,
    "n5_final_return": 85.0,
    "n5_episodes_to_converge": 6000,
    "physical_episodes_to_converge_at_least": 20000,
    "n5_to_physical_episode_ratio_at_most": 6000 / 20000,
}

#: Hyper-parameters, the same for every variant (see the module docstring for the reasons).
HYPER: dict[str, Any] = {
    "learning_rate": 0.1,
    "gamma": 0.9,
    "q_init": 0.0,
    "epsilon_start": 1.0,
    "epsilon_end": 0.01,
    "epsilon_decay_episodes": 1000,
}

#: One-factor-at-a-time variations of ``HYPER`` for the sensitivity table (physical and the largest n).
SENSITIVITY: tuple[tuple[str, Any], ...] = (
    ("gamma", 0.0),
    ("epsilon_decay_episodes", 250),
    ("epsilon_decay_episodes", 2500),
    ("learning_rate", 0.03),
    ("learning_rate", 0.3),
    ("q_init", 10.0),  # above every true value here: a success is worth <= 0.95, 0.95 / (1 - 0.9) = 9.5
)

#: Scale per mode: seeds, physical episodes per seed, parallel physical envs per seed, curve points,
#: seeds of the sensitivity runs.
MODES: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 16, "episodes": 1_500, "num_envs": 16, "points": 30, "sens_seeds": 4},
    "default": {"seeds": 16, "episodes": 4_000, "num_envs": 16, "points": 100, "sens_seeds": 8},
    "full": {"seeds": 64, "episodes": 30_000, "num_envs": 16, "points": 300, "sens_seeds": 32},
}

#: Action-trial counts compared; 1 is physical Q-learning (twin=None).
TRIALS: tuple[int, ...] = (1, 2, 3, 4, 5)

#: Trailing moving-average window of the training-return curve, as a fraction of the run's episodes.
SMOOTH_FRACTION = 0.05
#: Levels below physical Q-learning's greedy plateau at which the episodes to reach it are reported.
REACH_MARGINS = (0.0, 0.5, 1.0)
#: Distances to a variant's own plateau within which it must stay (settling episodes).
SETTLE_TOLERANCES = (1.0, 0.5, 0.2)
#: Greedy evaluation drives per seed and logging interval (``eval_episodes``): 16 seeds x 16 drives per point.
EVAL_EPISODES = 16
#: ``eval_episodes`` of the sensitivity runs (fewer, to keep the CPU run affordable: 8 seeds x 8 drives per point).
SENS_EVAL_EPISODES = 8
#: Trailing mean (points) of a seed's sampled eval_return curve before its per-seed first reach / settle.
EVAL_WINDOW = 3
#: The two greedy metrics: metric key -> name in the JSON.
METRICS = {"eval_return": "greedy_eval", "exact": "greedy_exact"}


def schedule(episodes: int, num_envs: int, points: int, steps_per_episode: float) -> dict[str, Any]:
    """Physical steps for ``episodes`` episodes, split into about ``points`` logging intervals."""
    target = episodes * steps_per_episode
    per_point = max(1, math.ceil(target / points / num_envs)) * num_envs
    intervals = max(1, math.ceil(target / per_point))
    return {"log_every": per_point, "num_intervals": intervals, "total_timesteps": intervals * per_point}


def make_config(n: int, sched: dict[str, Any], num_envs: int, hyper: dict[str, Any], steps_per_episode: float,
                eval_episodes: int = EVAL_EPISODES):
    """The ``QLearningConfig`` of the variant with ``n`` action trials (1 = physical)."""
    twin = None if n <= 1 else dt.TwinConfig(num_domains=n, action_trials=n)
    return dt.QLearningConfig(
        total_timesteps=sched["total_timesteps"],
        num_envs=num_envs,
        log_every=sched["log_every"],
        learning_rate=hyper["learning_rate"],
        gamma=hyper["gamma"],
        q_init=hyper["q_init"],
        epsilon_start=hyper["epsilon_start"],
        epsilon_end=hyper["epsilon_end"],
        epsilon_decay_steps=float(max(1.0, hyper["epsilon_decay_episodes"] * steps_per_episode)),
        eval_episodes=eval_episodes,
        twin=twin,
    )


def label_of(n: int) -> str:
    return "physical QL" if n <= 1 else f"DT-enhanced QL, n = {n}"


#: Metrics kept per logging interval (plus ``exact``, the Q-table's exact greedy return).
KEPT = ("physical_episodes", "episode_return", "eval_return", "epsilon", "twin_transitions", "violations")


def with_exact_greedy(train, w: jax.Array):
    """Per-seed function: ``train`` run interval by interval, the Q-table's exact greedy return after each."""

    def run(key):
        runner, intervals = train.init(key)

        def body(r, i):
            r, m = train.run(r, intervals[i][None])
            row = {k: m[k][0] for k in KEPT}
            row["exact"] = apm.greedy_return(r.agent_state.q, w)
            return r, row

        return jax.lax.scan(body, runner, jnp.arange(intervals.shape[0]))[1]

    return run


def run_variant(n, hyper, sched, num_envs, steps_per_episode, env, params, w, keys, device, tag="",
                eval_episodes: int = EVAL_EPISODES) -> dict:
    """Train every seed of one variant (one vmap); return its raw per-seed curves under ``_m``."""
    label = label_of(n) + tag
    cfg = make_config(n, sched, num_envs, hyper, steps_per_episode, eval_episodes)
    _common.log(f"-- {label}: {keys.shape[0]} seeds x {cfg.total_timesteps:,} physical steps")
    m, compile_s, run_s = _paper.run_seeds(with_exact_greedy(dt.make_train(cfg, env, params), w), keys, label,
                                           device, keep=lambda out: out)
    return {"label": label, "action_trials": n, "compile_s": compile_s, "run_s": run_s,
            "twin": None if n <= 1 else {"num_domains": n, "action_trials": n},
            "twin_transitions_per_seed": float(np.mean(m["twin_transitions"][:, -1])),
            "violations_per_seed": float(np.mean(m["violations"][:, -1])),
            "_m": {k: np.asarray(v, np.float64) for k, v in m.items()}}


def _opt(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def measures(x: np.ndarray, y: np.ndarray, phys: np.ndarray, level: float, window: int) -> dict[str, Any]:
    """Plateau, reach of physical's plateau (several levels) and settling of one variant's curves ``y[S, T]``.

    ``phys`` are physical QL's curves of the same metric (seed ``i`` paired with seed ``i``), ``level`` its
    seed-mean plateau; per-seed first reaches use a trailing mean over ``window`` points.
    """
    mean = np.nanmean(y, axis=0)
    own = conv.plateau(y)
    diff = own - conv.plateau(phys)
    reach = conv.reach_ratios(x, phys, y, [level - d for d in REACH_MARGINS], window=window)
    mean_phys = np.nanmean(phys, axis=0)
    out = {
        "plateau_mean": float(np.mean(own)), "plateau_std": float(np.std(own)),
        "plateau_per_seed": _paper.to_list(own, 3),
        "paired_gain_over_physical_mean": float(np.mean(diff)), "paired_gain_over_physical_std": float(np.std(diff)),
        "seeds_above_physical": int(np.sum(diff > 0)),
        "reach_physical_plateau": {},
        "settle_own_plateau": {},
    }
    for d, row in zip(REACH_MARGINS, reach):
        mine, theirs = conv.first_reach(x, mean, level - d), conv.first_reach(x, mean_phys, level - d)
        out["reach_physical_plateau"][f"minus_{d:g}"] = {
            "level": level - d, "mean_curve": _opt(mine), "physical_mean_curve": _opt(theirs),
            "ratio_to_physical": _opt(mine / theirs) if theirs > 0 else None,
            "per_seed": {k: row[k] for k in ("variant", "ratio", "paired_ratio") if k in row},
        }
    for t in SETTLE_TOLERANCES:
        per_seed = np.array([conv.settle(x, c, t) for c in conv.smooth(y, window)])
        out["settle_own_plateau"][f"within_{t:g}"] = {"mean_curve": _opt(conv.settle(x, mean, t)),
                                                      "per_seed": conv.spread(per_seed)}
    return out


def summarise(variants: list[dict[str, Any]], smooth_points: int, per_seed_curves: bool = True) -> dict[str, Any]:
    """Curves and measures of every variant, in place; the cross-variant summary is returned.

    Two greedy metrics: ``eval`` (the library's ``eval_return``: EVAL_EPISODES sampled greedy drives
    per seed and interval; the judged one) and ``exact`` (the Q-table's exact expected greedy return).
    """
    phys = next((v for v in variants if v["action_trials"] <= 1), variants[0])
    x = np.mean(phys["_m"]["physical_episodes"], axis=0)
    levels = {k: float(np.mean(conv.plateau(phys["_m"][k]))) for k in METRICS}
    for v in variants:
        m = v.pop("_m") if v is not phys else v["_m"]
        t_mean, t_std = _paper.curve_stats(conv.smooth(m["episode_return"], smooth_points))
        v.update(x=_paper.to_list(np.mean(m["physical_episodes"], axis=0), 1), x_label="physical episodes",
                 train_return_smoothed_mean=_paper.to_list(t_mean, 2), train_return_smoothed_std=_paper.to_list(t_std, 2),
                 train_return_final_mean=float(np.nanmean(_paper.tail_mean(m["episode_return"], smooth_points))),
                 epsilon=_paper.to_list(np.mean(m["epsilon"], axis=0), 4), total_episodes=float(x[-1]))
        for k, name in METRICS.items():
            g_mean, g_std = _paper.curve_stats(m[k])
            v[name] = {"mean": _paper.to_list(g_mean, 3), "std": _paper.to_list(g_std, 3),
                       **measures(x, m[k], phys["_m"][k], levels[k], EVAL_WINDOW if k == "eval_return" else 1)}
            if per_seed_curves:
                v[name]["per_seed"] = [_paper.to_list(row, 2) for row in m[k]]
        # the plotted greedy curve (the smoke tests and _paper helpers read "mean"/"std")
        v["mean"], v["std"] = v["greedy_eval"]["mean"], v["greedy_eval"]["std"]
    phys.pop("_m")
    ordered = sorted(variants, key=lambda v: v["action_trials"])
    best = ordered[-1]
    out = {}
    for name in METRICS.values():
        plateaus = [v[name]["plateau_mean"] for v in ordered]
        reach = best[name]["reach_physical_plateau"]["minus_0"]
        out[name] = {
            "physical_plateau": phys[name]["plateau_mean"],
            "physical_episodes_to_own_plateau": reach["physical_mean_curve"],
            "largest_n": best["action_trials"], "largest_n_plateau": best[name]["plateau_mean"],
            "largest_n_episodes_to_physical_plateau": reach["mean_curve"],
            "largest_n_reach_ratio": reach["ratio_to_physical"],
            "largest_n_reach_ratio_at_most_one_third": bool(reach["ratio_to_physical"] is not None
                                                            and reach["ratio_to_physical"] <= 1 / 3),
            "plateaus_ordered_by_n": bool(all(a < b for a, b in zip(plateaus, plateaus[1:]))),
            "gain_largest_n_over_physical": best[name]["paired_gain_over_physical_mean"],
            "gain_largest_n_over_physical_std": best[name]["paired_gain_over_physical_std"],
        }
    return out


def sensitivity_table(runs: list[dict[str, Any]], per_setting: int, smooth_points: int) -> list[dict[str, Any]]:
    """Rows of the sensitivity table from raw runs (``run_variant`` outputs with a ``setting``).

    ``runs`` come in groups of ``per_setting`` (one per n, physical first), the baseline group first.
    Every group is summarised with the baseline physical run prepended, so that each setting's
    episodes-to-level are measured against the same level: the baseline physical plateau.
    """
    base = {"label": "baseline physical", "action_trials": 0, "_m": runs[0]["_m"]}
    rows = []
    for i in range(0, len(runs), per_setting):
        group = [dict(base)] + runs[i:i + per_setting]
        summarise(group, smooth_points, per_seed_curves=False)
        for v in group[1:]:
            row = {"setting": v["setting"], "action_trials": v["action_trials"]}
            for name in METRICS.values():
                g = v[name]
                row[name] = {"plateau_mean": g["plateau_mean"], "plateau_std": g["plateau_std"],
                             "episodes_to_level": g["reach_physical_plateau"]["minus_0"]["mean_curve"],
                             "settle_within_0.5": g["settle_own_plateau"]["within_0.5"]["mean_curve"]}
            rows.append(row)
    return rows


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def plot(doc: dict[str, Any], path) -> None:
    """Three panels: greedy return, training return (smoothed), epsilon, all against physical episodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, hyper, ref = doc["config"], doc["config"]["hyper"], doc["reference_returns"]
    s = doc["summary"]["greedy_eval"]
    none_nan = lambda ys: [np.nan if y is None else y for y in ys]  # noqa: E731
    colors = _paper.COLORS
    greedy = []
    for i, v in enumerate(doc["variants"]):
        g, e = v["greedy_eval"], v["greedy_exact"]
        greedy.append({"label": f"{v['label']} (plateau {g['plateau_mean']:.2f})", "x": v["x"], "color": colors[i],
                       "mean": none_nan(g["mean"]), "std": none_nan(g["std"])})
        greedy.append({"label": "_nolegend_", "x": v["x"], "color": colors[i], "linestyle": ":",
                       "mean": none_nan(e["mean"]), "std": [0.0] * len(e["mean"])})
    train = [{"label": v["label"], "x": v["x"], "mean": none_nan(v["train_return_smoothed_mean"]),
              "std": none_nan(v["train_return_smoothed_std"])} for v in doc["variants"]]
    hlines = [(ref["oracle"], f"best AP on the exact state {ref['oracle']:.1f}"),
              (ref["tabular_optimum"], f"best tabular policy {ref['tabular_optimum']:.1f}"),
              (ref["heuristic"], f"small cell if covered, else macro {ref['heuristic']:.1f}")]
    fig, (ax_g, ax_t, ax_e) = plt.subplots(1, 3, figsize=(18, 6.0), dpi=100, gridspec_kw={"width_ratios": [3, 3, 1.4]})
    _paper.plot_curves(None, greedy, xlabel="physical episodes", ylabel="greedy return (eval_return; dotted: exact)",
                       title="AP selection (paper Fig. 4 shape): greedy policy of the Q-table", caption="",
                       hlines=hlines, ax=ax_g)
    # zoom on the band where the curves separate (their first points lie far below)
    ax_g.set_ylim(min(s["physical_plateau"], ref["heuristic"]) - 8.0, ref["oracle"] + 1.5)
    _paper.plot_curves(None, train, xlabel="physical episodes", ylabel="training return (exploration included)",
                       title=f"training episodes, moving average over {cfg['smooth_episodes']:.0f} episodes",
                       caption="", ax=ax_t)
    v0 = doc["variants"][0]
    ax_e.plot(v0["x"], none_nan(v0["epsilon"]), color="black")
    ax_e.set_xlabel("physical episodes")
    ax_e.set_ylabel("epsilon (all variants)")
    ax_e.set_title("exploration schedule", fontsize=10)
    ax_e.grid(True, alpha=0.3)
    caption = (
        f"{ENV_ID} ({cfg['num_states']} tabular states), tabular Q-learning, {cfg['seeds']} seeds (mean, band = +-1 std "
        f"over seeds). Greedy return: eval_return, {cfg['eval_episodes']} greedy drives per seed after every logging "
        f"interval (solid); dotted: the Q-table's exact expected greedy return (access_point.greedy_return). "
        f"lr {hyper['learning_rate']}, gamma {hyper['gamma']}, Q init {hyper['q_init']}, epsilon "
        f"{hyper['epsilon_start']} -> {hyper['epsilon_end']} over {hyper['epsilon_decay_episodes']} episodes, "
        f"{cfg['num_envs']} vehicles per seed. n = {s['largest_n']} reaches physical QL's greedy plateau "
        f"({s['physical_plateau']:.2f}) after {_num(s['largest_n_episodes_to_physical_plateau'])} "
        f"episodes vs {_num(s['physical_episodes_to_own_plateau'])} (ratio "
        f"{_num(s['largest_n_reach_ratio'], 2)}); gain {s['gain_largest_n_over_physical']:+.2f}. "
        f"Paper Fig. 4 (its own reward scale): n = 5 converges at ~6,000 episodes with ~85; physical QL > 20,000 "
        f"episodes for ~65."
    )
    _paper.save_with_caption(fig, path, caption, width=200)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__.split("\n")[0])
    _common.add_common_args(parser)
    parser.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    parser.add_argument("--episodes", type=int, default=None, help="override the physical episodes per seed")
    parser.add_argument("--num-envs", type=int, default=None, help="override the parallel vehicles per seed")
    parser.add_argument("--points", type=int, default=None, help="override the number of curve points")
    parser.add_argument("--trials", type=_common.int_list, default=None, help="action-trial counts, e.g. 1,2,3,4,5")
    parser.add_argument("--sensitivity", action="store_true", help="add the one-factor sensitivity runs")
    parser.add_argument("--sens-seeds", type=int, default=None, help="override the seeds of the sensitivity runs")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    mode = _common.run_mode(args)
    scale = dict(MODES[mode])
    for key in ("seeds", "episodes", "num_envs", "points", "sens_seeds"):
        if getattr(args, key) is not None:
            scale[key] = getattr(args, key)
    trials = tuple(args.trials or TRIALS)
    device = _common.select_device(args.device)
    _paper.header(NAME, mode, device, f"- {scale['seeds']} seeds x {scale['episodes']:,} episodes, n in {trials}")

    start = time.perf_counter()
    git = _paper.git_state()  # the code that runs (read before any later edit of the tree)
    env, params = dt.make(ENV_ID)
    ref = apm.reference_returns(params)
    w = apm.state_action_rewards(apm.reward_grid(params), env.num_states(params))
    steps_per_episode = ref["mean_episode_steps"]
    sched = schedule(scale["episodes"], scale["num_envs"], scale["points"], steps_per_episode)
    smooth_episodes = SMOOTH_FRACTION * scale["episodes"]
    smooth_points = max(1, round(smooth_episodes / (sched["log_every"] / steps_per_episode)))
    run = lambda n, hyper, keys, tag="", evals=EVAL_EPISODES: run_variant(  # noqa: E731
        n, hyper, sched, scale["num_envs"], steps_per_episode, env, params, w, keys, device, tag, evals)
    keys = jax.random.split(jax.random.key(0), scale["seeds"])
    variants = [run(n, HYPER, keys) for n in trials]
    ends = sorted({min(trials), max(trials)})
    n_sens = min(scale["sens_seeds"], scale["seeds"])
    # the baseline rows reuse the main runs' first seeds (the sensitivity runs use the same first keys)
    sens = [dict(v, setting="baseline", _m={k: x[:n_sens] for k, x in v["_m"].items()})
            for v in variants if v["action_trials"] in ends]
    summary = summarise(variants, smooth_points)

    sensitivity = None
    if args.sensitivity:
        sens_keys = keys[:n_sens]
        for field, value in SENSITIVITY:
            hyper = {**HYPER, field: value}
            setting = f"{field} = {value:g}"
            for n in ends:
                v = run(n, hyper, sens_keys, f" [{setting}]", SENS_EVAL_EPISODES)
                v["setting"] = setting
                sens.append(v)
        sensitivity = {"seeds": n_sens, "trials": ends, "eval_episodes": SENS_EVAL_EPISODES,
                       "baseline": "the main runs' first seeds (eval_episodes as the main runs)",
                       "level": "episodes_to_level: first episode the seed-mean curve of the metric reaches the "
                                "baseline physical QL's plateau of that metric on the same seeds",
                       "rows": sensitivity_table(sens, len(ends), smooth_points)}
    wall = time.perf_counter() - start

    doc = {
        "config": {
            "mode": mode, "env": ENV_ID, "num_states": env.num_states(params), "agent": "QLearningConfig (tabular)",
            "seeds": scale["seeds"], "episodes": scale["episodes"], "num_envs": scale["num_envs"],
            "trials": list(trials), "hyper": HYPER, **sched, "mean_episode_steps": steps_per_episode,
            "smooth_episodes": smooth_episodes, "smooth_points": smooth_points,
            "eval_episodes": EVAL_EPISODES, "eval_window": EVAL_WINDOW,
            "metrics": {"greedy_eval": "eval_return: mean return of eval_episodes greedy drives per seed after every "
                                       "logging interval (argmax, ties uniform; dtrl_jax.evaluate)",
                        "greedy_exact": "access_point.greedy_return(Q, W): the Q-table's exact expected greedy return"},
            "plateau": "mean of the last quarter of the curve",
            "seeds_as": "jax.jit(jax.vmap(per-seed train.init + scan of train.run over intervals))(keys)",
        },
        "device": _common.describe_device(device),
        "git": git,
        "wall_time_s": wall,
        "paper": PAPER,
        "reference_returns": ref,
        "variants": variants,
        "summary": summary,
        "sensitivity": sensitivity,
    }
    _common.write_results(NAME, doc, args.out, None if args.no_plot else lambda png: plot(doc, png))
    for name in METRICS.values():
        rows = [[v["label"], f"{v[name]['plateau_mean']:.2f} +- {v[name]['plateau_std']:.2f}",
                 _num(v[name]["reach_physical_plateau"]["minus_0"]["mean_curve"]),
                 _num(v[name]["settle_own_plateau"]["within_0.5"]["mean_curve"]),
                 f"{v['compile_s']:.0f}s / {v['run_s']:.0f}s"] for v in variants]
        _common.log(_common.format_table([name, "plateau", "eps. to phys. plateau", "settle 0.5", "compile/run"], rows))
    if sensitivity:
        _common.log(_common.format_table(
            ["setting", "n"] + [f"{name} {col}" for name in METRICS.values() for col in ("plateau", "to level")],
            [[r["setting"], r["action_trials"]] + [c for name in METRICS.values() for c in (
                f"{r[name]['plateau_mean']:.2f} +- {r[name]['plateau_std']:.2f}", _num(r[name]["episodes_to_level"]))]
             for r in sensitivity["rows"]]))
    _common.log(f"total wall time {wall:.0f}s")
    return doc


if __name__ == "__main__":
    main()

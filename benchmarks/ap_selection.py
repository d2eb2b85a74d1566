"""Paper Fig. 4: DT-enhanced tabular Q-learning with simultaneous action trials on ``AccessPointSelection-v0``.

Physical Q-learning (``twin=None``) against DT-enhanced Q-learning with n = 2, 3, 4, 5 simultaneous
action trials (``TwinConfig(num_domains=n, action_trials=n)``: from every physical state, the physical
action plus n - 1 other distinct APs are executed, the others in digital domains, and every outcome
updates Q; n = 5 is a full sweep of the 5 APs). Every variant is the same program with the twin on or
off; ``harness.run_arms`` trains each arm's seeds as one ``jax.jit(jax.vmap(...))`` over keys (the
sensitivity settings of one n, differing only in traced fields, as one program), running ``train.init``
and a scan of ``train.run`` over the logging intervals so that its probe reads the Q-table after each
(equal to one full run, see ``make_train``).

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

Writes ``benchmarks/results/ap_selection.json`` (harness schema ``dtrl-bench/1``: ``summary`` holds the
headline per greedy metric, ``variants`` (per arm: plateaus, paired gains, reaches, settling) and the
``sensitivity`` rows; ``curves`` the panels ``greedy_eval``, ``greedy_exact``, ``train_return``, ``epsilon``)
and ``ap_selection.png`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import dtrl_jax as dt
from benchmarks import _common, harness
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
#: seeds of the sensitivity runs. Default 400 points (one greedy evaluation every ~10 episodes): the
#: per-seed reach times are quantised to the logging grid, and with 100 points (~40 episodes) that grid
#: alone moved the per-seed reach ratio by ~0.07 (0.37 at 100 points vs 0.30 at 400, same seeds).
MODES: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 16, "episodes": 1_500, "num_envs": 16, "points": 30, "sens_seeds": 4},
    "default": {"seeds": 16, "episodes": 4_000, "num_envs": 16, "points": 400, "sens_seeds": 8},
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


#: Metrics kept per logging interval (plus ``exact``, the Q-table's exact greedy return, from the probe).
KEPT = ("physical_episodes", "episode_return", "eval_return", "epsilon", "twin_transitions", "violations")


def arm(n: int, hyper: dict[str, Any], sched: dict[str, Any], num_envs: int, steps_per_episode: float,
        eval_episodes: int = EVAL_EPISODES, setting: str | None = None) -> harness.Arm:
    """The arm with ``n`` action trials (1 = physical) under ``hyper``; ``setting`` names a sensitivity row."""
    return harness.Arm(label_of(n) + ("" if setting is None else f" [{setting}]"),
                       make_config(n, sched, num_envs, hyper, steps_per_episode, eval_episodes),
                       info={"action_trials": n, "setting": setting})


def exact_greedy(w: jax.Array):
    """The harness probe: the Q-table's exact expected greedy return after every logging interval."""
    return lambda agent_state: {"exact": apm.greedy_return(agent_state.q, w)}


def _opt(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def measures(x: np.ndarray, y: np.ndarray, phys: np.ndarray, level: float, window: int) -> dict[str, Any]:
    """Plateau, reach of physical's plateau (several levels) and settling of one variant's curves ``y[S, T]``.

    ``phys`` are physical QL's curves of the same metric (seed ``i`` paired with seed ``i``), ``level`` its
    seed-mean plateau; per-seed first reaches use a trailing mean over ``window`` points.
    """
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(y, axis=0)
        mean_phys = np.nanmean(phys, axis=0)
    own = conv.plateau(y)
    diff = own - conv.plateau(phys)
    reach = conv.reach_ratios(x, phys, y, [level - d for d in REACH_MARGINS], window=window)
    out = {
        "plateau_mean": float(np.mean(own)), "plateau_std": float(np.std(own)),
        "plateau_per_seed": np.round(own, 3).tolist(),
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


def variant_figures(runs: dict[str, dict[str, np.ndarray]], arms: Sequence[harness.Arm], phys: dict[str, np.ndarray],
                    smooth_points: int) -> dict[str, dict[str, Any]]:
    """Per arm: the measures of both greedy metrics against the physical runs ``phys`` (same seeds).

    Two greedy metrics: ``greedy_eval`` (the library's ``eval_return``: EVAL_EPISODES sampled greedy drives
    per seed and interval; the judged one) and ``greedy_exact`` (the Q-table's exact expected greedy return).
    """
    x = np.mean(np.asarray(phys["physical_episodes"], np.float64), axis=0)
    levels = {k: float(np.mean(conv.plateau(np.asarray(phys[k], np.float64)))) for k in METRICS}
    out = {}
    for a in arms:
        m = {k: np.asarray(v, np.float64) for k, v in runs[a.name].items() if not k.startswith("_")}
        v = {"action_trials": a.info["action_trials"], "total_episodes": float(x[-1]),
             "train_return_final_mean": float(np.nanmean(_tail_mean(m["episode_return"], smooth_points))),
             "twin_transitions_per_seed": float(np.mean(m["twin_transitions"][:, -1])),
             "violations_per_seed": float(np.mean(m["violations"][:, -1]))}
        for k, name in METRICS.items():
            v[name] = measures(x, m[k], np.asarray(phys[k], np.float64), levels[k],
                               EVAL_WINDOW if k == "eval_return" else 1)
        out[a.name] = v
    return out


def _tail_mean(y: np.ndarray, tail: int) -> np.ndarray:
    """Per seed: the mean of the last ``tail`` finite values of ``y[S, T]`` (NaN if none)."""
    return np.asarray([row[np.isfinite(row)][-max(1, tail):].mean() if np.isfinite(row).any() else np.nan
                       for row in np.asarray(y, np.float64)])


def headline(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cross-variant figures the README quotes, per greedy metric: physical vs the largest n."""
    ordered = sorted(variants.values(), key=lambda v: v["action_trials"])
    phys, best = ordered[0], ordered[-1]
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
            "plateaus_ordered_by_n": bool(all(a < b for a, b in itertools.pairwise(plateaus))),
            **ordering_steps(ordered, name),
            "gain_largest_n_over_physical": best[name]["paired_gain_over_physical_mean"],
            "gain_largest_n_over_physical_std": best[name]["paired_gain_over_physical_std"],
        }
    return out


def ordering_steps(ordered: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    """Paired plateau steps n -> n + 1 (per seed, the arms share seed keys) and whether the plateaus are
    ordered *within noise*: no step's mean is below -2 standard errors of that step. The strict order
    (``plateaus_ordered_by_n``) cannot hold once two n both learn the best tabular policy (a tie at the
    ceiling); this says whether any larger n is measurably *worse*."""
    steps = []
    for lo, hi in itertools.pairwise(ordered):
        d = np.asarray(hi[name]["plateau_per_seed"], np.float64) - np.asarray(lo[name]["plateau_per_seed"], np.float64)
        se = float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
        steps.append({"from_n": lo["action_trials"], "to_n": hi["action_trials"], "mean": float(np.mean(d)),
                      "standard_error": se, "seeds_higher": int(np.sum(d > 0)), "seeds": int(d.size)})
    return {"plateau_steps_by_n": steps,
            "plateaus_ordered_within_noise": bool(all(st["mean"] > -2 * st["standard_error"] for st in steps))}


def sensitivity_rows(runs: dict[str, dict[str, np.ndarray]], arms: Sequence[harness.Arm], baseline: str,
                     smooth_points: int) -> list[dict[str, Any]]:
    """Rows of the sensitivity table: every arm measured against the baseline physical run ``runs[baseline]``,
    so that each setting's episodes-to-level are measured against the same level (the baseline plateau)."""
    figures = variant_figures(runs, arms, runs[baseline], smooth_points)
    rows = []
    for a in arms:
        row = {"setting": a.info["setting"], "action_trials": a.info["action_trials"]}
        for name in METRICS.values():
            g = figures[a.name][name]
            row[name] = {"plateau_mean": g["plateau_mean"], "plateau_std": g["plateau_std"],
                         "episodes_to_level": g["reach_physical_plateau"]["minus_0"]["mean_curve"],
                         "settle_within_0.5": g["settle_own_plateau"]["within_0.5"]["mean_curve"]}
        rows.append(row)
    return rows


def curves(runs: dict[str, dict[str, np.ndarray]], names: Sequence[str], smooth_points: int) -> dict[str, Any]:
    """The figure's panels against physical episodes: both greedy returns, the smoothed training return, epsilon."""
    x = "physical_episodes"
    return {
        "greedy_eval": harness.panel(runs, y="eval_return", x=x, arms=names,
                                     ylabel="greedy return (eval_return, sampled greedy drives)"),
        "greedy_exact": harness.panel(runs, y="exact", x=x, arms=names,
                                      ylabel="exact greedy return of the Q-table (access_point.greedy_return)"),
        "train_return": harness.panel(runs, y="episode_return", x=x, arms=names, smooth=smooth_points,
                                      ylabel=f"training return, moving average over {smooth_points} points"),
        "epsilon": harness.panel(runs, y="epsilon", x=x, arms=names[:1], ylabel="epsilon (all variants)"),
    }


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def plot(doc: dict[str, Any], path) -> None:
    """Three panels: greedy return (solid: eval_return, dotted: exact), training return (smoothed), epsilon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, hyper, ref = doc["config"], doc["config"]["hyper"], doc["config"]["reference_returns"]
    s = doc["summary"]["greedy_eval"]
    figs = doc["summary"]["variants"]
    cu = doc["curves"]
    greedy = []
    for i, (label, g) in enumerate(cu["greedy_eval"]["series"].items()):
        e = cu["greedy_exact"]["series"][label]
        greedy.append({**g, "label": f"{label} (plateau {figs[label]['greedy_eval']['plateau_mean']:.2f})",
                       "color": harness.COLORS[i]})
        greedy.append({**e, "label": "_nolegend_", "color": harness.COLORS[i], "linestyle": ":",
                       "std": [0.0] * len(e["mean"])})
    train = [{**t, "label": label} for label, t in cu["train_return"]["series"].items()]
    hlines = [(ref["oracle"], f"best AP on the exact state {ref['oracle']:.1f}"),
              (ref["tabular_optimum"], f"best tabular policy {ref['tabular_optimum']:.1f}"),
              (ref["heuristic"], f"small cell if covered, else macro {ref['heuristic']:.1f}")]
    fig, (ax_g, ax_t, ax_e) = plt.subplots(1, 3, figsize=(18, 6.0), dpi=100, gridspec_kw={"width_ratios": [3, 3, 1.4]})
    harness.plot_curves(None, greedy, xlabel="physical episodes", ylabel="greedy return (eval_return; dotted: exact)",
                        title="AP selection (paper Fig. 4 shape): greedy policy of the Q-table", caption="",
                        hlines=hlines, ax=ax_g)
    # zoom on the band where the curves separate (their first points lie far below)
    ax_g.set_ylim(min(s["physical_plateau"], ref["heuristic"]) - 8.0, ref["oracle"] + 1.5)
    harness.plot_curves(None, train, xlabel="physical episodes", ylabel="training return (exploration included)",
                        title=f"training episodes, moving average over {cfg['smooth_episodes']:.0f} episodes",
                        caption="", ax=ax_t)
    eps = next(iter(cu["epsilon"]["series"].values()))
    ax_e.plot(eps["x"], eps["mean"], color="black")
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
    harness.save_with_caption(fig, path, caption, width=200)


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
    _common.log(f"== {NAME} ({mode} mode) on {_common.describe_device(device)} - {scale['seeds']} seeds x "
                f"{scale['episodes']:,} episodes, n in {trials}")

    start = time.perf_counter()
    env, params = dt.make(ENV_ID)
    ref = apm.reference_returns(params)
    w = apm.state_action_rewards(apm.reward_grid(params), env.num_states(params))
    steps_per_episode = ref["mean_episode_steps"]
    sched = schedule(scale["episodes"], scale["num_envs"], scale["points"], steps_per_episode)
    smooth_episodes = SMOOTH_FRACTION * scale["episodes"]
    smooth_points = max(1, round(smooth_episodes / (sched["log_every"] / steps_per_episode)))
    make_arm = lambda n, hyper=HYPER, evals=EVAL_EPISODES, setting=None: arm(
        n, hyper, sched, scale["num_envs"], steps_per_episode, evals, setting)
    run = lambda arms, seeds, seed_keys=None: harness.run_arms(
        arms, env, params, seeds=seeds, seed_keys=seed_keys, device=device, keep=KEPT, probe=exact_greedy(w))

    arms = [make_arm(n) for n in trials]
    runs = run(arms, scale["seeds"])
    variants = variant_figures(runs, arms, runs[arms[0].name], smooth_points)
    summary: dict[str, Any] = {**headline(variants), "variants": variants, "sensitivity": None}

    sensitivity = None
    if args.sensitivity:
        ends = sorted({min(trials), max(trials)})
        n_sens = min(scale["sens_seeds"], scale["seeds"])
        # the baseline rows reuse the main runs' first seeds (the sensitivity runs use the same first keys)
        base = [dataclasses.replace(make_arm(n), name=f"{label_of(n)} [baseline]", info={"action_trials": n,
                                                                                       "setting": "baseline"})
                for n in ends]
        sens_runs = {b.name: {k: v[:n_sens] for k, v in runs[label_of(n)].items() if not k.startswith("_")}
                     for b, n in zip(base, ends)}
        sens_arms = [make_arm(n, {**HYPER, field: value}, SENS_EVAL_EPISODES, f"{field} = {value:g}")
                     for field, value in SENSITIVITY for n in ends]
        sens_runs.update(run(sens_arms, n_sens, jax.random.split(jax.random.key(0), scale["seeds"])[:n_sens]))
        sensitivity = {"seeds": n_sens, "trials": ends, "eval_episodes": SENS_EVAL_EPISODES,
                       "baseline": "the main runs' first seeds (eval_episodes as the main runs)",
                       "level": "episodes_to_level: first episode the seed-mean curve of the metric reaches the "
                                "baseline physical QL's plateau of that metric on the same seeds"}
        summary["sensitivity"] = {"rows": sensitivity_rows(sens_runs, base + sens_arms, base[0].name, smooth_points)}
    wall = time.perf_counter() - start

    config = {
        "env": ENV_ID, "num_states": env.num_states(params), "agent": "QLearningConfig (tabular)",
        "seeds": scale["seeds"], "episodes": scale["episodes"], "num_envs": scale["num_envs"],
        "trials": list(trials), "hyper": HYPER, **sched, "mean_episode_steps": steps_per_episode,
        "smooth_episodes": smooth_episodes, "smooth_points": smooth_points,
        "eval_episodes": EVAL_EPISODES, "eval_window": EVAL_WINDOW,
        "metrics": {"greedy_eval": "eval_return: mean return of eval_episodes greedy drives per seed after every "
                                   "logging interval (argmax, ties uniform; dtrl_jax.evaluate)",
                    "greedy_exact": "access_point.greedy_return(Q, W): the Q-table's exact expected greedy return"},
        "plateau": "mean of the last quarter of the curve",
        "seeds_as": "harness.run_arms: one jax.jit(jax.vmap(...)) per arm over the seed keys split(key(0), seeds); "
                    "train.init + scan of train.run, the probe reading the Q-table after every interval",
        "arms": {a.name: {"action_trials": a.info["action_trials"],
                          "twin": None if a.config.twin is None else {"num_domains": a.config.twin.num_domains,
                                                                      "action_trials": a.config.twin.action_trials},
                          "compile_s": runs[a.name]["_timing"]["compile_s"], "run_s": runs[a.name]["_timing"]["run_s"]}
                 for a in arms},
        "sensitivity": sensitivity,
        "reference_returns": ref, "paper": PAPER,
        "device": _common.describe_device(device), "wall_time_s": wall,
    }
    doc = {"config": config, "summary": summary, "curves": curves(runs, [a.name for a in arms], smooth_points)}
    harness.write(NAME, mode=mode, config=config, summary=summary, curves=doc["curves"], out=args.out,
                  plot=None if args.no_plot else lambda png: plot(doc, png))
    for name in METRICS.values():
        rows = [[label, f"{v[name]['plateau_mean']:.2f} +- {v[name]['plateau_std']:.2f}",
                 _num(v[name]["reach_physical_plateau"]["minus_0"]["mean_curve"]),
                 _num(v[name]["settle_own_plateau"]["within_0.5"]["mean_curve"]),
                 f"{config['arms'][label]['compile_s']:.0f}s / {config['arms'][label]['run_s']:.0f}s"]
                for label, v in variants.items()]
        _common.log(_common.format_table([name, "plateau", "eps. to phys. plateau", "settle 0.5", "compile/run"], rows))
    if summary["sensitivity"]:
        _common.log(_common.format_table(
            ["setting", "n"] + [f"{name} {col}" for name in METRICS.values() for col in ("plateau", "to level")],
            [[r["setting"], r["action_trials"]] + [c for name in METRICS.values() for c in (
                f"{r[name]['plateau_mean']:.2f} +- {r[name]['plateau_std']:.2f}", _num(r[name]["episodes_to_level"]))]
             for r in summary["sensitivity"]["rows"]]))
    _common.log(f"total wall time {wall:.0f}s")
    return doc


if __name__ == "__main__":
    main()

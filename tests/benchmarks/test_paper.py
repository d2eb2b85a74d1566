"""Smoke tests of the paper case-study benchmarks: tiny settings, results schema, finite numbers.

Each runs the script's ``main`` into a temporary directory with a couple of seeds and a few hundred
physical steps. Speed is never asserted; learning is not either (far too short to learn anything).
"""

from __future__ import annotations

import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtrl_jax as dt
from benchmarks import _common, ap_selection, edge_scheduling, harness, multi_uav
from dtrl_jax.envs import multi_uav as mu
from tests.benchmarks.schema import check_results

COMMON_KEYS = ("benchmark", "timestamp_utc", "environment", "config", "device", "git", "wall_time_s", "paper",
               "variants", "summary")


def _finite_list(values, allow_none=False) -> bool:
    return all((v is None and allow_none) or (isinstance(v, (int, float)) and math.isfinite(v)) for v in values)


def _check_common(doc: dict, name: str, out) -> dict:
    on_disk = json.loads((out / f"{name}.json").read_text())
    assert (out / f"{name}.png").is_file() and (out / f"{name}.png").stat().st_size > 5_000
    for key in COMMON_KEYS:
        assert key in on_disk, key
    assert on_disk["benchmark"] == name
    assert on_disk["timestamp_utc"].endswith("Z")
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "dtrl-jax"):
        assert pkg in on_disk["environment"]["packages"]
    assert on_disk["wall_time_s"] > 0
    assert on_disk["config"]["mode"] == "quick"
    for v in on_disk["variants"]:
        for key in ("label", "x", "mean", "std", "compile_s", "run_s"):
            assert key in v, (v.get("label"), key)
        assert len(v["x"]) == len(v["mean"]) == len(v["std"]) > 0
        assert _finite_list(v["x"])
        assert sorted(v["x"]) == v["x"]
        assert _finite_list(v["mean"], allow_none=True) and _finite_list(v["std"], allow_none=True)
        assert any(m is not None for m in v["mean"])
    # the file holds the summary as the writer encodes it (floats rounded by _common.compact_json)
    assert json.loads(_common.compact_json(doc["summary"])) == on_disk["summary"]
    return on_disk


def test_ap_selection_smoke(tmp_path):
    ap_selection.main(["--quick", "--seeds", "2", "--episodes", "8", "--num-envs", "2", "--points", "4",
                       "--trials", "1,2", "--out", str(tmp_path)])
    d = check_results(tmp_path, "ap_selection", summary_keys=[
        f"{m}.{k}" for m in ("greedy_eval", "greedy_exact") for k in (
            "physical_plateau", "largest_n_plateau", "largest_n_episodes_to_physical_plateau",
            "physical_episodes_to_own_plateau", "largest_n_reach_ratio", "plateaus_ordered_by_n",
            "gain_largest_n_over_physical", "gain_largest_n_over_physical_std", "plateaus_ordered_within_noise")])
    assert set(d["curves"]) == {"greedy_eval", "greedy_exact", "train_return", "epsilon"}
    for name in ("greedy_eval", "greedy_exact"):
        (step,) = d["summary"][name]["plateau_steps_by_n"]
        per_seed = [d["summary"]["variants"][lab][name]["plateau_per_seed"] for lab in
                    ("physical QL", "DT-enhanced QL, n = 2")]
        assert step["from_n"] == 1 and step["to_n"] == 2 and step["seeds"] == 2
        assert math.isclose(step["mean"], (per_seed[1][0] - per_seed[0][0] + per_seed[1][1] - per_seed[0][1]) / 2,
                            abs_tol=1e-3)
    labels = ["physical QL", "DT-enhanced QL, n = 2"]
    assert list(d["curves"]["greedy_eval"]["series"]) == labels
    assert d["config"]["seeds"] == 2 and d["config"]["eval_episodes"] == ap_selection.EVAL_EPISODES
    ref = d["config"]["reference_returns"]
    assert ref["random"] < ref["heuristic"] < ref["tabular_optimum"] < ref["oracle"]
    assert d["config"]["arms"]["physical QL"]["twin"] is None
    assert d["config"]["arms"]["DT-enhanced QL, n = 2"]["twin"]["action_trials"] == 2
    for label in labels:
        v = d["summary"]["variants"][label]
        for name in ("greedy_eval", "greedy_exact"):
            g = v[name]
            assert len(g["plateau_per_seed"]) == 2 and math.isfinite(g["plateau_mean"])
            assert set(g["reach_physical_plateau"]) == {"minus_0", "minus_0.5", "minus_1"}
        # the exact greedy return of a Q-table never exceeds the best tabular policy
        assert max(d["curves"]["greedy_exact"]["series"][label]["mean"]) <= ref["tabular_optimum"] + 1e-3
        assert d["curves"]["greedy_eval"]["series"][label]["seeds"] == 2
    eps = d["curves"]["epsilon"]["series"]["physical QL"]["mean"]
    assert eps[0] <= 1.0 and eps == sorted(eps, reverse=True)
    assert d["summary"]["variants"]["physical QL"]["greedy_eval"]["paired_gain_over_physical_mean"] == 0.0
    assert d["config"]["paper"]["n5_final_return"] == 85.0
    assert math.isfinite(d["summary"]["greedy_eval"]["physical_plateau"])
    assert d["summary"]["sensitivity"] is None
    lines = (tmp_path / "ap_selection.json").read_text().splitlines()
    # compact: number lists on one line, never one number per line
    assert not [ln for ln in lines if re.fullmatch(r"\s*(-?[0-9.eE+-]+|null),?", ln)]


def _fake_runs(curves: dict[str, list[float]]) -> dict[str, dict[str, np.ndarray]]:
    """``run_arms``-shaped runs whose greedy curves are ``curves[name]`` (4 seeds) at x = 10, 20, ..."""
    out = {}
    for name, curve in curves.items():
        y = np.tile(np.asarray(curve, np.float64), (4, 1))
        x = np.tile(10.0 * np.arange(1, y.shape[1] + 1), (4, 1))
        out[name] = {"physical_episodes": x, "episode_return": y - 5, "eval_return": y, "exact": y,
                     "epsilon": np.zeros_like(y), "twin_transitions": x, "violations": x}
    return out


def test_ap_selection_sensitivity_rows():
    """Every setting is measured against the baseline physical plateau; values from hand-made curves."""
    phys = [0, 5, 8, 10, 10, 10, 10, 10]  # plateau 10, reached at x = 40
    n5 = [0, 10, 12, 12, 12, 12, 12, 12]  # reaches 10 at x = 20
    slow = [0, 2, 4, 6, 9, 11, 11, 11]    # reaches 10 at x = 60
    sched = ap_selection.schedule(10, 1, 4, 100.0)
    arms = [ap_selection.arm(n, ap_selection.HYPER, sched, 1, 100.0, setting=s)
            for s in ("baseline", "gamma = 0") for n in (1, 5)]
    runs = _fake_runs(dict(zip([a.name for a in arms], [phys, n5, slow, n5])))
    rows = ap_selection.sensitivity_rows(runs, arms, arms[0].name, smooth_points=1)
    assert [(r["setting"], r["action_trials"]) for r in rows] == [
        ("baseline", 1), ("baseline", 5), ("gamma = 0", 1), ("gamma = 0", 5)]
    for name in ("greedy_eval", "greedy_exact"):
        got = [(r[name]["plateau_mean"], r[name]["episodes_to_level"]) for r in rows]
        assert got == [(10.0, 40.0), (12.0, 20.0), (11.0, 60.0), (12.0, 20.0)]


def test_multi_uav_smoke(tmp_path):
    doc = multi_uav.main(["--quick", "--seeds", "2", "--episodes", "4", "--num-envs", "2", "--lookaheads", "0,2",
                          "--n-step-arm", "0", "--hidden", "16", "--out", str(tmp_path)])
    d = harness.load(tmp_path / "multi_uav.json")  # the harness schema (dtrl-bench/1)
    assert d["benchmark"] == "multi_uav" and d["mode"] == "quick"
    assert (tmp_path / "multi_uav.png").stat().st_size > 5_000
    assert json.loads(_common.compact_json(doc["summary"])) == d["summary"]
    variants = d["summary"]["variants"]
    assert [(v["lookahead"], v["n_step"]) for v in variants.values()] == [(0, 1), (2, 1)]
    series = d["curves"]["greedy"]["series"]
    assert list(series) == list(variants)
    for name, v in variants.items():
        assert 0.0 < v["greedy_final_mbps"]["mean"] < 100.0  # a greedy mean user rate in Mbps
        assert len(series[name]["x"]) == 2  # one point per num_envs episodes
        assert len(v["greedy_final_mbps"]["per_seed"]) == 2
        assert math.isfinite(v["q_s0"]["mean"]) and v["mc_value_s0"]["mean"] > 0
        assert v["compile_s"] > 0 and v["run_s"] > 0
        # the final greedy policy on the reference policies' episodes, and its paired difference
        on_ref = v["final_policy_on_reference_episodes_mbps"]["mean"]
        assert 0.0 < on_ref < 100.0
        assert abs(v["final_policy_minus_myopic_same_episodes"]["mean"] - (on_ref - d["reference"]["myopic"]["mean"])) < 1e-4
    dt2 = variants["DT-enhanced DQN, k = 2"]
    assert dt2["twin"]["lookahead"] == 2
    assert variants["physical DQN"]["paired_gain_over_physical"]["mean"] == 0.0
    ref = d["reference"]  # hand-written policies, for scale
    assert ref["hangar"]["mean"] < ref["random"]["mean"] < ref["centroid_placement_level"]
    assert math.isfinite(d["summary"]["physical_final_mbps"])
    assert d["config"]["dqn"]["head"] == "auto" and d["config"]["head_resolved"] == "afterstate"
    assert d["config"]["dqn"]["reward_shift"] is None  # the warm-up mean
    for bad in (["--n-step-arm", "1"], ["--hyper", '{"gama": 0.9}'], ["--hyper", "[0.9]"]):
        with pytest.raises(SystemExit):
            multi_uav.build_parser().parse_args(bad)
    assert multi_uav.build_parser().parse_args(["--hyper", "{}"]).hyper == {}  # all DQNConfig defaults
    text = (tmp_path / "multi_uav.json").read_text()
    assert len(text.splitlines()) < 400  # compact: lists of numbers on one line


def test_multi_uav_n_step_arm_sits_after_physical_and_is_compared_paired():
    """The n-step arm's config and place, and its summary against NumPy, on synthetic runs (no training)."""
    arms = multi_uav.arms_of((0, 2), 20, 10, 100, dict(multi_uav.HYPER), rollouts=2, n_step_arm=5)
    assert [a.name for a in arms] == ["physical DQN", "physical DQN, n-step 5", "DT-enhanced DQN, k = 2"]
    assert [a.config.n_step for a in arms] == [1, 5, 1]
    assert arms[1].config.twin is None and arms[2].config.twin.lookahead == 2
    assert all(a.config.reward_shift is None and a.config.gamma == 0.95 for a in arms)  # HYPER, every arm
    assert [a.name for a in multi_uav.arms_of((2, 0), 20, 10, 100, {}, 2, 3)][1:] == ["physical DQN", "physical DQN, n-step 3"]
    rng = np.random.default_rng(0)
    finals = {a.name: 3.7 + 0.05 * rng.random(3) for a in arms}  # per seed, constant over 4 intervals
    runs = {a.name: {"eval_return": np.repeat(100 * finals[a.name][:, None], 4, 1),
                     "physical_episodes": np.tile([10.0, 20.0, 30.0, 40.0], (3, 1)),
                     "twin_transitions": np.zeros((3, 4)), "updates": np.ones((3, 4)),
                     "_after": {"q_s0": np.full(3, 70.0), "mc_value": np.full(3, 70.5),
                                "reference_episodes_mbps": finals[a.name]},
                     "_timing": {"compile_s": 1.0, "run_s": 2.0}} for a in arms}
    summary = multi_uav.summarise(arms, runs, 2, 100, {"myopic": {"mean": 3.72}})
    phys, nstep, k2 = (finals[a.name] for a in arms)
    assert summary["physical_n_step"] == 5
    np.testing.assert_allclose(summary["physical_final_mbps"], phys.mean(), rtol=1e-6)
    np.testing.assert_allclose(summary["physical_n_step_final_mbps"], nstep.mean(), rtol=1e-6)
    assert summary["physical_n_step_seeds_above_myopic"] == int(np.sum(nstep > 3.72))
    gain = summary["dt_paired_gain_over_physical_n_step"]["2"]
    np.testing.assert_allclose(gain["per_seed"], k2 - nstep, rtol=1e-6)
    np.testing.assert_allclose(summary["dt_paired_gain_over_physical"]["2"], np.mean(k2 - phys), rtol=1e-6)
    assert summary["variants"]["physical DQN, n-step 5"]["seeds_above_physical"] == int(np.sum(nstep > phys))


EDGE_TABLE_KEYS = ("median_converged_iteration", "median_converged_exact_iteration", "converged_fraction",
                   "converged_seeds", "final_gap_mean", "final_gap_std", "iterations")


def test_edge_scheduling_smoke(tmp_path):
    edge_scheduling.main(["--quick", "--seeds", "2", "--tasks", "6", "--ql-iterations", "64",
                          "--dt-iterations", "64", "--delta", "32", "--phis", "4", "--out", str(tmp_path)])
    labels = ["Q-learning", "DT exploring QL, phi = 4", "DT async QL, phi = 4"]
    d = check_results(tmp_path, "edge_scheduling",
                      summary_keys=[f"6.{label}.{k}" for label in labels for k in EDGE_TABLE_KEYS])
    assert set(d["curves"]) == {"N=6/gap", "N=6/return"}
    variants = d["summary"]["variants"]["6"]
    assert [v["algorithm"] for v in variants.values()] == ["q_learning", "dt_exploring_q_learning",
                                                           "dt_async_q_learning"]
    for label, v in variants.items():
        gap = d["curves"]["N=6/gap"]["series"][label]
        assert all(g >= 0 for g in gap["mean"]) and gap["seeds"] == 2
        assert gap["x"] == sorted(gap["x"])
        assert 0.0 <= v["converged_fraction"] <= 1.0
        assert math.isfinite(v["final_gap_mean"]) and v["final_gap_mean"] >= 0
        assert len(v["converged_iteration_per_seed"]) == 2
    assert variants["DT async QL, phi = 4"]["eval_every"] == 32  # async: evaluated once per averaging round
    assert len(d["curves"]["N=6/gap"]["series"]["DT async QL, phi = 4"]["x"]) == 2
    frame = d["config"]["frames"]["6"]
    assert frame["best_cost"] <= frame["mean_cost"] <= frame["worst_cost"]
    assert d["config"]["paper"]["n6_dt_500_trials_iterations"] == 102


def test_edge_scheduling_lr_sweep_smoke(tmp_path):
    edge_scheduling.main(["--quick", "--lr-sweep", "--seeds", "2", "--ql-iterations", "64",
                          "--dt-iterations", "64", "--phis", "4", "--lrs", "0.05", "--out", str(tmp_path)])
    d = check_results(tmp_path, "edge_scheduling_lr_sweep", summary_keys=["rows"])
    assert set(d["curves"]) == {"gap", "return"}
    assert [r["algorithm"] for r in d["summary"]["rows"]] == ["q_learning", "dt_exploring_q_learning"]
    assert all(r["learning_rate"] == 0.05 for r in d["summary"]["rows"])
    assert set(d["config"]["criteria"]) == {"gap_0.01", "exact"}
    for r in d["summary"]["rows"]:
        # the exact-optimum criterion is stricter: never more converged seeds than gap <= 0.01
        assert r["exact"]["seeds"] <= r["gap_0.01"]["seeds"] <= 2
    for v in d["summary"]["variants"].values():
        for c, e in zip(v["converged_iteration_per_seed"], v["converged_exact_iteration_per_seed"]):
            assert e is None or (c is not None and c <= e)


def test_edge_scheduling_stays_from_numpy():
    """The convergence criterion against a hand-made table: first x from which the gap stays <= threshold."""
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    gaps = np.array([[0.5, 0.0, 0.2, 0.0, 0.0],      # dips at 2, stays from 4
                     [0.0, 0.0, 0.0, 0.0, 0.0],      # from the start
                     [0.0, 0.0, 0.0, 0.0, 0.3],      # leaves at the end: never
                     [np.nan, 0.0, 0.0, 0.0, 0.0]])  # NaN counts as not converged there
    assert edge_scheduling.stays_from(x, gaps, 0.01) == [4.0, 1.0, None, 2.0]
    assert edge_scheduling.stays_from(x, gaps, 0.25) == [2.0, 1.0, None, 2.0]


def test_multi_uav_additive_argmax_matches_brute_force():
    # an exactly additive reward over 3 factors (4, 5, 3): the main-effects argmax is the joint argmax;
    # with an interaction term added it is the argmax of the additive part (checked by brute force)
    rng = np.random.default_rng(0)
    dims = (4, 5, 3)
    parts = [rng.normal(size=(6, n)) for n in dims]
    digits = np.stack(np.unravel_index(np.arange(60), dims[::-1]), axis=1)[:, ::-1]  # factor 0 fastest
    additive = sum(parts[i][:, digits[:, i]] for i in range(3))  # [6, 60]
    got = np.asarray(multi_uav.additive_argmax(jnp.asarray(additive), dims))
    np.testing.assert_array_equal(got, additive.argmax(1))
    noisy = additive + 0.01 * rng.normal(size=additive.shape)
    got = np.asarray(multi_uav.additive_argmax(jnp.asarray(noisy), dims))
    means = [np.stack([noisy[:, digits[:, i] == v].mean(1) for v in range(n)], 1) for i, n in enumerate(dims)]
    expect = sum(np.argmax(m, 1) * int(np.prod(dims[:i])) for i, m in enumerate(means))
    np.testing.assert_array_equal(got, expect)


def test_multi_uav_choice_regrets_numpy():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(7, 9))
    chosen = rng.integers(0, 9, size=7)
    r = multi_uav.choice_regrets(jnp.asarray(rewards), jnp.asarray(chosen))
    best = rewards.max(1)
    assert np.isclose(float(r["chosen"]), np.mean(best - rewards[np.arange(7), chosen]), atol=1e-6)
    assert np.isclose(float(r["random_action"]), np.mean(best - rewards.mean(1)), atol=1e-6)
    constant = min(np.mean(best - rewards[:, a]) for a in range(9))  # brute force over constant policies
    assert np.isclose(float(r["best_constant_action"]), constant, atol=1e-6)
    # the exact next rewards of the env: the myopic policy's action is the best of them
    env, params = dt.make("MultiUAV-v0")
    _, s0 = env.reset(jax.random.key(0), params)
    s = s0.replace(uav_pos=s0.uav_pos + jnp.asarray([[10.0, 30.0], [200.0, 300.0], [0.0, 90.0], [-100.0, 40.0]]))
    rates = multi_uav.next_rewards(env, s, params)
    a = int(mu.myopic_policy(jax.random.key(1), s, params))
    _, _, reward, *_ = env.step_env(jax.random.key(2), s, a, params.replace(user_speed_std_mps=0.0))
    assert np.isclose(float(reward), float(rates[a]), atol=1e-5)
    assert np.isclose(float(rates[a]), float(jnp.max(rates)))

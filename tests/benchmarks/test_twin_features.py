"""Smoke tests of ``benchmarks/shield.py`` and ``benchmarks/global_obs.py``: tiny settings, schema, finite numbers.

Each script's ``main`` runs once per module (a few hundred physical steps, 2 seeds) into a tmp dir.
No speed and no learning-quality assertions: the benchmarks themselves report those.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import global_obs, shield


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_mean_std(d, seeds):
    assert set(d) == {"mean", "std", "per_seed"}
    assert _finite(d["mean"]) and _finite(d["std"]) and d["std"] >= 0
    assert len(d["per_seed"]) == seeds and all(_finite(v) for v in d["per_seed"])


SHIELD_SEEDS = 2
SHIELD_STEPS = 2_000
SHIELD_LOG = 500


@pytest.fixture(scope="module")
def shield_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("shield")
    # A stale section of another agent: --merge must keep it untouched.
    (out / "shield.json").write_text(json.dumps({"timestamp_utc": "old", "agents": {"dqn": {"arms": {}, "marker": 1}}}))
    doc = shield.main(
        [
            "--quick",
            "--seeds", str(SHIELD_SEEDS),
            "--ql-steps", str(SHIELD_STEPS),
            "--log-every", str(SHIELD_LOG),
            "--eval-episodes", "2",
            "--agents", "ql",
            "--arms", "physical,shield",
            "--merge",
            "--out", str(out),
        ]
    )
    return out, doc


def test_shield_files(shield_run):
    out, doc = shield_run
    assert (out / "shield.json").is_file()
    assert (out / "shield.png").stat().st_size > 1000
    on_disk = json.loads((out / "shield.json").read_text())
    assert on_disk["benchmark"] == "shield"
    assert on_disk["timestamp_utc"].endswith("Z")
    assert on_disk["config"]["mode"] == "quick"
    assert on_disk["config"]["seeds"] == SHIELD_SEEDS
    # --merge kept the other agent's section and said so.
    assert on_disk["agents"]["dqn"]["marker"] == 1
    assert on_disk["merged_from"]["agents"] == ["dqn"]


def test_shield_schema_and_finite_numbers(shield_run):
    out, _ = shield_run
    doc = json.loads((out / "shield.json").read_text())
    ql = doc["agents"]["ql"]
    assert ql["env_id"] == "AccessPointSelection-v0"
    assert ql["physical_steps"] == SHIELD_STEPS and ql["seeds"] == SHIELD_SEEDS
    assert set(ql["arms"]) == {"physical", "shield"}
    n = SHIELD_STEPS // SHIELD_LOG
    for name, arm in ql["arms"].items():
        c = arm["curves"]
        assert c["physical_steps"] == [float(SHIELD_LOG * (i + 1)) for i in range(n)]
        for key in ("cumulative_violations", "cumulative_shielded", "episode_return_smoothed"):
            assert len(c[key]["mean"]) == n and len(c[key]["std"]) == n
        assert all(_finite(v) for v in c["cumulative_violations"]["mean"])
        assert np.all(np.diff(c["cumulative_violations"]["mean"]) >= 0), name
        s = arm["summary"]
        assert s["all_finite"] is True
        for key in ("total_violations", "total_shielded", "final_training_return", "greedy_eval_return",
                    "greedy_eval_violations_per_1k_steps", "twin_transitions", "physical_episodes"):
            _check_mean_std(s[key], SHIELD_SEEDS)
        for window in ("first_10pct", "last_10pct", "whole_run"):
            _check_mean_std(s["violations_per_1k_steps"][window], SHIELD_SEEDS)
            assert 0 <= s["violations_per_1k_steps"][window]["mean"] <= 1000
        assert _finite(arm["compile_s"]) and _finite(arm["run_s"])
    assert ql["arms"]["physical"]["summary"]["total_shielded"]["mean"] == 0
    assert ql["arms"]["shield"]["summary"]["total_shielded"]["mean"] > 0
    assert ql["arms"]["shield"]["summary"]["twin_transitions"]["mean"] == SHIELD_STEPS
    comp = ql["comparisons"]["shield_vs_physical"]
    for key in ("violations_avoided", "training_return_cost", "greedy_return_cost"):
        _check_mean_std(comp[key], SHIELD_SEEDS)
    assert _finite(comp["total_violations_reduction"])


def test_shield_summary_table(shield_run):
    _, doc = shield_run
    table = shield.format_summary({"agents": {"ql": doc["agents"]["ql"]}})
    for arm in ("physical", "shield"):
        assert f"ql/{arm}" in table


def test_window_rate_and_final_return_helpers():
    steps = np.tile(np.arange(1, 11) * 100.0, (2, 1))
    cum = np.stack([np.arange(1, 11) * 10.0, np.arange(1, 11) * 20.0])
    np.testing.assert_allclose(shield.window_rate(cum, steps, 0.0, 0.1), [100.0, 200.0])
    np.testing.assert_allclose(shield.window_rate(cum, steps, 0.9, 1.0), [100.0, 200.0])
    ret = np.array([[1.0, np.nan, 3.0, 5.0]])
    fin = np.array([[1, 0, 1, 3]])
    np.testing.assert_allclose(shield.final_training_return(ret, fin, frac=0.5), [(3.0 + 15.0) / 4])
    np.testing.assert_allclose(shield.moving_average(np.array([1.0, 3.0, np.nan, 5.0]), 2), [1.0, 2.0, 3.0, 5.0])


GO_SEEDS = 2
GO_STEPS = 1_000  # one 100-step episode in each of the 10 envs
GO_LOG = 500


@pytest.fixture(scope="module")
def global_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("global_obs")
    doc = global_obs.main(
        [
            "--quick",
            "--seeds", str(GO_SEEDS),
            "--steps", str(GO_STEPS),
            "--log-every", str(GO_LOG),
            "--eval-episodes", "1",
            "--arms", "partial,partial_global",
            "--out", str(out),
        ]
    )
    return out, doc


def test_global_obs_files(global_run):
    out, _ = global_run
    assert (out / "global_obs.png").stat().st_size > 1000
    doc = json.loads((out / "global_obs.json").read_text())
    assert doc["benchmark"] == "global_obs"
    assert doc["config"]["mode"] == "quick"
    assert list(doc["scenarios"]) == ["fixed_layout"]


def test_global_obs_schema_and_finite_numbers(global_run):
    out, _ = global_run
    doc = json.loads((out / "global_obs.json").read_text())
    section = doc["scenarios"]["fixed_layout"]
    assert section["physical_steps"] == GO_STEPS and section["seeds"] == GO_SEEDS
    arms = section["arms"]
    assert set(arms) == {"partial", "partial_global"}
    assert arms["partial"]["env_id"] == "MultiUAVPartial-v0" and arms["partial"]["twin"] is None
    assert arms["partial_global"]["twin"]["share_global_obs"] is True
    # The global view (the fully observed MultiUAV-v0 observation, 2*4 + 2*10 + 1) is appended.
    assert arms["partial_global"]["observation_size"] == arms["partial"]["observation_size"] + 29
    n = GO_STEPS // GO_LOG
    for arm in arms.values():
        c = arm["curves"]
        assert len(c["physical_episodes"]) == n
        assert len(c["mean_rate_mbps"]["mean"]) == n and len(c["mean_rate_mbps"]["std"]) == n
        s = arm["summary"]
        assert s["all_finite"] is True
        for key in ("final_training_rate_mbps", "greedy_eval_rate_mbps", "physical_episodes"):
            _check_mean_std(s[key], GO_SEEDS)
        # A mean user rate is positive and of the order of Mbps (5.2 right under a UAV).
        assert 0 < s["greedy_eval_rate_mbps"]["mean"] < 10
        assert 0 < s["final_training_rate_mbps"]["mean"] < 10
    assert arms["partial_global"]["summary"]["twin_ready_at_end"] == 1
    gain = section["global_obs_gain_mbps"]
    _check_mean_std(gain["final_training"], GO_SEEDS)
    _check_mean_std(gain["greedy_eval"], GO_SEEDS)


def test_global_obs_summary_table(global_run):
    _, doc = global_run
    table = global_obs.format_summary(doc)
    assert "fixed_layout/partial_global" in table

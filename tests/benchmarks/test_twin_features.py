"""Smoke tests of ``benchmarks/shield.py`` and ``benchmarks/global_obs.py``: tiny settings, schema, finite numbers.

Each script's ``main`` runs once per module (a few hundred physical steps, 2 seeds) into a tmp dir.
No speed and no learning-quality assertions: the benchmarks themselves report those.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import global_obs, harness, shield


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
    # An earlier file with a DQN section: --merge must keep that section untouched.
    dqn_config = {"marker": 1, "seeds": 1, "physical_steps": 10}
    panels = {f"dqn/{what}": {"x": "physical_steps", "y": what, "xlabel": "x", "ylabel": "y", "series": {}, "marker": 3}
              for what in ("violations", "shielded", "training_return", "greedy_return")}
    harness.write("shield", mode="quick", config={"sections": {"dqn": dqn_config}},
                  summary={"dqn": {"arms": {}, "comparisons": {}, "marker": 2}}, curves=panels, out=out)
    doc = shield.main(["--quick", "--seeds", str(SHIELD_SEEDS), "--ql-steps", str(SHIELD_STEPS), "--log-every",
                       str(SHIELD_LOG), "--eval-episodes", "2", "--agents", "ql", "--arms",
                       "physical,shield", "--merge", "--out", str(out)])
    return out, doc


def test_shield_files_and_merge(shield_run):
    out, _ = shield_run
    assert (out / "shield.png").stat().st_size > 1000
    doc = harness.load(out / "shield.json")
    assert doc["benchmark"] == "shield" and doc["mode"] == "quick" and doc["timestamp_utc"].endswith("Z")
    assert doc["config"]["sections"]["ql"]["seeds"] == SHIELD_SEEDS
    assert "commit" in doc["config"]["sections"]["ql"]["provenance"]
    # --merge kept the other agent's sections and said so.
    assert doc["config"]["sections"]["dqn"]["marker"] == 1 and doc["summary"]["dqn"]["marker"] == 2
    assert doc["curves"]["dqn/violations"]["marker"] == 3
    assert doc["config"]["merged_sections"] == ["dqn"]
    assert len((out / "shield.json").read_text().splitlines()) < 1500


def test_shield_schema_and_finite_numbers(shield_run):
    out, _ = shield_run
    doc = harness.load(out / "shield.json")
    cfg, ql = doc["config"]["sections"]["ql"], doc["summary"]["ql"]
    assert cfg["env"] == "AccessPointSelection-v0" and cfg["physical_steps"] == SHIELD_STEPS
    assert cfg["arms"]["shield"]["twin_replay"]["replay"] is None  # tabular: no twin replay
    assert set(ql["arms"]) == {"physical", "shield"}
    n = SHIELD_STEPS // SHIELD_LOG
    for what in ("violations", "shielded", "training_return", "greedy_return"):
        for name, s in doc["curves"][f"ql/{what}"]["series"].items():
            assert len(s["x"]) == len(s["mean"]) == len(s["std"]) == n and s["seeds"] == SHIELD_SEEDS
    for name, s in doc["curves"]["ql/violations"]["series"].items():
        assert s["x"] == [float(SHIELD_LOG * (i + 1)) for i in range(n)]
        assert all(_finite(v) for v in s["mean"]) and np.all(np.diff(s["mean"]) >= 0), name
    for name, s in ql["arms"].items():
        assert s["all_finite"] is True
        for key in ("total_violations", "total_shielded", "final_training_return", "greedy_eval_return",
                    "greedy_eval_violations_per_1k_steps", "twin_transitions", "physical_episodes"):
            _check_mean_std(s[key], SHIELD_SEEDS)
        for window in ("first_10pct", "last_10pct", "whole_run"):
            _check_mean_std(s["violations_per_1k_steps"][window], SHIELD_SEEDS)
            assert 0 <= s["violations_per_1k_steps"][window]["mean"] <= 1000
        assert s["greedy_eval_episodes_per_seed"] == 2
    assert ql["arms"]["physical"]["total_shielded"]["mean"] == 0
    assert ql["arms"]["shield"]["total_shielded"]["mean"] > 0
    # Each physical step runs the identical domain once; a vetoed action's transition is one of them.
    assert ql["arms"]["shield"]["twin_transitions"]["mean"] >= SHIELD_STEPS
    comp = ql["comparisons"]["shield_vs_physical"]
    for key in ("violations_avoided", "training_return_cost", "greedy_return_cost"):
        _check_mean_std(comp[key], SHIELD_SEEDS)
    want = np.subtract(ql["arms"]["physical"]["greedy_eval_return"]["per_seed"],
                       ql["arms"]["shield"]["greedy_eval_return"]["per_seed"])
    np.testing.assert_allclose(comp["greedy_return_cost"]["per_seed"], want, rtol=1e-4)  # JSON: 6 digits


def test_shield_summary_table(shield_run):
    _, doc = shield_run
    table = shield.format_summary({"ql": doc["summary"]["ql"]})
    for arm in ("physical", "shield"):
        assert f"ql/{arm}" in table


def test_window_rate_and_final_return_helpers():
    steps = np.tile(np.arange(1, 11) * 100.0, (2, 1))
    cum = np.stack([np.arange(1, 11) * 10.0, np.arange(1, 11) * 20.0])
    np.testing.assert_allclose(harness.window_rate(cum, steps, 0.0, 0.1), [100.0, 200.0])
    np.testing.assert_allclose(harness.window_rate(cum, steps, 0.9, 1.0), [100.0, 200.0])
    ret = np.array([[1.0, np.nan, 3.0, 5.0]])
    fin = np.array([[1, 0, 1, 3]])
    np.testing.assert_allclose(harness.final_training_return(ret, fin, fraction=0.5), [(3.0 + 15.0) / 4])
    d = harness.per_seed([1.0, np.nan, 3.0])
    assert d["mean"] == 2.0 and d["std"] == 1.0 and len(d["per_seed"]) == 3


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
    doc = harness.load(out / "global_obs.json")
    assert doc["benchmark"] == "global_obs" and doc["mode"] == "quick"
    assert list(doc["summary"]) == ["fixed_layout"] and list(doc["curves"]) == ["fixed_layout/rate"]


def test_global_obs_schema_and_finite_numbers(global_run):
    out, _ = global_run
    doc = harness.load(out / "global_obs.json")
    cfg, section = doc["config"]["sections"]["fixed_layout"], doc["summary"]["fixed_layout"]
    assert cfg["physical_steps"] == GO_STEPS and cfg["seeds"] == GO_SEEDS
    arms = section["arms"]
    assert set(arms) == {"partial", "partial_global"}
    assert cfg["arms"]["partial"]["env"] == "MultiUAVPartial-v0" and cfg["arms"]["partial"]["twin"] is None
    assert cfg["arms"]["partial_global"]["twin"]["share_global_obs"] is True
    # The global view (the fully observed MultiUAV-v0 observation, 2*4 + 2*10 + 1) is appended.
    assert cfg["arms"]["partial_global"]["observation_size"] == cfg["arms"]["partial"]["observation_size"] + 29
    n = GO_STEPS // GO_LOG
    for s in doc["curves"]["fixed_layout/rate"]["series"].values():
        assert len(s["x"]) == len(s["mean"]) == len(s["std"]) == n and s["seeds"] == GO_SEEDS
    for s in arms.values():
        assert s["all_finite"] is True
        for key in ("final_training_rate_mbps", "greedy_eval_rate_mbps", "physical_episodes"):
            _check_mean_std(s[key], GO_SEEDS)
        # A mean user rate is positive and of the order of Mbps (5.2 right under a UAV).
        assert 0 < s["greedy_eval_rate_mbps"]["mean"] < 10
        assert 0 < s["final_training_rate_mbps"]["mean"] < 10
    assert arms["partial_global"]["twin_ready_at_end"] == 1
    gain = section["global_obs_gain_mbps"]
    _check_mean_std(gain["final_training"], GO_SEEDS)
    _check_mean_std(gain["greedy_eval"], GO_SEEDS)


def test_global_obs_summary_table(global_run):
    _, doc = global_run
    assert "fixed_layout/partial_global" in global_obs.format_summary(doc)

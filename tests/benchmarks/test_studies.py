"""Smoke tests of the twin studies (twin_noise, construction_delay, scenario_adaptation) at --tiny size.

They check that each script runs end to end, writes its JSON and PNG, and that the JSON holds what
STUDIES.md quotes. Nothing is learned at this size, so no return is asserted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtrl_jax as dt
from benchmarks import construction_delay, harness, scenario_adaptation, twin_noise


def _files(out, name):
    doc = harness.load(out / f"{name}.json")
    assert doc["benchmark"] == name and doc["mode"] == "tiny"
    assert (out / f"{name}.png").stat().st_size > 1000
    return doc


def _point_keys(p, seeds=1):
    for k in ("kind", "final_return", "mean_return"):
        assert k in p, k
    assert len(p["final_return"]["per_seed"]) == seeds


def test_twin_noise_access_point_part(tmp_path):
    twin_noise.main(["--tiny", "--parts", "ap", "--out", str(tmp_path)])
    doc = _files(tmp_path, "twin_noise")
    pts = doc["summary"]["ap"]["points"]
    assert {p["kind"] for p in pts.values()} == {"physical", "state", "params", "pretrain"}
    for p in pts.values():
        _point_keys(p)
    # Every point is compared at the same physical budget: the pre-train arm's curve starts after it.
    series = doc["curves"]["ap/return"]["series"]
    assert set(series) == set(pts)
    assert all(s["x"] == [400.0, 800.0] for s in series.values())
    assert doc["config"]["sections"]["ap"]["physical_budget"] == 2 * 400
    assert "physical only" in doc["summary"]["conclusions"]["ap"]


def test_twin_noise_multi_uav_part(tmp_path):
    twin_noise.main(["--tiny", "--parts", "uav", "--out", str(tmp_path)])
    doc = _files(tmp_path, "twin_noise")
    pts = doc["summary"]["uav"]["points"]
    assert {p["kind"] for p in pts.values()} == {"physical", "state", "params", "pretrain"}
    assert "uav" in doc["summary"]["conclusions"]


def test_construction_delay_smoke(tmp_path):
    construction_delay.main(["--tiny", "--out", str(tmp_path)])
    doc = _files(tmp_path, "construction_delay")
    pts = list(doc["summary"]["points"].values())
    assert [p["kind"] for p in pts] == ["physical", "wait", "wait", "early"]
    early = pts[-1]
    assert early["build"] == 800 and early["sigma0"] == 300.0 and early["start"] == 0
    for p in pts:
        _point_keys(p)
        assert "steps_to_midway" in p and "reached_physical_final" in p
    assert "physical only" in doc["summary"]["conclusion"]
    construction_delay.main(["--replot", "--out", str(tmp_path)])  # from the stored JSON, no training
    assert "physical only" in harness.load(tmp_path / "construction_delay.json")["summary"]["conclusion"]


def test_scenario_adaptation_smoke(tmp_path):
    scenario_adaptation.main(["--tiny", "--out", str(tmp_path)])
    doc = _files(tmp_path, "scenario_adaptation")
    pts = doc["summary"]["points"]
    assert [p["kind"] for p in pts.values()] == ["physical", "physical_twin", "distribution"]
    for p in pts.values():
        for k in ("before_change", "right_after", "drop", "final_after", "recovery_steps_common"):
            assert len(p[k]["per_seed"]) == 1, k
    assert all(len(s["mean"]) == 4 for s in doc["curves"]["return"]["series"].values())
    assert doc["config"]["change_at"] == 2 * 200


def test_helpers_reach_steps_and_floors():
    ret = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    steps = np.arange(1, 6) * 10
    hit = harness.reach_steps(steps, ret, 2.0)
    assert hit[0] == 30 and np.isnan(hit[1])
    # 2-point trailing mean [0, .5, 1.5, 2.5, 3.5] first reaches 2 at the 4th point; per-seed levels.
    assert harness.reach_steps(steps, ret, [2.0, 0.0], smooth=2).tolist() == [40.0, 10.0]
    _, params = dt.make("AccessPointSelection-v0")
    stack = twin_noise.mismatched_params(jax.random.key(0), params, 64, 3.0, twin_noise.AP_FIELDS)
    assert stack.ap_rate_mbps.shape == (64, 5)
    assert bool(jnp.all(stack.ap_radius_m >= 0.1 * params.ap_radius_m - 1e-4))
    scen = scenario_adaptation.draw_scenarios(jax.random.key(1), params, 16, 2.0)
    assert bool(jnp.all((scen.ap_position_m >= 0) & (scen.ap_position_m <= params.road_length_m)))


@pytest.mark.parametrize("module", [twin_noise, construction_delay, scenario_adaptation])
def test_settings_are_complete(module):
    keys = set(module.SETTINGS["default"])
    for mode in ("tiny", "quick", "full"):
        assert set(module.SETTINGS[mode]) == keys, mode

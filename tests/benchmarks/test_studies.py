"""Smoke tests of the twin studies (twin_noise, construction_delay, scenario_adaptation) at --tiny size.

They check that each script runs end to end, writes its JSON and PNG, and that the JSON holds what
STUDIES.md quotes. Nothing is learned at this size, so no return is asserted.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtrl_jax as dt
from benchmarks import construction_delay, scenario_adaptation, twin_noise


def _files(out, name):
    doc = json.loads((out / f"{name}.json").read_text())
    assert doc["benchmark"] == name and doc["config"]["mode"] == "tiny"
    assert (out / f"{name}.png").stat().st_size > 1000
    return doc


def _point_keys(p):
    for k in ("label", "kind", "final_return_mean", "final_return_std", "mean_return_mean", "curve"):
        assert k in p, k
    assert len(p["curve"]["physical_steps"]) == len(p["curve"]["mean"])


def test_twin_noise_access_point_part(tmp_path):
    twin_noise.main(["--tiny", "--parts", "ap", "--out", str(tmp_path)])
    doc = _files(tmp_path, "twin_noise")
    kinds = {p["kind"] for p in doc["ap"]["points"]}
    assert kinds == {"physical", "state", "params", "pretrain"}
    for p in doc["ap"]["points"]:
        _point_keys(p)
    assert doc["ap"]["physical_budget"] == 2 * 400
    assert "ap" in doc["conclusions"] and "physical only" in doc["conclusions"]["ap"]


def test_twin_noise_multi_uav_part(tmp_path):
    twin_noise.main(["--tiny", "--parts", "uav", "--out", str(tmp_path)])
    doc = _files(tmp_path, "twin_noise")
    pts = doc["uav"]["averaged"]["points"]
    assert {p["kind"] for p in pts} == {"physical", "state", "params", "pretrain"}
    assert "uav" in doc["conclusions"]


def test_construction_delay_smoke(tmp_path):
    construction_delay.main(["--tiny", "--out", str(tmp_path)])
    doc = _files(tmp_path, "construction_delay")
    pts = doc["ap"]["points"]
    assert [p["kind"] for p in pts] == ["physical", "wait", "wait", "early"]
    early = pts[-1]
    assert early["build"] == 800 and early["sigma0"] == 300.0 and early["start"] == 0
    for p in pts:
        _point_keys(p)
        assert "steps_to_midway" in p and "reached_physical_final" in p
    assert "physical only" in doc["conclusion"]


def test_scenario_adaptation_smoke(tmp_path):
    scenario_adaptation.main(["--tiny", "--out", str(tmp_path)])
    doc = _files(tmp_path, "scenario_adaptation")
    pts = doc["ap"]["points"]
    assert [p["kind"] for p in pts] == ["physical", "physical_twin", "distribution"]
    for p in pts:
        for k in ("before_change_mean", "right_after_mean", "drop_mean", "final_after_mean",
                  "recovery_steps_common_mean", "curve"):
            assert k in p, k
        assert len(p["curve"]["mean"]) == 4
    assert doc["ap"]["change_at"] == 2 * 200


def test_helpers_steps_to_target_and_floors():
    ret = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    steps = np.arange(1, 6) * 10
    hit = twin_noise.steps_to_target(ret, steps, 2.0, w=1)
    assert hit[0] == 30 and np.isnan(hit[1])
    np.testing.assert_allclose(twin_noise.smooth(np.array([1.0, np.nan, 3.0]), 2), [1.0, 1.0, 3.0])
    env, params = dt.make("AccessPointSelection-v0")
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

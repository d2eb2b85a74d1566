"""Smoke test of ``benchmarks/twin_calibration.py`` (--quick: every code path, nothing learned)."""

import json
import math

import jax
import pytest

import dtrl_jax as dt
from benchmarks import twin_calibration as tc
from dtrl_jax.twin import calibration as cal
from dtrl_jax.twin import perturb_params

twin_calibration = tc


def test_study_calibration_step_lowers_twin_error():
    """Fast variant: the study's calibration of every domain (CEM, quick settings) and its quality measures."""
    env, params = dt.make("AccessPointSelection-v0")
    batch = cal.collect_transitions(jax.random.key(0), env, params, 125, 2)
    twin = perturb_params(jax.random.key(1), params, tc.DOMAINS, 0.3, fields=tc.FIELDS)
    res = tc.calibrate_domains(env, twin, batch, jax.random.key(2), dict(tc.MODES["quick"], cem_steps=5))
    before = tc.quality(env, params, twin, batch, jax.random.key(3))
    after = tc.quality(env, params, res.params, batch, jax.random.key(3))
    assert after["twin_error"] < before["twin_error"]
    assert tc.quality(env, params, twin.replace(**{f: jax.numpy.broadcast_to(getattr(params, f), getattr(twin, f).shape)
                                                   for f in tc.FIELDS}), batch, jax.random.key(3))["param_error"] == 0.0


@pytest.mark.slow


def test_twin_calibration_quick(tmp_path):
    twin_calibration.main(["--quick", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "twin_calibration.json").read_text())
    assert (tmp_path / "twin_calibration.png").stat().st_size > 0
    fr = doc["summary"]["final_eval_return"]
    assert set(fr) == {"physical only", "perfect twin", "mismatched rho 0.3", "calibrated rho 0.3"}
    rows = {r["arm"]: r for r in doc["summary"]["calibration"]}
    assert rows["perfect twin"]["param_error"] == 0.0
    assert rows["mismatched rho 0.3"]["param_error"] > 0.0
    steps = rows["calibrated rho 0.3"]["collect_steps"]
    assert 0 < steps <= 100
    # calibration never returns a twin worse than its start on the data it was fitted to; on held-out data
    # it is finite
    assert math.isfinite(rows["calibrated rho 0.3"]["twin_error"])
    # the collection phase is charged to the calibrated arm
    series = doc["curves"]["greedy_vs_steps"]["series"]
    assert series["calibrated rho 0.3"]["x"][0] == series["perfect twin"]["x"][0] + steps

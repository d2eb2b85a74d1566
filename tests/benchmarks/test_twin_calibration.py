"""Smoke test of ``benchmarks/twin_calibration.py`` (--quick: every code path, nothing learned)."""

import json
import math

import jax
import numpy as np
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


def test_inloop_arm_quick():
    """The study's in-loop arm (quick settings, one twin, one seed): chunked run, parameter error read
    between chunks, the loop's twin_error metric."""
    st = tc.MODES["quick"]
    env, params = dt.make("AccessPointSelection-v0")
    twin = perturb_params(jax.random.key(1), params, tc.DOMAINS, 0.3, fields=tc.FIELDS)
    base = dt.QLearningConfig(total_timesteps=st["intervals"] * st["log_every"], log_every=st["log_every"],
                              num_envs=st["num_envs"], epsilon_decay_steps=st["decay"],
                              twin=dt.TwinConfig(num_domains=tc.DOMAINS, action_trials=5,
                                                 calibrate_buffer=st["inloop"]["buffer"]))
    out, compile_s, run_s, final = tc.run_inloop(base.replace(twin=tc.inloop_twin(base, st)), env, params, [twin], st,
                                          jax.devices()[0])
    m = out[0]
    assert m["twin_error"].shape == (1, st["intervals"]) and np.all(np.isfinite(m["twin_error"]))
    assert m["param_error"].shape == (1, st["intervals"] + 1)
    assert m["param_error"][0, 0] == pytest.approx(float(tc.log_ratio_error(twin, params)), rel=1e-6)
    assert m["param_error"][0, 0] != m["param_error"][0, -1]  # the phases changed the twin
    np.testing.assert_array_equal(m["param_error_steps"], [0, 400, 800])
    assert compile_s > 0 and run_s > 0
    assert final.ap_rate_mbps.shape == (1, 1, tc.DOMAINS, params.ap_rate_mbps.shape[0])
    assert m["param_error"][0, -1] == pytest.approx(float(tc.log_ratio_error(
        jax.tree.map(lambda x: x[0, 0], final), params)), rel=1e-6)


@pytest.mark.slow
def test_twin_calibration_quick(tmp_path):
    twin_calibration.main(["--quick", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "twin_calibration.json").read_text())
    assert (tmp_path / "twin_calibration.png").stat().st_size > 0
    fr = doc["summary"]["final_eval_return"]
    assert set(fr) == {"physical only", "perfect twin", "mismatched rho 0.3", "calibrated rho 0.3", "in-loop rho 0.3"}
    rows = {r["arm"]: r for r in doc["summary"]["calibration"]}
    assert rows["perfect twin"]["param_error"] == 0.0
    assert rows["mismatched rho 0.3"]["param_error"] > 0.0
    il = doc["summary"]["inloop"]["per_rho"]["0.3"]
    assert il["param_error_start"] == pytest.approx(rows["mismatched rho 0.3"]["param_error"], rel=1e-5)
    assert len(doc["inloop_param_error"]["0.3"]["steps"]) == 3
    assert "in-loop rho 0.3 - mismatched rho 0.3" in doc["summary"]["paired_differences"]
    steps = rows["calibrated rho 0.3"]["collect_steps"]
    assert 0 < steps <= 100
    # calibration never returns a twin worse than its start on the data it was fitted to; on held-out data
    # it is finite
    assert math.isfinite(rows["calibrated rho 0.3"]["twin_error"])
    # the collection phase is charged to the calibrated arm
    series = doc["curves"]["greedy_vs_steps"]["series"]
    assert series["calibrated rho 0.3"]["x"][0] == series["perfect twin"]["x"][0] + steps

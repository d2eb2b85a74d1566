"""In-loop calibration (``TwinConfig.calibrate_every``) and the ``twin_error`` metric."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtrl_jax as dt
from dtrl_jax.memory import estimate_memory, tree_bytes
from dtrl_jax.twin import calibration as cal
from dtrl_jax.twin import online, perturb_params

ENV, PARAMS = dt.make("AccessPointSelection-v0")
FIELDS = ("ap_rate_mbps", "ap_cost")  # identified by one-step data (rewards on success)
TWIN = perturb_params(jax.random.key(7), PARAMS, 3, 0.4, fields=FIELDS)
OPTIONS = {"method": "cem", "num_samples": 1, "steps": 8, "population": 32, "init_std": 0.15, "range_factor": 4.0}


def config(**twin):
    base = dict(num_domains=3, action_trials=3, calibrate_buffer=256)
    base.update(twin)
    return dt.QLearningConfig(total_timesteps=1024, log_every=256, num_envs=8, gamma=0.9, epsilon_decay_steps=512,
                              twin=dt.TwinConfig(**base))


CALIBRATING = dict(calibrate_every=256, calibrate_fields=FIELDS, calibrate_options=OPTIONS)


@functools.cache
def trained(kind: str, seed: int = 0):
    twin = {"off": dict(calibrate_buffer=0), "monitor": {}, "calibrate": CALIBRATING,
            }[kind]
    return jax.jit(dt.make_train(config(**twin), ENV, PARAMS, twin_params=TWIN))(jax.random.key(seed))


def test_inloop_calibration_lowers_twin_error_and_parameter_error():
    res = trained("calibrate")
    final = res.runner_state.calibration
    key = jax.random.key(5)
    # on the final buffer (the last 256 physical transitions): the mismatched start against the fit
    before = float(online.buffer_twin_error(ENV, final.replace(params=TWIN), key, 1))
    after = float(online.buffer_twin_error(ENV, final, key, 1))
    perfect = float(online.buffer_twin_error(ENV, final.replace(params=online.replicate(PARAMS, 3)), key, 1))
    assert before > 0.01 and after < 0.3 * before and perfect < after
    # the metric: the first phase runs at step 256, the end of interval 0; then the error stays low
    metric = np.asarray(res.metrics["twin_error"])
    last_key = jax.random.fold_in(jax.random.fold_in(res.runner_state.eval_key, dt.train.TWIN_ERROR_STREAM), 3)
    np.testing.assert_allclose(metric[-1], float(online.buffer_twin_error(ENV, final, last_key, 1)), rtol=1e-6)
    assert np.all(metric[1:] < 0.3 * before)
    params = final.params
    err0 = float(jnp.mean(jax.vmap(lambda p: cal.param_error(p, PARAMS, FIELDS))(TWIN)))
    err1 = float(jnp.mean(jax.vmap(lambda p: cal.param_error(p, PARAMS, FIELDS))(params)))
    assert err1 < 0.5 * err0
    # shared mode writes one fit into every domain; only the calibrated fields change
    for f in FIELDS:
        v = np.asarray(getattr(params, f))
        np.testing.assert_array_equal(v, np.broadcast_to(v[0], v.shape))
    np.testing.assert_array_equal(np.asarray(params.ap_radius_m), np.asarray(TWIN.ap_radius_m))


def test_monitoring_buffer_leaves_training_bit_identical():
    """A buffer without phases (and so any run with calibration off) draws no physical random number."""
    off, monitored = trained("off"), trained("monitor")
    assert np.all(np.isnan(np.asarray(off.metrics["twin_error"])))
    assert off.runner_state.calibration is None
    for a, b in zip(jax.tree.leaves(off.runner_state.agent_state), jax.tree.leaves(monitored.runner_state.agent_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in dt.train.METRIC_NAMES:
        if name != "twin_error":
            np.testing.assert_array_equal(np.asarray(off.metrics[name]), np.asarray(monitored.metrics[name]))


def test_per_domain_calibration_under_vmap_over_seeds_keys_differ_and_one_key_reproduces():
    train = dt.make_train(config(**CALIBRATING, calibrate_per_domain=True), ENV, PARAMS, twin_params=TWIN)
    keys = jax.random.split(jax.random.key(0), 2)
    run = jax.jit(jax.vmap(train))
    batched = run(keys)
    te = np.asarray(batched.metrics["twin_error"])
    assert te.shape == (2, 4) and not np.array_equal(te[0], te[1])
    rates = np.asarray(batched.runner_state.calibration.params.ap_rate_mbps)  # [seeds, domains, aps]
    assert not np.array_equal(rates[0], rates[1])
    assert not np.allclose(rates[0, 0], rates[0, 1])  # each domain fitted from its own start and key
    np.testing.assert_array_equal(te, np.asarray(run(keys).metrics["twin_error"]))
    start = jax.vmap(lambda c: online.buffer_twin_error(ENV, c.replace(params=TWIN), jax.random.key(5), 1))(
        batched.runner_state.calibration)
    assert np.all(te[:, -1] < 0.3 * np.asarray(start))


def test_calibrate_until_stops_the_phases():
    train = dt.make_train(config(**CALIBRATING, calibrate_until=300), ENV, PARAMS, twin_params=TWIN)
    runner, intervals = train.init(jax.random.key(0))
    run = jax.jit(train.run)
    first, _ = run(runner, intervals[:2])  # the phase at step 256 only
    last, _ = run(first, intervals[2:])
    a, b = np.asarray(first.calibration.params.ap_rate_mbps), np.asarray(last.calibration.params.ap_rate_mbps)
    assert not np.array_equal(a, np.asarray(TWIN.ap_rate_mbps))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.asarray(last.calibration.buffer.action), np.asarray(first.calibration.buffer.action))


def _count_conds(cfg):
    train = dt.make_train(cfg, ENV, PARAMS, twin_params=TWIN)
    return str(jax.make_jaxpr(jax.vmap(train))(jax.random.split(jax.random.key(0), 2))).count(" cond[")


def test_phase_stays_a_branch_under_vmap():
    """The phase's ``lax.cond`` is scheduled from the scan index, so vmap over seeds keeps it a cond."""
    assert _count_conds(config(**CALIBRATING)) == _count_conds(config()) + 1


@pytest.mark.parametrize("twin,match", [
    (dict(calibrate_every=256, calibrate_fields=("nope",)), "'nope' is not a field"),
    (dict(calibrate_every=256, calibrate_fields=("max_steps_in_episode",)), "not a float field"),
    (dict(calibrate_every=256, calibrate_fields=("num_aps",)), "is static"),
    (dict(calibrate_buffer=4), "calibrate_buffer=4 is below num_envs=8"),
])
def test_make_train_rejects_bad_calibration_before_tracing(twin, match):
    with pytest.raises(ValueError, match=match) as err:
        dt.make_train(config(**dict(dict(calibrate_options=OPTIONS) if "calibrate_fields" in twin else {}, **twin)),
                      ENV, PARAMS, twin_params=TWIN)
    if "calibrate_fields" in twin:
        assert "calibratable fields: [" in str(err.value) and "ap_rate_mbps" in str(err.value)


@pytest.mark.parametrize("twin,match", [
    (dict(calibrate_every=256), "calibrate_fields=\\(\\) with calibrate_every=256"),
    (dict(calibrate_fields=FIELDS), "calibrate_every=0"),
    (dict(calibrate_every=-1, calibrate_fields=FIELDS), "calibrate_every=-1"),
    (dict(calibrate_every=256, calibrate_fields=FIELDS, calibrate_buffer=0), "calibrate_buffer=0"),
    (dict(calibrate_options={"population": 1}), "calibrate_options.*population=1"),
    (dict(calibrate_options={"fields": ("a",)}), "unknown setting\\(s\\) \\['fields'\\]"),
    (dict(action_trials=1, num_domains=1), "need the digital domains"),
    (dict(calibrate_every=256, calibrate_fields=FIELDS, calibrate_until=0), "calibrate_until=0"),
])
def test_twin_config_rejects_bad_calibration_fields(twin, match):
    base = dict(num_domains=3, action_trials=3, calibrate_buffer=256)
    base.update(twin)
    with pytest.raises(ValueError, match=match):
        dt.TwinConfig(**base)


def test_options_are_normalised_and_hashable():
    twin = dt.TwinConfig(num_domains=3, action_trials=3, calibrate_buffer=64, **CALIBRATING)
    assert twin.calibrate_options == tuple(sorted(OPTIONS.items()))
    assert hash(twin.calibrate_options) == hash(twin.replace(calibrate_every=512).calibrate_options)
    assert twin.calibration_config.population == 32 and twin.calibration_samples == 1
    bounded = twin.replace(calibrate_options={"bounds": {"ap_cost": (0.1, 10.0)}})
    assert bounded.calibration_config.bounds == (("ap_cost", 0.1, 10.0),)


def test_ring_buffer_keeps_the_last_transitions():
    env_state = ENV.reset(jax.random.key(0), PARAMS)[1]
    c = online.init_calibration(env_state, jnp.int32(0), TWIN, 5)
    states = jax.tree.map(lambda x: jnp.stack([x] * 2), env_state)
    for step in range(0, 8, 2):  # 4 vectorised steps of 2 envs into 5 slots
        c = online.record(c, step, states, jnp.array([step, step + 1]), jnp.array([step, step + 1]),
                          jnp.array([step, step + 1], jnp.float32))
    # transitions 0..7 went to slots t % 5: the buffer holds 5, 6, 7, 3, 4
    np.testing.assert_array_equal(np.asarray(c.buffer.action), [5, 6, 7, 3, 4])
    np.testing.assert_array_equal(np.asarray(c.buffer.weight), np.ones(5))
    fresh = online.init_calibration(env_state, jnp.int32(0), TWIN, 5)
    fresh = online.record(fresh, 0, states, jnp.array([1, 2]), jnp.array([0, 0]), jnp.zeros(2))
    np.testing.assert_array_equal(np.asarray(fresh.buffer.weight), [1, 1, 0, 0, 0])


def test_memory_estimate_counts_the_calibration():
    cfg = config(**CALIBRATING)
    est = estimate_memory(cfg, ENV, PARAMS, twin_params=TWIN)
    runner, _ = jax.eval_shape(dt.make_train(cfg, ENV, PARAMS, twin_params=TWIN).init, jax.random.key(0))
    carried = tree_bytes(runner.calibration)
    assert carried > 256 * 4 * 3  # at least the buffer's actions, rewards and weights
    # plus one phase: population x buffer x samples twin steps
    assert est["calibration_bytes"] > carried + 32 * 256 * 4
    assert estimate_memory(config(calibrate_buffer=0), ENV, PARAMS, twin_params=TWIN)["calibration_bytes"] == 0
    assert estimate_memory(config(), ENV, PARAMS, twin_params=TWIN)["calibration_bytes"] == carried

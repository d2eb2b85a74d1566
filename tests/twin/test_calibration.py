"""Twin calibration: recovery of known parameters, twin_error, vmap over seeds, rejected fields."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.cartpole import CartPole
from gymnax.environments.classic_control.cartpole import EnvParams as CartPoleParams

import dtrl_jax as dt
from dtrl_jax.twin import perturb_params
from dtrl_jax.twin import calibration as cal


def _cartpole_step_numpy(s, a, length, masspole, masscart=1.0, g=9.8, force_mag=10.0, tau=0.02):
    """Independent NumPy reference of the CartPole Euler step (gym's equations)."""
    x, x_dot, th, th_dot = s
    total, pml = masscart + masspole, masspole * length
    force = force_mag if a == 1 else -force_mag
    temp = (force + pml * th_dot**2 * np.sin(th)) / total
    thacc = (g * np.sin(th) - np.cos(th) * temp) / (length * (4 / 3 - masspole * np.cos(th) ** 2 / total))
    xacc = temp - pml * thacc * np.cos(th) / total
    return np.array([x + tau * x_dot, x_dot + tau * xacc, th + tau * th_dot, th_dot + tau * thacc])


@pytest.fixture(scope="module")
def cartpole_data():
    env, prior = CartPole(), CartPoleParams()
    true = cal.cartpole_derive(prior.replace(length=0.65, masspole=0.13))
    batch = cal.collect_transitions(jax.random.key(0), env, true, 32, 4)
    return env, prior, true, batch


def test_collected_transitions_match_numpy_reference(cartpole_data):
    _, _, _, batch = cartpole_data
    s = batch.state
    for i in (0, 5, 77):
        state = [float(s.x[i]), float(s.x_dot[i]), float(s.theta[i]), float(s.theta_dot[i])]
        ref = _cartpole_step_numpy(state, int(batch.action[i]), 0.65, 0.13)
        np.testing.assert_allclose(np.asarray(batch.next_obs[i]), ref, rtol=1e-4, atol=1e-6)


def test_cartpole_gradient_recovers_length_and_masspole(cartpole_data):
    env, prior, true, batch = cartpole_data
    cfg = cal.CalibrationConfig(fields=("length", "masspole"), derive=cal.cartpole_derive, num_samples=1, steps=150)
    res = jax.jit(lambda k: cal.calibrate(env, prior, batch, k, cfg))(jax.random.key(1))
    # Tolerance: 1 % relative (deterministic step; the start is 23 % / 30 % off).
    assert abs(float(res.params.length) / 0.65 - 1) < 0.01
    assert abs(float(res.params.masspole) / 0.13 - 1) < 0.01
    assert float(res.params.polemass_length) == pytest.approx(float(res.params.length * res.params.masspole), rel=1e-5)
    assert float(res.loss) < 0.02 * float(res.initial_loss)
    # twin_error is observable: the true params score ~0, the prior does not.
    assert float(cal.twin_error(env, true, batch, jax.random.key(2), 1)) < 1e-5
    assert float(cal.twin_error(env, prior, batch, jax.random.key(2), 1)) > 1e-3


def test_cartpole_vmap_over_seeds(cartpole_data):
    env, prior, _, batch = cartpole_data
    cfg = cal.CalibrationConfig(fields=("length",), derive=cal.cartpole_derive, num_samples=1, steps=60)
    res = jax.jit(jax.vmap(lambda k: cal.calibrate(env, prior, batch, k, cfg)))(jax.random.split(jax.random.key(3), 3))
    assert res.params.length.shape == (3,)
    one = cal.calibrate(env, prior, batch, jax.random.split(jax.random.key(3), 3)[1], cfg)
    np.testing.assert_allclose(np.asarray(res.params.length[1]), np.asarray(one.params.length), rtol=1e-5)
    assert np.all(np.asarray(res.loss) <= np.asarray(res.initial_loss))


@pytest.fixture(scope="module")
def uav_data():
    env, prior = dt.make("MultiUAV-v0", num_uavs=2)
    true = prior.replace(bandwidth_hz=250e3, user_speed_std_mps=1.5)
    return env, prior, true, cal.collect_transitions(jax.random.key(0), env, true, 48, 4)


@pytest.mark.parametrize("method", ["gradient", "cem"])
def test_multi_uav_recovers_bandwidth_and_user_speed(uav_data, method):
    env, prior, _, batch = uav_data
    steps = 80 if method == "gradient" else 25
    cfg = cal.CalibrationConfig(fields=("bandwidth_hz", "user_speed_std_mps"), method=method, steps=steps)
    res = jax.jit(lambda k: cal.calibrate(env, prior, batch, k, cfg))(jax.random.key(1))
    # Tolerances: bandwidth (deterministic rate scale) 1 %; the noise scale of the users' random walk,
    # fitted through the proper score from 192 transitions x 4 twin samples, 15 % (start: 39 % / 33 % off).
    assert abs(float(res.params.bandwidth_hz) / 250e3 - 1) < 0.01
    assert abs(float(res.params.user_speed_std_mps) / 1.5 - 1) < 0.15


def test_twin_error_lower_after_calibrating_a_perturbed_twin(uav_data):
    env, prior, true, batch = uav_data
    fields = ("bandwidth_hz", "uav_speed_mps")
    twin = jax.tree.map(lambda x: x[0], perturb_params(jax.random.key(4), true, 1, 0.3, fields=fields))
    cfg = cal.CalibrationConfig(fields=fields, method="cem", steps=20, num_samples=2)
    res = jax.jit(lambda k: cal.calibrate(env, twin, batch, k, cfg))(jax.random.key(5))
    error = jax.jit(lambda p: cal.twin_error(env, p, batch, jax.random.key(6)))
    before, after, floor = float(error(twin)), float(error(res.params)), float(error(true))
    # The users' random walk leaves a floor (half the twin's own spread) even at the true params.
    assert after - floor < 0.1 * (before - floor)
    assert float(cal.param_error(res.params, true, fields)) < 0.2 * float(cal.param_error(twin, true, fields))


def test_bad_fields_rejected_with_named_value_error(uav_data):
    env, prior, _, batch = uav_data
    key = jax.random.key(0)
    for name, why in (("no_such_field", "not a field"), ("num_users", "static"), ("user_seed", "not a float")):
        with pytest.raises(ValueError, match=f"'{name}' .*{why}.*calibratable fields: .*bandwidth_hz"):
            cal.calibrate(env, prior, batch, key, cal.CalibrationConfig(fields=(name,)))
    # A zero prior entry has no multiplicative default range; explicit bounds fix it.
    with pytest.raises(ValueError, match="hangar_y_m.*bounds"):
        cal.calibrate(env, prior, batch, key, cal.CalibrationConfig(fields=("hangar_y_m",), steps=1))
    ok = cal.CalibrationConfig(fields=("hangar_y_m",), bounds={"hangar_y_m": (0, 50)}, steps=1, method="cem",
                               population=2, num_samples=1)
    res = jax.jit(lambda k: cal.calibrate(env, prior, batch, k, ok))(key)
    assert 0.0 <= float(res.params.hangar_y_m) <= 50.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(fields=()), "fields"),
    (dict(fields=("a", "a")), "duplicate"),
    (dict(fields=("a",), bounds={"b": (0, 1)}), "not in fields"),
    (dict(fields=("a",), bounds={"a": (1, 1)}), "low < high"),
    (dict(fields=("a",), method="newton"), "method"),
    (dict(fields=("a",), range_factor=1.0), "range_factor"),
    (dict(fields=("a",), num_samples=0), "num_samples"),
    (dict(fields=("a",), elite_fraction=0.0), "elite_fraction"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cal.CalibrationConfig(**kwargs)


def test_log_space_bounds_and_coordinates():
    _, prior = dt.make("MultiUAV-v0", num_uavs=1)
    cfg = cal.CalibrationConfig(fields=("bandwidth_hz", "uav_height_m"), bounds={"uav_height_m": (-1.0, 9.0)})
    spec, w0 = cal._coordinates(prior, cfg)
    assert float(w0[0]) == pytest.approx(0.5)  # the prior sits at the geometric centre of [v/10, 10 v]
    assert float(w0[1]) == pytest.approx(0.6)  # linear bounds: (5 - -1) / 10
    p = cal._apply(prior, spec, jnp.array([1.0, 0.0]), None)
    assert float(p.bandwidth_hz) == pytest.approx(1.8e6, rel=1e-5)
    assert float(p.uav_height_m) == pytest.approx(-1.0)


def test_pendulum_autodiff_path_recovers_mass_and_length():
    """gymnax Pendulum supports transition gradients: the gradient method uses jax.grad through env.step."""
    import gymnax

    env, prior = gymnax.make("Pendulum-v1")
    assert env.supports_transition_gradients
    true = prior.replace(m=1.3, l=0.8)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    _, states = jax.vmap(lambda k: env.reset(k, true))(jax.random.split(k1, 128))
    states = states.replace(theta_dot=jax.random.uniform(k2, (128,), minval=-4.0, maxval=4.0))
    actions = jax.random.uniform(k3, (128, 1), minval=-2.0, maxval=2.0)
    obs, _, r, _, _ = jax.vmap(lambda s, a: env.step_env(jax.random.key(0), s, a, true))(states, actions)
    batch = cal.PhysicalBatch(state=states, action=actions, next_obs=obs, reward=r, weight=jnp.ones(128))
    cfg = cal.CalibrationConfig(fields=("m", "l"), num_samples=1, steps=150)
    res = jax.jit(lambda k: cal.calibrate(env, prior, batch, k, cfg))(jax.random.key(1))
    assert abs(float(res.params.m) / 1.3 - 1) < 0.02
    assert abs(float(res.params.l) / 0.8 - 1) < 0.02

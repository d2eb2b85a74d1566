"""Tests of ``MultiUAV-v0`` / ``MultiUAVPartial-v0`` (dtrl_jax/envs/multi_uav.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dtrl_jax as dt
from dtrl_jax.envs import multi_uav as mu

INFO_KEYS = {"mean_rate_mbps", "min_rate_mbps", "terminated", "truncated", "final_observation"}


@pytest.fixture(scope="module")
def full():
    return dt.make("MultiUAV-v0")


@pytest.fixture(scope="module")
def partial():
    return dt.make("MultiUAVPartial-v0")


def np_mean_best_rate_mbps(uav_xy, user_xy, p) -> tuple[float, float]:
    """Independent NumPy (float64) recomputation: Friis + Shannon, best UAV per user."""
    uav_xy = np.asarray(uav_xy, np.float64)
    user_xy = np.asarray(user_xy, np.float64)
    d2 = ((user_xy[:, None, :] - uav_xy[None, :, :]) ** 2).sum(-1) + p.uav_height_m**2
    d = np.maximum(np.sqrt(d2), 1.0)
    lam = 299_792_458.0 / p.carrier_hz
    gain = (lam / (4 * np.pi * d)) ** 2
    noise = 10 ** ((p.noise_psd_dbm_hz - 30) / 10) * p.bandwidth_hz
    rate = p.bandwidth_hz * np.log2(1 + p.tx_power_w * gain / noise)
    best = rate.max(axis=1) / 1e6
    return best.mean(), best.min()


# one compiled step_env (no auto-reset) shared by the hand-built-state tests
_STEP_ENV = jax.jit(mu.MultiUAV().step_env)


def make_state(uav_xy, user_xy, time=0):
    return mu.EnvState(
        uav_pos=jnp.asarray(uav_xy, jnp.float32),
        user_pos=jnp.asarray(user_xy, jnp.float32),
        time=jnp.int32(time),
    )


# ----------------------------------------------------------------------------- registry / api
def test_registered_defaults_and_spaces(full, partial):
    envs = dt.registered_envs()
    assert "MultiUAV-v0" in envs and "MultiUAVPartial-v0" in envs
    env, p = full
    penv, pp = partial
    assert env.name == "MultiUAV-v0" and penv.name == "MultiUAVPartial-v0"
    assert (p.num_users, p.num_uavs, p.max_steps_in_episode) == (10, 4, 100)
    assert (p.area_size_m, p.uav_height_m, p.uav_speed_mps, p.tx_power_w) == (500.0, 5.0, 8.0, 0.1)
    assert p.noise_psd_dbm_hz == -174.0
    assert env.num_actions == 625 and env.action_space(p).n == 625
    assert env.observation_space(p).shape == (2 * 4 + 2 * 10 + 1,)
    assert penv.observation_space(pp).shape == (2 * 4 + 3 * 10 + 1,)
    # shape fields are static, others traced
    leaves = jax.tree_util.tree_leaves(p)
    assert len(leaves) == 14


def test_non_default_shapes():
    env, p = dt.make("MultiUAVPartial-v0", num_uavs=2, num_users=3)
    assert env.num_actions == 25 and env.action_space(p).n == 25
    obs, s = env.reset(jax.random.key(0), p)
    assert obs.shape == (2 * 2 + 3 * 3 + 1,) and s.uav_pos.shape == (2, 2) and s.user_pos.shape == (3, 2)
    obs, s, r, te, tr, info = env.step(jax.random.key(1), s, 24, p)
    assert obs.shape == (14,) and env.global_observation(s, p).shape == (2 * 2 + 2 * 3 + 1,)


# ----------------------------------------------------------------------------- jit / vmap
def test_jit_reset_step(full):
    env, p = full
    obs, s = jax.jit(env.reset)(jax.random.key(0), p)
    assert obs.dtype == jnp.float32 and obs.shape == (29,)
    assert env.observation_space(p).contains(obs)
    np.testing.assert_allclose(s.uav_pos, np.tile([[250.0, 0.0]], (4, 1)))
    out = jax.jit(env.step)(jax.random.key(1), s, jnp.int32(7), p)
    assert len(out) == 6
    obs, s2, r, te, tr, info = out
    assert set(info) == INFO_KEYS and "violation" not in info
    assert r.dtype == jnp.float32 and r.shape == ()
    assert obs.dtype == jnp.float32 and s2.uav_pos.dtype == jnp.float32
    assert not bool(te) and not bool(tr) and int(s2.time) == 1
    assert float(r) == pytest.approx(float(info["mean_rate_mbps"]))
    assert 0.0 < float(info["min_rate_mbps"]) <= float(r)


def test_vmap_1024_keys_invariants_and_same_dynamics(full, partial):
    env, p = full
    penv, pp = partial
    keys = jax.random.split(jax.random.key(3), 1024)

    @jax.jit
    @jax.vmap
    def run(k):
        k0, k1, k2 = jax.random.split(k, 3)
        a = env.action_space(p).sample(k1)
        _, s = env.reset(k0, p)
        _, ps = penv.reset(k0, pp)
        out = env.step(k2, s, a, p)
        pout = penv.step(k2, ps, a, pp)
        return out, pout, penv.global_observation(pout[1], pp)

    (obs, s, r, te, tr, info), (pobs, ps, pr, pte, ptr, pinfo), pglobal = run(keys)
    assert obs.shape == (1024, 29) and pobs.shape == (1024, 39) and r.shape == (1024,)
    for o in (obs, pobs):
        assert bool(jnp.all((o >= 0) & (o <= 1)))
    for pos in (s.uav_pos, s.user_pos):
        assert bool(jnp.all((pos >= 0) & (pos <= p.area_size_m)))
    assert bool(jnp.all(jnp.isfinite(r) & (r > 0)))
    assert bool(jnp.all(info["min_rate_mbps"] <= r + 1e-6))
    assert not bool(jnp.any(te | pte)) and not bool(jnp.any(tr | ptr))
    # the layout is fixed by user_seed (resample_users=False): users start identical, then random-walk
    assert float(jnp.std(s.user_pos, axis=0).max()) < 5.0
    assert float(jnp.std(s.user_pos, axis=0).min()) > 0.0
    # same dynamics and reward; the partial env's global observation is the full env's observation
    np.testing.assert_array_equal(ps.uav_pos, s.uav_pos)
    np.testing.assert_array_equal(ps.user_pos, s.user_pos)
    np.testing.assert_array_equal(pr, r)
    np.testing.assert_array_equal(pglobal, obs)
    assert pglobal.dtype == jnp.float32


def test_vmap_over_params_stack(full):
    env, p = full
    ps = [
        p.replace(area_size_m=a, uav_speed_mps=v, user_seed=sd, hangar_x_m=a / 2, bandwidth_hz=b)
        for a, v, sd, b in [(500.0, 8.0, 0, 180e3), (200.0, 4.0, 1, 1e6), (1000.0, 20.0, 2, 20e3)]
    ]
    for q in ps:
        mu.validate_params(q)
    stack = jax.tree_util.tree_map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]), *ps)
    action = mu.encode_action(jnp.array([1, 1, 1, 1]))  # all north

    @jax.jit
    @jax.vmap
    def run(k, q):
        obs, s = env.reset(k, q)
        return env.step(k, s, action, q)

    keys = jax.random.split(jax.random.key(0), 3)
    obs, s, r, te, tr, info = run(keys, stack)
    for i, q in enumerate(ps):
        np.testing.assert_allclose(s.uav_pos[i], np.tile([[q.area_size_m / 2, q.uav_speed_mps]], (4, 1)))
        assert bool(jnp.all((s.user_pos[i] >= 0) & (s.user_pos[i] <= q.area_size_m)))
        mean, _ = np_mean_best_rate_mbps(s.uav_pos[i], s.user_pos[i], q)
        np.testing.assert_allclose(float(r[i]), mean, rtol=1e-5)
        np.testing.assert_allclose(obs[i][:8], np.asarray(s.uav_pos[i]).reshape(-1) / q.area_size_m,
                                   rtol=1e-6)
    assert len({float(x) for x in r}) == 3


# ----------------------------------------------------------------------------- dynamics
def test_action_decoding_by_hand():
    cases = {0: [0, 0, 0, 0], 1: [1, 0, 0, 0], 5: [0, 1, 0, 0], 624: [4, 4, 4, 4], 513: [3, 2, 0, 4]}
    for a, moves in cases.items():
        np.testing.assert_array_equal(mu.decode_action(a, 4), moves)
        assert int(mu.encode_action(moves)) == a
    every = jnp.arange(625)
    decoded = jax.vmap(lambda a: mu.decode_action(a, 4))(every)
    np.testing.assert_array_equal(mu.encode_action(decoded), every)


def test_moves_and_clipping(full):
    env, p = full
    p = p.replace(user_speed_std_mps=0.0)
    uav = [[100.0, 100.0], [100.0, 100.0], [100.0, 100.0], [0.0, 500.0]]
    users = np.full((10, 2), 250.0)
    # 513 = UAV0 east, UAV1 south, UAV2 stay, UAV3 west (clipped at x = 0)
    _, s, *_ = _STEP_ENV(jax.random.key(0), make_state(uav, users), 513, p)
    np.testing.assert_allclose(s.uav_pos, [[108.0, 100.0], [100.0, 92.0], [100.0, 100.0], [0.0, 500.0]])
    # 1 + 5 + 25 + 125 = all north: UAV3 clipped at y = 500
    _, s, *_ = _STEP_ENV(jax.random.key(0), make_state(uav, users), 156, p)
    np.testing.assert_allclose(s.uav_pos, [[100.0, 108.0]] * 3 + [[0.0, 500.0]])
    np.testing.assert_allclose(s.user_pos, users)


def test_reward_matches_numpy_for_hand_built_layout(full):
    env, p = full
    p = p.replace(user_speed_std_mps=0.0)
    uav = [[50.0, 50.0], [450.0, 50.0], [250.0, 250.0], [250.0, 480.0]]
    users = [[50.0, 50.0], [60.0, 40.0], [400.0, 100.0], [250.0, 300.0], [10.0, 490.0],
             [490.0, 490.0], [250.0, 480.0], [300.0, 200.0], [0.0, 0.0], [500.0, 250.0]]
    _, s, r, te, info = _STEP_ENV(jax.random.key(0), make_state(uav, users), 0, p)
    mean, mn = np_mean_best_rate_mbps(uav, users, p)
    np.testing.assert_allclose(float(r), mean, rtol=1e-5)
    np.testing.assert_allclose(float(info["min_rate_mbps"]), mn, rtol=1e-5)
    rates = np.asarray(mu.rate_matrix_bps(s.uav_pos, s.user_pos, p))
    assert rates.shape == (10, 4) and np.all(rates >= 0)
    # user 0 sits under UAV 0 (3-D distance 5 m) and is served by it
    assert np.argmax(rates[0]) == 0
    # a wider band raises the rate scale
    _, _, r_wide, _, _ = _STEP_ENV(jax.random.key(0), make_state(uav, users), 0,
                                      p.replace(bandwidth_hz=360e3))
    assert float(r_wide) > float(r)


def test_truncation_at_100_and_auto_reset(full, partial):
    env, p = full
    penv, pp = partial

    @jax.jit
    def episode(key):
        obs, s = env.reset(key, p)

        def body(s, k):
            ka, ks = jax.random.split(k)
            a = jax.random.randint(ka, (), 0, env.num_actions)
            obs, s2, r, te, tr, info = env.step(ks, s, a, p)
            return s2, (obs, s2, r, te, tr, info["final_observation"])

        return jax.lax.scan(body, s, jax.random.split(key, 150))[1]

    obs, states, r, te, tr, final_obs = episode(jax.random.key(5))
    tr = np.asarray(tr)
    t = np.asarray(states.time)
    assert not np.any(np.asarray(te))
    assert np.flatnonzero(tr).tolist() == [99]
    np.testing.assert_array_equal(t[:99], np.arange(1, 100))
    assert t[99] == 0 and t[100] == 1
    np.testing.assert_allclose(states.uav_pos[99], np.tile([[p.hangar_x_m, p.hangar_y_m]], (4, 1)))
    assert float(final_obs[99][-1]) == pytest.approx(1.0) and float(obs[99][-1]) == 0.0
    assert bool(jnp.all(r > 0))
    # global-observation contract along the whole trajectory (auto-reset included), both variants
    g_full = jax.vmap(lambda s: env.global_observation(s, p))(states)
    g_part = jax.vmap(lambda s: penv.global_observation(s, pp))(states)
    # (to float32 rounding: XLA may fuse the reset's layout draw with its normalisation)
    np.testing.assert_allclose(g_full, obs, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(g_part, g_full)


def test_resample_users_flag(full):
    env, p = full
    keys = jax.random.split(jax.random.key(0), 2)
    _, a = env.reset(keys[0], p)
    _, b = env.reset(keys[1], p)
    np.testing.assert_array_equal(a.user_pos, b.user_pos)
    _, c = env.reset(keys[0], p.replace(user_seed=1))
    assert not np.allclose(a.user_pos, c.user_pos)
    q = p.replace(resample_users=True)
    _, a = env.reset(keys[0], q)
    _, b = env.reset(keys[1], q)
    assert not np.allclose(a.user_pos, b.user_pos)


def test_user_steps_distribution():
    """Uniform per-axis steps on 256 levels: zero mean, the configured std, bounded by ~sqrt(3) std."""
    keys = jax.random.split(jax.random.key(7), 20_000)
    steps = np.asarray(jax.jit(jax.vmap(lambda k: mu.user_steps(k, 10, 2.0)))(keys))  # [20000, 10, 2]
    assert steps.shape == (20_000, 10, 2) and steps.dtype == np.float32
    flat = steps.reshape(-1, 20)
    # every (user, axis) slot: mean 0 and std 2 (400k samples in all; 20k per slot)
    assert np.all(np.abs(flat.mean(0)) < 0.06) and np.all(np.abs(flat.std(0) - 2.0) < 0.05)
    np.testing.assert_allclose(steps.std(), 2.0, rtol=5e-3)
    assert np.abs(steps).max() <= 2.0 * np.sqrt(3.0) + 1e-5
    assert len(np.unique(steps)) == 256
    # slots are uncorrelated (the 20 values come from 5 words, 4 bytes each)
    corr = np.corrcoef(flat.T)
    assert np.abs(corr - np.eye(20)).max() < 0.05
    # odd user counts and zero std
    assert mu.user_steps(jax.random.key(0), 3, 1.0).shape == (3, 2)
    np.testing.assert_array_equal(mu.user_steps(jax.random.key(0), 10, 0.0), 0.0)


def test_walk_keeps_std_over_an_episode(full):
    """The documented ~10 m drift in 100 s: per-axis displacement std sqrt(100) * 1 m/s * 1 s."""
    env, p = full
    p = p.replace(area_size_m=1e6, hangar_x_m=5e5)  # no clipping at the borders
    start = np.full((10, 2), 5e5, np.float32)

    @jax.jit
    @jax.vmap
    def drift(key):
        def body(s, k):
            return env.step_env(k, s, 0, p)[1], None

        s, _ = jax.lax.scan(body, make_state([[5e5, 0.0]] * 4, start), jax.random.split(key, 100))
        return s.user_pos - start

    d = np.asarray(drift(jax.random.split(jax.random.key(1), 2000)))
    np.testing.assert_allclose(d.std(), 10.0, rtol=0.03)
    assert abs(d.mean()) < 0.1


def test_best_rates_equal_rate_matrix_maxima(full):
    _, p = full
    for seed in range(5):
        k1, k2 = jax.random.split(jax.random.key(seed))
        uav = jax.random.uniform(k1, (4, 2)) * 500.0
        users = jax.random.uniform(k2, (10, 2)) * 500.0
        want = np.asarray(mu.rate_matrix_bps(uav, users, p)).max(axis=1) * 1e-6
        np.testing.assert_allclose(np.asarray(mu.user_rates_mbps(uav, users, p)), want, rtol=2e-6)
    # a user under a UAV at height 0 (distance clamped at 1 m), and a zero bandwidth (rate 0, not NaN)
    q = p.replace(uav_height_m=0.0)
    np.testing.assert_allclose(mu.user_rates_mbps(jnp.zeros((4, 2)), jnp.zeros((10, 2)), q),
                               np.asarray(mu.rate_matrix_bps(jnp.zeros((4, 2)), jnp.zeros((10, 2)), q))[:, 0] * 1e-6,
                               rtol=2e-6)
    np.testing.assert_array_equal(mu.user_rates_mbps(uav, users, p.replace(bandwidth_hz=0.0)), 0.0)


def test_step_matches_gymnax_auto_reset(full, partial):
    """The specialised ``step`` returns what gymnax's step would, given the same step key.

    (Observations to float32 rounding: the jitted step and the eager reference may round ``x / area``
    differently.)
    """
    for env, p in (full, partial):
        _, s0 = env.reset(jax.random.key(0), p)
        for t in (5, 99):  # an ordinary step and the truncating one
            s = s0.replace(time=jnp.int32(t))
            key = jax.random.key(3)
            obs, s2, r, te, tr, info = env.step(key, s, 317, p)
            obs_st, s_st, r_st, te_st, _ = env.step_env(key, s, 317, p)
            np.testing.assert_allclose(info["final_observation"], obs_st, rtol=0, atol=1e-6)
            np.testing.assert_allclose(r, r_st, rtol=1e-6)
            assert bool(tr) == (t == 99) and not bool(te)
            if t == 99:
                obs_re, s_re = env.reset(key, p)
                want_s, want_obs = s_re, obs_re
            else:
                want_s, want_obs = s_st, obs_st
            for a, b in zip(jax.tree.leaves(s2), jax.tree.leaves(want_s)):
                np.testing.assert_allclose(a, b, rtol=1e-6)
            np.testing.assert_allclose(obs, want_obs, rtol=0, atol=1e-6)


def test_auto_reset_resamples_layout_when_asked(full):
    env, p = full
    q = p.replace(resample_users=True)
    _, s = env.reset(jax.random.key(0), q)
    s = s.replace(time=jnp.int32(99))
    layouts = [np.asarray(env.step(jax.random.key(k), s, 0, q)[1].user_pos) for k in (1, 2)]
    assert not np.allclose(layouts[0], layouts[1])
    assert not np.allclose(layouts[0], np.asarray(env.reset(jax.random.key(0), p)[1].user_pos))


# ----------------------------------------------------------------------------- observations
def test_partial_obs_masks_users_outside_radius(partial):
    env, p = partial
    assert p.observe_radius_m == 150.0
    uav = [[250.0, 0.0]] * 4
    users = [[250.0, 100.0], [250.0, 200.0], [100.0, 0.0], [90.0, 0.0], [350.0, 100.0],
             [400.0, 400.0], [250.0, 149.0], [0.0, 500.0], [260.0, 10.0], [500.0, 500.0]]
    state = make_state(uav, users, time=25)
    obs = np.asarray(env.get_obs(state, p))
    d = np.hypot(*(np.asarray(users) - [250.0, 0.0]).T)
    vis = d <= 150.0
    assert vis.tolist() == [True, False, True, False, True, False, True, False, True, False]
    assert obs.shape == (39,)
    np.testing.assert_allclose(obs[:8], np.asarray(uav).reshape(-1) / 500.0)
    user_feat = obs[8:28].reshape(10, 2)
    np.testing.assert_allclose(user_feat[vis], np.asarray(users)[vis] / 500.0, rtol=1e-6)
    np.testing.assert_array_equal(user_feat[~vis], 0.0)
    np.testing.assert_array_equal(obs[28:38], vis.astype(np.float32))
    assert obs[38] == pytest.approx(0.25)
    # moving a UAV next to a hidden user reveals it
    state2 = make_state([[250.0, 0.0]] * 3 + [[500.0, 500.0]], users)
    assert bool(env.visibility(state2, p)[9]) and bool(env.visibility(state2, p)[5])


def test_partial_hides_users_at_reset(partial):
    penv, pp = partial
    o, s = penv.reset(jax.random.key(0), pp)
    vis = np.asarray(o[28:38])
    assert 0 < vis.sum() < 10  # from the hangar some users are out of sight
    g = np.asarray(penv.global_observation(s, pp))
    assert g.shape == (29,) and np.all(g[8:28] > 0)  # the global observation shows them all


# ----------------------------------------------------------------------------- property test
_ENV = mu.MultiUAV()


@jax.jit
def _reset_step(key, params, action):
    obs, s = _ENV.reset(key, params)
    return _ENV.step(key, s, action, params)


@settings(max_examples=20, deadline=None)
@given(
    area=st.floats(50.0, 2000.0),
    height=st.floats(0.0, 100.0),
    speed=st.floats(0.1, 50.0),
    slot=st.floats(0.1, 5.0),
    power=st.floats(1e-3, 10.0),
    bandwidth=st.floats(1e3, 1e7),
    carrier=st.floats(1e8, 1e11),
    hx=st.floats(0.0, 1.0),
    hy=st.floats(0.0, 1.0),
    user_std=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**31 - 1),
    radius=st.floats(1.0, 1000.0),
    action=st.integers(0, 624),
)
def test_property_random_params(area, height, speed, slot, power, bandwidth, carrier, hx, hy,
                                user_std, seed, radius, action):
    env, p = dt.make(
        "MultiUAV-v0", area_size_m=area, uav_height_m=height, uav_speed_mps=speed,
        slot_duration_s=slot, tx_power_w=power, bandwidth_hz=bandwidth, carrier_hz=carrier,
        hangar_x_m=hx * area, hangar_y_m=hy * area, user_speed_std_mps=user_std, user_seed=seed,
        observe_radius_m=radius,
    )
    obs, s, r, te, tr, info = _reset_step(jax.random.key(seed % 1000), p, jnp.int32(action))
    assert np.all(np.isfinite(obs)) and np.all((obs >= 0) & (obs <= 1))
    for pos in (s.uav_pos, s.user_pos):
        assert bool(jnp.all((pos >= 0) & (pos <= jnp.float32(area))))
    moved = np.abs(np.asarray(s.uav_pos) - [hx * area, hy * area]).sum(-1)
    assert np.all(moved <= speed * slot * (1 + 1e-5) + 1e-3)
    assert np.isfinite(float(r)) and float(r) >= 0.0 and float(info["min_rate_mbps"]) >= 0.0
    mean, _ = np_mean_best_rate_mbps(s.uav_pos, s.user_pos, p)
    np.testing.assert_allclose(float(r), mean, rtol=1e-4, atol=1e-6)
    assert not bool(te) and not bool(tr)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"uav_spead_mps": 8.0}, "uav_spead_mps"),
        ({"uav_speed_mps": -8.0}, "uav_speed_mps"),
        ({"hangar_x_m": 600.0}, "hangar_x_m"),
        ({"hangar_y_m": -1.0}, "hangar_y_m"),
        ({"area_size_m": 0.0}, "area_size_m"),
        ({"tx_power_w": 0.0}, "tx_power_w"),
        ({"bandwidth_hz": -1.0}, "bandwidth_hz"),
        ({"observe_radius_m": 0.0}, "observe_radius_m"),
        ({"user_seed": -1}, "user_seed"),
        ({"max_steps_in_episode": 0}, "max_steps_in_episode"),
        ({"num_uavs": 0}, "num_uavs"),
        ({"num_uavs": 14}, "num_uavs"),
        ({"slot_duration_s": float("nan")}, "slot_duration_s"),
    ],
)
def test_bad_params_raise(overrides, field):
    for env_id in ("MultiUAV-v0", "MultiUAVPartial-v0"):
        with pytest.raises(ValueError, match=field):
            dt.make(env_id, **overrides)


# ------------------------------------------------------------------ action factors and reference policies
def test_action_factors_match_the_joint_decoding(full):
    from dtrl_jax.agents.networks import factor_actions

    env, p = full
    assert env.action_dims(p) == (5, 5, 5, 5)
    assert mu.MultiUAV(num_uavs=2).action_dims() == (5, 5)
    a = jnp.arange(625, dtype=jnp.int32)
    np.testing.assert_array_equal(np.asarray(factor_actions(a, env.action_dims(p))),
                                  np.asarray(mu.decode_action(a, 4)))


def np_kmeans_fixed_point(points, centroids):
    """Each centroid is the mean of the points nearest to it (Lloyd's fixed point)."""
    assign = np.argmin(((points[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    return all(np.allclose(centroids[j], points[assign == j].mean(0), atol=1e-3)
               for j in range(len(centroids)) if np.any(assign == j))


def test_reference_policies_by_brute_force(full):
    env, p = full
    _, state = env.reset(jax.random.key(0), p)
    key = jax.random.key(3)
    assert int(mu.hangar_policy(key, state, p)) == 0
    a = np.asarray(jax.vmap(lambda k: mu.random_policy(k, state, p))(jax.random.split(key, 2000)))
    assert a.min() >= 0 and a.max() < 625 and len(np.unique(a)) > 500
    # myopic: a brute-force argmax over the 625 joint actions of the NumPy next rate, users held still
    state = state.replace(uav_pos=jnp.asarray([[250.0, 0.0], [100.0, 300.0], [400.0, 200.0], [250.0, 250.0]]))
    users = np.asarray(state.user_pos)
    rates = []
    for action in range(625):
        digits = [(action // 5**i) % 5 for i in range(4)]
        uav = np.clip(np.asarray(state.uav_pos) + mu.MOVES[digits] * 8.0, 0.0, 500.0)
        rates.append(np_mean_best_rate_mbps(uav, users, p)[0])
    rates = np.asarray(rates)
    picks = np.asarray(jax.jit(jax.vmap(lambda k: mu.myopic_policy(k, state, p)))(jax.random.split(key, 5)))
    for pick in picks:
        assert rates[pick] >= rates.max() - 1e-5
    # centroid: k-means is at a Lloyd fixed point, and each UAV moves along the larger axis towards its centroid
    cents = np.asarray(mu.kmeans_centroids(state.user_pos, 4))
    assert np_kmeans_fixed_point(users, cents)
    moves = np.asarray(mu.decode_action(mu.centroid_policy(key, state, p), 4))
    for i in range(4):
        d = cents[i] - np.asarray(state.uav_pos[i])
        if np.abs(d).max() < 4.0:
            assert moves[i] == 0
        elif abs(d[0]) >= abs(d[1]):
            assert moves[i] == (3 if d[0] > 0 else 4)
        else:
            assert moves[i] == (1 if d[1] > 0 else 2)


@pytest.mark.slow
def test_reference_policy_rates_are_ordered(full):
    env, p = full
    rates = {name: float(jnp.mean(mu.policy_episode_rates(jax.random.key(0), env, p, pol, 4)))
             for name, pol in mu.REFERENCE_POLICIES.items()}
    _, s0 = env.reset(jax.random.key(0), p)
    hangar_rate = np_mean_best_rate_mbps(np.asarray(s0.uav_pos), np.asarray(s0.user_pos), p)[0]
    assert abs(rates["hangar"] - hangar_rate) < 0.02  # users drift ~10 m in an episode
    assert rates["hangar"] < rates["random"] < min(rates["myopic"], rates["centroid"])
    assert min(rates["myopic"], rates["centroid"]) < float(mu.centroid_placement_rate(s0, p))

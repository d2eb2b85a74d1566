"""Reliability: validation under random input, numerical faults, reproducibility, twin faults."""

import json
import subprocess
import sys
from pathlib import Path

import gymnax
import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dtrl_jax as dt
from tests.helpers import Chain, ChainParams, subprocess_env, tree_equal

ROOT = Path(__file__).resolve().parents[1]
CHAIN, CHAIN_PARAMS = Chain(), ChainParams(length=5, max_steps_in_episode=30)

# ---------------------------------------------------------------- validation under random input
NUMERIC_FIELDS = {  # field -> a strategy of INVALID values
    "gamma": st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0 + 1e-6), st.just(float("nan"))),
    "learning_rate": st.one_of(st.floats(max_value=0.0), st.just(float("inf"))),
    "epsilon_start": st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0 + 1e-6)),
    "epsilon_end": st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0 + 1e-6)),
    "epsilon_decay_steps": st.floats(max_value=0.0),
    "total_timesteps": st.integers(max_value=0),
    "num_envs": st.integers(max_value=0),
}
TWIN_FIELDS = {
    "num_domains": st.integers(max_value=0),
    "lookahead": st.integers(max_value=-1),
    "state_noise_std": st.one_of(st.floats(max_value=-1e-9), st.just(float("nan"))),
    "obs_noise_std": st.floats(max_value=-1e-9),
    "sync_every": st.integers(max_value=0),
    "ready_after": st.integers(max_value=-1),
    "twin_data_fraction": st.one_of(st.floats(min_value=1.0 + 1e-6), st.floats(max_value=-1e-6)),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), agent=st.sampled_from([dt.QLearningConfig, dt.DQNConfig]))
def test_random_invalid_agent_fields_raise_naming_the_field(data, agent):
    field = data.draw(st.sampled_from(sorted(NUMERIC_FIELDS)))
    value = data.draw(NUMERIC_FIELDS[field])
    with pytest.raises((ValueError, TypeError), match=field):
        agent(**{field: value})


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_invalid_twin_fields_raise_naming_the_field(data):
    field = data.draw(st.sampled_from(sorted(TWIN_FIELDS)))
    value = data.draw(TWIN_FIELDS[field])
    with pytest.raises((ValueError, TypeError), match=field):
        dt.TwinConfig(**{field: value})


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(["gamma", "learning_rate", "num_envs", "hidden_sizes", "tau"]),
       value=st.one_of(st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2)))
def test_wrong_types_raise_type_or_value_errors(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        dt.DQNConfig(**{field: value})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lr=st.floats(0.01, 1.0), gamma=st.floats(0.0, 1.0), eps=st.floats(0.0, 1.0),
    trials=st.integers(1, 2), lookahead=st.integers(0, 3), rollouts=st.integers(1, 2),
    sync=st.integers(1, 4), shield=st.booleans(), ready=st.integers(0, 200),
)
def test_random_valid_configs_compile_and_stay_finite(lr, gamma, eps, trials, lookahead, rollouts, sync, shield, ready):
    twin = dt.TwinConfig(num_domains=2, action_trials=trials, lookahead=lookahead, lookahead_rollouts=rollouts,
                         sync_every=sync, shield=shield, ready_after=ready)
    cfg = dt.QLearningConfig(total_timesteps=200, log_every=100, learning_rate=lr, gamma=gamma,
                             epsilon_start=eps, epsilon_end=eps, twin=twin, check_numerics=True)
    out = jax.jit(dt.make_train(cfg, CHAIN, CHAIN_PARAMS))(jax.random.key(0))
    for name in ("loss", "twin_transitions", "epsilon"):
        assert np.all(np.isfinite(np.asarray(out.metrics[name]))), name
    assert np.all(np.isfinite(np.asarray(out.runner_state.agent_state.q)))


# ---------------------------------------------------------------- numerical faults
def test_check_numerics_names_the_quantity_and_step():
    env, params = gymnax.make("CartPole-v1")
    cfg = dt.DQNConfig(total_timesteps=1_000, num_envs=2, log_every=500, learning_starts=100, buffer_size=500,
                       batch_size=16, hidden_sizes=(8,), learning_rate=1e12, check_numerics=True)
    with pytest.raises(Exception, match=r"non-finite (loss|Q-values) at physical step \d+"):
        jax.block_until_ready(jax.jit(dt.make_train(cfg, env, params))(jax.random.key(0)))
    # off (the default): the run completes and the fault is still recorded in the runner state
    out = jax.jit(dt.make_train(cfg.replace(check_numerics=False), env, params))(jax.random.key(0))
    assert int(out.runner_state.fault_step) == -1  # not tracked when off


@pytest.mark.parametrize("env_id,overrides", [
    ("MultiUAV-v0", dict(bandwidth_hz=1.0)),
    ("MultiUAV-v0", dict(area_size_m=1e5, hangar_x_m=5e4)),
    ("MultiUAV-v0", dict(area_size_m=1.0, hangar_x_m=0.5, uav_height_m=0.01, uav_speed_mps=0.01)),
    ("MultiUAV-v0", dict(tx_power_w=1e-12)),
    ("AccessPointSelection-v0", dict(ap_radius_m=(1e-3,) * 5)),
    ("AccessPointSelection-v0", dict(speed_min_mps=1e-3, speed_max_mps=1e-3)),
    ("EdgeTaskScheduling-v0", dict(rate_mbps=1e-3)),
    ("EdgeTaskScheduling-v0", dict(frequency_ghz=1e-6)),
])
def test_extreme_but_valid_env_params_give_finite_rewards(env_id, overrides):
    env, params = dt.make(env_id, **overrides)
    keys = jax.random.split(jax.random.key(0), 64)

    def rollout(key):
        obs, state = env.reset(key, params)

        def step(carry, k):
            state = carry
            a = env.action_space(params).sample(k)
            obs, state, r, te, tr, info = env.step(k, state, a, params)
            return state, (r, obs)

        _, (rewards, obs) = jax.lax.scan(step, state, jax.random.split(key, 20))
        return rewards, obs

    rewards, obs = jax.jit(jax.vmap(rollout))(keys)
    assert np.all(np.isfinite(np.asarray(rewards)))
    assert np.all(np.isfinite(np.asarray(obs, dtype=np.float64)))


# ---------------------------------------------------------------- reproducibility
def test_results_do_not_depend_on_log_every():
    twin = dt.TwinConfig(num_domains=2, action_trials=2, lookahead=2, lookahead_rollouts=2)
    cfg = dt.QLearningConfig(total_timesteps=2_000, log_every=500, twin=twin)
    a = jax.jit(dt.make_train(cfg, CHAIN, CHAIN_PARAMS))(jax.random.key(3))
    b = jax.jit(dt.make_train(cfg.replace(log_every=1_000), CHAIN, CHAIN_PARAMS))(jax.random.key(3))
    assert tree_equal(a.runner_state.agent_state, b.runner_state.agent_state)
    for name in ("physical_episodes", "twin_transitions", "violations", "updates"):
        np.testing.assert_array_equal(np.asarray(a.metrics[name])[1::2], b.metrics[name])


REPRO_SCRIPT = """
import json, jax, numpy as np, dtrl_jax as dt
env, params = dt.make("MultiUAV-v0")
cfg = dt.DQNConfig(total_timesteps=600, num_envs=2, log_every=300, learning_starts=100, buffer_size=600,
                   batch_size=16, hidden_sizes=(16,), twin=dt.TwinConfig(num_domains=2, action_trials=2,
                   lookahead=2, lookahead_rollouts=2))
out = jax.jit(dt.make_train(cfg, env, params))(jax.random.key(11))
print("M " + json.dumps({k: np.asarray(v).tolist() for k, v in out.metrics.items()}))
"""


def test_same_key_is_bit_identical_across_processes():
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", REPRO_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                              timeout=600, env=subprocess_env(cache=False, JAX_PLATFORMS="cpu"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append([ln for ln in proc.stdout.splitlines() if ln.startswith("M ")][-1])
    assert runs[0] == runs[1]
    assert json.loads(runs[0][2:])["loss"][-1] > 0


# ---------------------------------------------------------------- twin faults
def test_outage_windows_fall_back_to_physical_only():
    cfg = dt.QLearningConfig(total_timesteps=2_000, log_every=500,
                             twin=dt.TwinConfig(num_domains=2, action_trials=2, outage_windows=((500, 1_500),)))
    m = jax.jit(dt.make_train(cfg, CHAIN, CHAIN_PARAMS))(jax.random.key(0)).metrics
    np.testing.assert_array_equal(m["twin_faults"], [0, 500, 1_000, 1_000])
    np.testing.assert_array_equal(m["twin_transitions"], [500, 500, 500, 1_000])


def test_noise_burst_is_caught_by_the_health_check_and_does_not_poison_training():
    env, params = gymnax.make("CartPole-v1")
    base = dt.DQNConfig(total_timesteps=1_200, num_envs=2, log_every=400, learning_starts=100, buffer_size=1_200,
                        batch_size=16, hidden_sizes=(16,), check_numerics=True)
    burst = ((400, 800, 1e6),)
    guarded = dt.TwinConfig(num_domains=3, action_trials=2, lookahead=2, lookahead_rollouts=2,
                            burst_windows=burst, max_divergence=1.0)
    out = jax.jit(dt.make_train(base.replace(twin=guarded), env, params))(jax.random.key(0))
    faults = np.asarray(out.metrics["twin_faults"])
    # twin_faults counts env-steps (2 envs): the 200 vectorised burst steps are 400
    assert faults[0] == 0 and 300 <= faults[1] <= 400 and faults[2] - faults[1] <= 10
    assert np.all(np.isfinite(np.asarray(out.metrics["loss"])))
    # the stored look-ahead data of the burst window is the padded 1-step data (one-hot weights)
    w = np.asarray(out.runner_state.storage.physical.data.weights)
    assert np.all(np.isclose(w.sum(axis=1), 1.0))


def test_subprocess_env_keeps_the_session_flags_and_can_drop_the_cache(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/tmp/some-cache")
    env = subprocess_env(extra_xla_flags="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    assert env["XLA_FLAGS"] == "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=8"
    assert env["JAX_COMPILATION_CACHE_DIR"] == "/tmp/some-cache" and env["JAX_PLATFORMS"] == "cpu"
    own = subprocess_env(cache=False)
    assert "JAX_COMPILATION_CACHE_DIR" not in own and own["JAX_ENABLE_COMPILATION_CACHE"] == "false"
    assert own["XLA_FLAGS"] == "--xla_backend_optimization_level=0"

"""The twin as it really is: sync schedule, noise, mismatch, construction delay, shield, global view."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtrl_jax as dt
from dtrl_jax.twin.mismatch import perturb_params, stack_params
from dtrl_jax.twin.noise import add_float_noise, state_noise_std
from tests.helpers import Chain, ChainParams, tree_equal

CHAIN, CHAIN_PARAMS = Chain(), ChainParams(length=5, max_steps_in_episode=30)
TWIN_METRICS = ("twin_ready", "twin_transitions", "sync_events", "shielded")


def ql(**kw):
    base = dict(total_timesteps=3_000, log_every=500, learning_rate=0.2, gamma=0.9, epsilon_decay_steps=2_000)
    base.update(kw)
    return dt.QLearningConfig(**base)


def run(cfg, env=CHAIN, params=CHAIN_PARAMS, seed=0, **kw):
    return jax.jit(dt.make_train(cfg, env, params, **kw))(jax.random.key(seed))


def physical_part(metrics):
    return {k: v for k, v in metrics.items() if k not in TWIN_METRICS}


def test_ready_after_total_steps_is_physical_rl_bit_for_bit():
    twin = dt.TwinConfig(num_domains=3, action_trials=2, lookahead=3, lookahead_rollouts=3, shield=True,
                         sync_every=2, ready_after=3_000)
    plain, delayed = run(ql(twin=None)), run(ql(twin=twin))
    assert tree_equal(physical_part(plain.metrics), physical_part(delayed.metrics))
    assert tree_equal(plain.runner_state.agent_state, delayed.runner_state.agent_state)
    assert np.all(np.asarray(delayed.metrics["twin_ready"]) == 0)
    assert np.all(np.asarray(delayed.metrics["twin_transitions"]) == 0)


def test_ready_after_switches_the_twin_on_mid_run():
    twin = dt.TwinConfig(num_domains=2, action_trials=2, ready_after=1_500)
    m = run(ql(twin=twin)).metrics
    np.testing.assert_array_equal(m["twin_ready"], [0, 0, 0, 1, 1, 1])
    tt = np.asarray(m["twin_transitions"])
    assert tt[2] == 0 and tt[-1] == 1_500  # one trial per physical step once ready


def test_dqn_ready_after_total_steps_matches_physical_dqn():
    env, params = CHAIN, ChainParams(length=5, features=True)
    base = dt.DQNConfig(total_timesteps=1_200, num_envs=2, log_every=400, learning_starts=100, buffer_size=400,
                        batch_size=16, train_every=2, target_update_every=50, hidden_sizes=(16,))
    plain = run(base, env, params)
    delayed = run(base.replace(twin=dt.TwinConfig(num_domains=2, action_trials=2, ready_after=1_200)), env, params)
    assert tree_equal(physical_part(plain.metrics), physical_part(delayed.metrics))
    assert tree_equal(plain.runner_state.agent_state.params, delayed.runner_state.agent_state.params)


def test_sync_every_on_a_deterministic_env_changes_nothing_but_the_sync_count():
    """Between syncs the different domains simulate the physical actions; on a deterministic env with
    a perfect twin they track the physical state exactly, so learning is identical."""
    a = run(ql(twin=dt.TwinConfig(num_domains=3, action_trials=2, lookahead=2, lookahead_rollouts=2)))
    b = run(ql(twin=dt.TwinConfig(num_domains=3, action_trials=2, lookahead=2, lookahead_rollouts=2, sync_every=5)))
    np.testing.assert_array_equal(a.runner_state.agent_state.q, b.runner_state.agent_state.q)
    np.testing.assert_array_equal(a.metrics["sync_events"], 500 * np.arange(1, 7))
    np.testing.assert_array_equal(b.metrics["sync_events"], 100 * np.arange(1, 7))


def test_unsynced_domains_drift_and_the_identical_domain_mirrors():
    env, params = gymnax.make("CartPole-v1")
    cfg = dt.DQNConfig(total_timesteps=600, num_envs=2, log_every=300, learning_starts=100, buffer_size=300,
                       batch_size=16, hidden_sizes=(16,),
                       twin=dt.TwinConfig(num_domains=3, action_trials=2, sync_every=10**6))
    out = run(cfg, env, params)
    phys = out.runner_state.env_state
    doms = out.runner_state.domains.states
    np.testing.assert_array_equal(doms.x[:, 0], phys.x)  # identical domain: exact mirror
    assert not np.allclose(doms.x[:, 1], phys.x)  # a different domain, never synced since reset
    assert int(out.metrics["sync_events"][-1]) == 0


def test_state_noise_reaches_float_leaves_only_and_changes_learning():
    tree = {"f": jnp.zeros(1000), "i": jnp.arange(3)}
    noisy = add_float_noise(jax.random.key(0), tree, 0.5)
    assert 0.4 < float(jnp.std(noisy["f"])) < 0.6
    np.testing.assert_array_equal(noisy["i"], tree["i"])
    env, params = gymnax.make("CartPole-v1")
    base = dt.DQNConfig(total_timesteps=600, num_envs=2, log_every=300, learning_starts=100, buffer_size=300,
                        batch_size=16, hidden_sizes=(16,))
    clean = run(base.replace(twin=dt.TwinConfig(num_domains=2, action_trials=2)), env, params)
    zero = run(base.replace(twin=dt.TwinConfig(num_domains=2, action_trials=2, state_noise_std=0.0,
                                               obs_noise_std=0.0)), env, params)
    noisy = run(base.replace(twin=dt.TwinConfig(num_domains=2, action_trials=2, state_noise_std=0.3,
                                                obs_noise_std=0.3)), env, params)
    assert tree_equal(clean.metrics, zero.metrics)  # zero noise == the perfect twin
    assert not tree_equal(clean.runner_state.agent_state.params, noisy.runner_state.agent_state.params)


def test_build_schedule_decays_to_the_final_noise():
    twin = dt.TwinConfig(state_noise_std=0.1, build_noise_std=1.0, build_steps=100)
    np.testing.assert_allclose(state_noise_std(twin, 0), 1.1, rtol=1e-6)
    np.testing.assert_allclose(state_noise_std(twin, 50), 0.6, rtol=1e-6)
    np.testing.assert_allclose(state_noise_std(twin, 1_000), 0.1, rtol=1e-6)
    np.testing.assert_allclose(state_noise_std(dt.TwinConfig(state_noise_std=0.2), 0), 0.2, rtol=1e-6)


def test_identical_twin_params_stack_equals_the_perfect_twin():
    env, params = dt.make("AccessPointSelection-v0")
    cfg = ql(total_timesteps=2_000, twin=dt.TwinConfig(num_domains=3, action_trials=3, lookahead=2,
                                                        lookahead_rollouts=3))
    perfect = run(cfg, env, params)
    stacked = run(cfg, env, params, twin_params=stack_params([params] * 3))
    zero = run(cfg, env, params, twin_params=perturb_params(jax.random.key(0), params, 3, 0.0))
    assert tree_equal(perfect.metrics, stacked.metrics)
    assert tree_equal(perfect.metrics, zero.metrics)
    mismatched = run(cfg, env, params, twin_params=perturb_params(jax.random.key(0), params, 3, 0.5))
    assert not tree_equal(perfect.runner_state.agent_state, mismatched.runner_state.agent_state)


def test_unaveraged_rollouts_use_one_branch():
    env, params = gymnax.make("CartPole-v1")
    cfg = dt.DQNConfig(total_timesteps=200, num_envs=2, log_every=100, learning_starts=50, buffer_size=200,
                       batch_size=8, hidden_sizes=(8,),
                       twin=dt.TwinConfig(num_domains=3, lookahead=3, lookahead_rollouts=3, average_rollouts=False))
    w = np.asarray(run(cfg, env, params).runner_state.storage.physical.data.weights)
    assert np.all(np.sort(w, axis=1) == [0.0, 0.0, 1.0])
    avg = run(cfg.replace(twin=cfg.twin.replace(average_rollouts=True)), env, params)
    np.testing.assert_allclose(np.asarray(avg.runner_state.storage.physical.data.weights), 1 / 3)


def test_shield_blocks_every_flagged_exploratory_action():
    """Chain flags 'stay' in the last-but-one state. With gamma 0.5 the greedy action there is 'move',
    so once learnt, only the shield stands between a random 'stay' and a violation."""
    base = ql(total_timesteps=4_000, log_every=1_000, gamma=0.5, learning_rate=0.5,
              epsilon_start=1.0, epsilon_end=1.0)
    twin = dt.TwinConfig(num_domains=2, action_trials=2)
    unshielded = run(base.replace(twin=twin)).metrics
    shielded = run(base.replace(twin=twin.replace(shield=True))).metrics
    assert int(unshielded["violations"][-1]) > 100
    # at most the very first visit, before Q separates the two actions
    assert int(shielded["violations"][-1]) <= 1
    assert int(shielded["shielded"][-1]) > 100
    assert int(unshielded["shielded"][-1]) == 0


def test_global_observation_is_appended_and_gated_by_ready():
    env, params = dt.make("MultiUAVPartial-v0")
    cfg = dt.DQNConfig(total_timesteps=400, num_envs=2, log_every=200, learning_starts=100, buffer_size=400,
                       batch_size=16, hidden_sizes=(16,),
                       twin=dt.TwinConfig(num_domains=1, share_global_obs=True, ready_after=200))
    out = run(cfg, env, params)
    obs = np.asarray(out.runner_state.obs)
    local = env.observation_space(params).shape[0]
    glob = env.global_observation_size(params)
    assert obs.shape == (2, local + glob)
    state0 = jax.tree.map(lambda x: x[0], out.runner_state.env_state)
    np.testing.assert_allclose(obs[0, local:], env.global_observation(state0, params), rtol=1e-6)
    stored = np.asarray(out.runner_state.storage.physical.data.obs)
    assert np.all(stored[:100, local:] == 0.0)  # before ready: zeros in the global slot
    assert np.any(stored[250:, local:] != 0.0)


BAD_TWIN = [
    (dict(shield=True), "shield"),
    (dict(share_global_obs=True), "share_global_obs"),
]


@pytest.mark.parametrize("kwargs,field", BAD_TWIN)
def test_features_the_env_cannot_support_raise(kwargs, field):
    env, params = gymnax.make("CartPole-v1")
    with pytest.raises(ValueError, match=field):
        dt.make_train(dt.DQNConfig(twin=dt.TwinConfig(num_domains=2, **kwargs)), env, params)


@pytest.mark.parametrize("kwargs,field", [
    (dict(state_noise_std=-0.1), "state_noise_std"),
    (dict(obs_noise_std=float("nan")), "obs_noise_std"),
    (dict(sync_every=0), "sync_every"),
    (dict(ready_after=-1), "ready_after"),
    (dict(build_steps=-5), "build_steps"),
    (dict(build_noise_std=-1.0), "build_noise_std"),
    (dict(shield=1), "shield"),
])
def test_bad_twin_values_raise(kwargs, field):
    with pytest.raises((ValueError, TypeError), match=field):
        dt.TwinConfig(num_domains=2, **kwargs)


def test_bad_twin_params_and_obs_noise_on_discrete_obs():
    env, params = dt.make("AccessPointSelection-v0")
    cfg = ql(twin=dt.TwinConfig(num_domains=3, action_trials=2))
    with pytest.raises(ValueError, match="twin_params"):
        dt.make_train(cfg, env, params, twin_params=stack_params([params] * 2))
    with pytest.raises(ValueError, match="twin_params"):
        dt.make_train(ql(), env, params, twin_params=stack_params([params] * 3))
    with pytest.raises(ValueError, match="obs_noise_std"):
        dt.make_train(ql(twin=dt.TwinConfig(num_domains=2, obs_noise_std=0.1)), env, params)


def test_perturbed_params_keep_their_sign_and_a_tenth_of_their_size():
    env, params = dt.make("MultiUAV-v0")
    stack = perturb_params(jax.random.key(1), params, 200, 0.8)
    floored = 0
    for name in ("bandwidth_hz", "uav_speed_mps", "tx_power_w", "area_size_m"):
        true = float(getattr(params, name))
        values = np.asarray(getattr(stack, name), dtype=np.float64)
        assert np.all(values >= 0.1 * true * (1 - 1e-6)), name  # an unfloored N(1, 0.8) scale goes negative
        floored += int(np.sum(np.isclose(values, 0.1 * true)))
    assert floored > 0
    assert float(np.min(np.asarray(stack.noise_psd_dbm_hz))) < 0  # negative fields stay negative
    with pytest.raises(ValueError, match="min_scale"):
        perturb_params(jax.random.key(1), params, 2, 0.1, min_scale=-0.5)

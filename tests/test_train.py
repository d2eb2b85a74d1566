"""The training loop: switches, determinism, vmap over seeds and traced fields, known answers."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

import dtrl_jax as dt
from tests.helpers import Chain, ChainParams, chain_q_star, tree_equal

CHAIN = Chain()
CHAIN_PARAMS = ChainParams(length=5, max_steps_in_episode=30)


def ql(**kw):
    base = dict(total_timesteps=4_000, log_every=500, learning_rate=0.2, gamma=0.9,
                epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=2_000)
    base.update(kw)
    return dt.QLearningConfig(**base)


def run(cfg, env=CHAIN, params=CHAIN_PARAMS, seed=0):
    return jax.jit(dt.make_train(cfg, env, params))(jax.random.key(seed))


def test_metrics_shapes_and_counters():
    cfg = ql(num_envs=2, twin=dt.TwinConfig(num_domains=3, action_trials=2, lookahead=3, lookahead_rollouts=3))
    out = run(cfg)
    m = out.metrics
    assert set(dt.train.METRIC_NAMES) <= set(m)
    for v in m.values():
        assert v.shape == (8,)
    np.testing.assert_array_equal(m["physical_steps"], 500 * np.arange(1, 9))
    # per vectorised step: 2 envs * (1 trial + 3 rollouts * 2 twin steps)
    np.testing.assert_allclose(m["twin_transitions"], m["physical_steps"] / 2 * 2 * (1 + 3 * 2))
    assert np.all(np.diff(np.asarray(m["physical_episodes"])) >= 0)
    assert np.all(np.isfinite(np.asarray(m["loss"])))
    assert int(m["violations"][-1]) > 0  # chain flags action 0 in the last-but-one state


def test_twin_off_is_plain_rl_bit_for_bit():
    plain = run(ql(twin=None))
    neutral = run(ql(twin=dt.TwinConfig(num_domains=4)))
    assert np.all(np.asarray(neutral.metrics.pop("twin_ready")) == 1)
    assert np.all(np.asarray(plain.metrics.pop("twin_ready")) == 0)
    assert tree_equal(plain.metrics, neutral.metrics)
    assert tree_equal(plain.runner_state.agent_state, neutral.runner_state.agent_state)


def test_same_key_same_run_different_keys_differ():
    cfg = ql(twin=dt.TwinConfig(num_domains=2, action_trials=2))
    a, b, c = run(cfg, seed=0), run(cfg, seed=0), run(cfg, seed=1)
    assert tree_equal(a.metrics, b.metrics)
    assert not tree_equal(a.metrics, c.metrics)


def test_full_sweep_q_learning_reaches_q_star():
    gamma = 0.9
    cfg = ql(total_timesteps=20_000, log_every=20_000, gamma=gamma, learning_rate=0.3,
             twin=dt.TwinConfig(num_domains=2, action_trials=2))
    q = np.asarray(run(cfg).runner_state.agent_state.q)
    q_star = chain_q_star(5, gamma)
    np.testing.assert_allclose(q[:4], q_star[:4], atol=0.05)


def test_lookahead_q_learning_reaches_q_star():
    gamma = 0.9
    cfg = ql(total_timesteps=20_000, log_every=20_000, gamma=gamma, learning_rate=0.3,
             twin=dt.TwinConfig(num_domains=2, action_trials=2, lookahead=3, lookahead_rollouts=2))
    q = np.asarray(run(cfg).runner_state.agent_state.q)
    np.testing.assert_allclose(q[:4], chain_q_star(5, gamma)[:4], atol=0.05)


def test_action_trials_learn_faster_than_physical_only():
    """With a short budget, twin trials cover the unexplored action; physical QL has not yet."""
    params = ChainParams(length=8, max_steps_in_episode=30)
    q_star = chain_q_star(8, 0.9)
    errs = {}
    for n in (1, 2):
        cfg = ql(total_timesteps=1_000, log_every=1_000, gamma=0.9, learning_rate=0.3,
                 twin=dt.TwinConfig(num_domains=2, action_trials=n))
        qs = jax.vmap(lambda k: jax.jit(dt.make_train(cfg, CHAIN, params))(k).runner_state.agent_state.q)(
            jax.random.split(jax.random.key(0), 8))
        errs[n] = float(np.mean(np.abs(np.asarray(qs)[:, :7] - q_star[:7])))
    assert errs[2] < 0.5 * errs[1], errs


def test_vmap_over_seeds_matches_single_runs():
    cfg = ql(twin=dt.TwinConfig(num_domains=2, action_trials=2))
    train = dt.make_train(cfg, CHAIN, CHAIN_PARAMS)
    keys = jax.random.split(jax.random.key(7), 3)
    batched = jax.jit(jax.vmap(train))(keys)
    assert batched.metrics["episode_return"].shape == (3, 8)
    single = jax.jit(train)(keys[1])
    np.testing.assert_allclose(batched.metrics["episode_return"][1], single.metrics["episode_return"], rtol=1e-5)


def _primitive_names(jaxpr) -> set:
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jax_core.jaxprs_in_params(eqn.params):
            names |= _primitive_names(sub)
    return names


def test_vmapped_seeds_keep_the_dqn_update_a_branch():
    """With the interval indices shared (in_axes None) the update's cond survives vmap over seeds
    (a select would run every branch at every step); both ways give the same numbers."""
    cfg = dt.DQNConfig(total_timesteps=400, num_envs=2, log_every=100, learning_starts=50, buffer_size=200,
                       batch_size=16, train_every=4, hidden_sizes=(16,),
                       twin=dt.TwinConfig(num_domains=2, action_trials=2))
    env, params = CHAIN, ChainParams(length=5, features=True)
    train = dt.make_train(cfg, env, params)
    runner, intervals = jax.jit(jax.vmap(train.init))(jax.random.split(jax.random.key(0), 3))
    shared = jax.vmap(train.run, in_axes=(0, None))
    batched = jax.vmap(train.run)
    assert "cond" in _primitive_names(jax.make_jaxpr(shared)(runner, intervals[0]).jaxpr)
    assert "cond" not in _primitive_names(jax.make_jaxpr(batched)(runner, intervals).jaxpr)
    a = jax.jit(shared)(runner, intervals[0])[1]
    b = jax.jit(batched)(runner, intervals)[1]
    for name in a:  # the same numbers (floats to rounding: the two programs fuse differently)
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-5, err_msg=name)
    assert int(a["updates"][0, -1]) == (400 - 50) // 4 + 1


def test_vmap_over_traced_learning_rate_compiles_once():
    cfg = dt.DQNConfig(total_timesteps=400, num_envs=2, log_every=200, learning_starts=50, buffer_size=200,
                       batch_size=16, train_every=2, target_update_every=20, hidden_sizes=(16,))
    env, params = CHAIN, ChainParams(length=5, features=True)
    key = jax.random.key(0)
    sweep = jax.jit(jax.vmap(lambda lr: dt.make_train(cfg.replace(learning_rate=lr), env, params)(key)))
    a = sweep(jnp.array([1e-4, 1e-2, 1e-1]))
    b = sweep(jnp.array([3e-3, 3e-2, 2e-1]))
    assert sweep._cache_size() == 1
    assert a.metrics["loss"].shape == (3, 2)
    # different learning rates give different parameters
    w = jax.tree.leaves(a.runner_state.agent_state.params)[0]
    assert not np.allclose(w[0], w[2])
    assert np.all(np.isfinite(np.asarray(b.metrics["loss"])))


def test_dqn_cartpole_smoke_with_twin():
    env, params = gymnax.make("CartPole-v1")
    cfg = dt.DQNConfig(total_timesteps=3_000, log_every=1_000, learning_starts=500, buffer_size=2_000,
                       hidden_sizes=(32, 32),
                       twin=dt.TwinConfig(num_domains=3, action_trials=2, lookahead=3, lookahead_rollouts=2))
    out = run(cfg, env, params)
    m = out.metrics
    assert int(m["updates"][-1]) == (3_000 - 500) // 10 + 1
    assert np.all(np.isfinite(np.asarray(m["loss"])))
    assert np.all(np.asarray(m["violations"]) == 0)
    assert int(out.runner_state.storage.twin.buffers.size.sum()) > 0


def test_dqn_double_q_and_huber_run():
    cfg = dt.DQNConfig(total_timesteps=600, num_envs=2, log_every=300, learning_starts=100, buffer_size=300,
                       batch_size=16, train_every=2, target_update_every=50, hidden_sizes=(16,),
                       double_q=True, loss="huber", tau=0.5, twin=dt.TwinConfig(num_domains=2, action_trials=2,
                                                                                twin_data_fraction=0.25))
    out = run(cfg, CHAIN, ChainParams(length=5, features=True))
    assert np.all(np.isfinite(np.asarray(out.metrics["loss"])))


def test_bad_env_combinations_raise_before_tracing():
    env, params = gymnax.make("CartPole-v1")
    with pytest.raises(ValueError, match="Discrete observation"):
        dt.make_train(ql(), env, params)
    with pytest.raises(ValueError, match="action_trials"):
        dt.make_train(ql(twin=dt.TwinConfig(num_domains=3, action_trials=3)), CHAIN, CHAIN_PARAMS)
    penv, pparams = gymnax.make("Pendulum-v1")
    with pytest.raises(ValueError, match="Discrete action"):
        dt.make_train(dt.DQNConfig(), penv, pparams)
    with pytest.raises(TypeError, match="QLearningConfig or DQNConfig"):
        dt.make_train({"gamma": 0.9}, CHAIN, CHAIN_PARAMS)


@pytest.mark.slow
def test_dqn_cartpole_reaches_400():
    env, params = gymnax.make("CartPole-v1")
    cfg = dt.DQNConfig(total_timesteps=500_000, log_every=10_000, epsilon_decay_steps=250_000)
    returns = np.asarray(run(cfg, env, params).metrics["episode_return"])
    assert np.nanmax(returns[-10:]) >= 400, returns


def test_key_blocks_tile_an_interval_and_match_step_by_step_keys():
    """The loop derives a block of steps' keys at once; they must be exactly the per-step keys."""
    from dtrl_jax.train import key_block, step_keys

    assert key_block(1000) == 50 and key_block(64) == 64 and key_block(97) == 1 and key_block(7) == 7
    for n in (1, 5, 96, 1000, 1001):
        b = key_block(n)
        assert n % b == 0 and 1 <= b <= 64
    loop_key = jax.random.key(3)
    ts = jnp.arange(40, 48, dtype=jnp.int32)
    block = jax.vmap(step_keys, in_axes=(None, 0, None))(loop_key, ts, 3)
    for i, t in enumerate(range(40, 48)):
        one = step_keys(loop_key, jnp.int32(t), 3)
        for role in one:
            np.testing.assert_array_equal(jax.random.key_data(block[role][i]), jax.random.key_data(one[role]))
    # and one of them independently: the act key is part 0 of split(fold_in(loop_key, t), 5)
    ref = jax.random.split(jax.random.fold_in(loop_key, 45), 5)[0]
    np.testing.assert_array_equal(jax.random.key_data(block["act"][5]), jax.random.key_data(ref))

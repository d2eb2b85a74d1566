"""DT-assisted asynchronous Q-learning (``dtrl_jax.async_qlearning``): built on ``make_train``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtrl_jax as dt
from dtrl_jax.async_qlearning import AsyncQLearningConfig, AsyncTrainResult, make_async_train
from tests.helpers import Chain, ChainParams, tree_equal

CHAIN = Chain()
CHAIN_PARAMS = ChainParams(length=5, max_steps_in_episode=30)


def ql(**kw):
    base = dict(total_timesteps=1_200, log_every=100, learning_rate=0.2, gamma=0.9,
                epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=600)
    base.update(kw)
    return dt.QLearningConfig(**base)


def test_one_agent_equals_plain_q_learning_bit_for_bit():
    cfg = ql()
    key = jax.random.key(3)
    plain = jax.jit(dt.make_train(cfg, CHAIN, CHAIN_PARAMS))(jax.random.split(key, 1)[0])
    train = make_async_train(cfg, AsyncQLearningConfig(num_agents=1, average_every=300), CHAIN, CHAIN_PARAMS)
    out = jax.jit(train)(key)
    assert isinstance(out, AsyncTrainResult)
    assert train.num_rounds == 4
    assert tree_equal(jax.tree.map(lambda x: x[0], out.metrics), plain.metrics)
    assert tree_equal(out.runner_state.agent_state.q[0], plain.runner_state.agent_state.q)
    np.testing.assert_array_equal(out.q_mean, plain.runner_state.agent_state.q)


def test_agents_share_the_mean_q_after_every_round():
    phi, delta = 4, 200
    cfg = ql(total_timesteps=600, log_every=100)
    # round_fn sees the averaged table; keep it to check it is what every agent holds at the end.
    train = make_async_train(
        cfg, AsyncQLearningConfig(num_agents=phi, average_every=delta), CHAIN, CHAIN_PARAMS,
        round_fn=lambda q: q,
    )
    out = jax.jit(train)(jax.random.key(0))
    q = np.asarray(out.runner_state.agent_state.q)
    assert q.shape == (phi, CHAIN_PARAMS.length, 2)
    for i in range(1, phi):
        np.testing.assert_array_equal(q[i], q[0])
    np.testing.assert_array_equal(out.q_mean, q[0])
    assert out.round_outputs.shape == (3, *q.shape[1:])
    np.testing.assert_array_equal(out.round_outputs[-1], out.q_mean)
    # Metrics: one row per agent, one column per interval; counters are per agent.
    steps = np.asarray(out.metrics["physical_steps"])
    assert steps.shape == (phi, 6)
    np.testing.assert_array_equal(steps, np.broadcast_to(100 * np.arange(1, 7), (phi, 6)))


def test_averaging_is_the_mean_of_independent_rounds():
    """The first round equals phi independent make_train runs; the table after it is their mean."""
    phi, delta = 3, 300
    cfg = ql(total_timesteps=delta, log_every=100)
    key = jax.random.key(7)
    base = dt.make_train(cfg, CHAIN, CHAIN_PARAMS)
    independent = jax.jit(jax.vmap(base))(jax.random.split(key, phi))
    out = jax.jit(make_async_train(cfg, AsyncQLearningConfig(num_agents=phi, average_every=delta),
                                   CHAIN, CHAIN_PARAMS))(key)
    qs = np.asarray(independent.runner_state.agent_state.q)
    assert not np.allclose(qs[0], qs[1])  # the agents did learn different tables
    np.testing.assert_allclose(out.q_mean, qs.mean(axis=0), rtol=1e-6, atol=1e-6)
    assert tree_equal(out.metrics, independent.metrics)


def test_vmap_over_seeds_and_learning_on_edge_scheduling():
    env, params = dt.make("EdgeTaskScheduling-v0", num_tasks=4)  # 24 orders
    cfg = dt.QLearningConfig(total_timesteps=256, log_every=64, learning_rate=0.3, gamma=0.0,
                             epsilon_start=0.5, epsilon_end=0.5, epsilon_decay_steps=1)
    train = make_async_train(cfg, AsyncQLearningConfig(num_agents=8, average_every=64), env, params,
                             round_fn=lambda q: jnp.argmax(q[0]))
    out = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 2))
    assert out.q_mean.shape == (2, 1, 24)
    assert out.round_outputs.shape == (2, 4)
    from dtrl_jax.envs.edge_scheduling import brute_force_optimum
    best = int(brute_force_optimum(params)["best_action"])
    assert np.all(np.asarray(out.round_outputs[:, -1]) == best)


@pytest.mark.parametrize(
    "kwargs, field",
    [(dict(num_agents=0), "num_agents"), (dict(average_every=0), "average_every"),
     (dict(num_agents=-3), "num_agents")],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        AsyncQLearningConfig(**kwargs)


def test_incompatible_periods_raise_before_tracing():
    with pytest.raises(ValueError, match="average_every"):
        make_async_train(ql(log_every=100), AsyncQLearningConfig(num_agents=2, average_every=150),
                         CHAIN, CHAIN_PARAMS)
    with pytest.raises(ValueError, match="average_every"):
        make_async_train(ql(total_timesteps=1_200), AsyncQLearningConfig(num_agents=2, average_every=500),
                         CHAIN, CHAIN_PARAMS)
    with pytest.raises(TypeError, match="QLearningConfig"):
        make_async_train(dt.DQNConfig(total_timesteps=1_000, log_every=100, learning_starts=100), AsyncQLearningConfig(),
                         CHAIN, CHAIN_PARAMS)

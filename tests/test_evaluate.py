"""Greedy evaluation: the one rule (dtrl_jax.evaluate), inside the loop and outside it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtrl_jax as dt
from dtrl_jax.agents.tabular import TabularState
from dtrl_jax.train import build_agent, inspect_env
from tests.helpers import Chain, ChainParams, tree_equal

CHAIN = Chain()
PARAMS = ChainParams(length=6, max_steps_in_episode=20)


def numpy_greedy_return(q: np.ndarray, length: int, max_steps: int) -> tuple[float, int]:
    """Independent reference: the Chain's greedy episode under Q-table ``q`` (no ties)."""
    s, ret = 0, 0.0
    for t in range(1, max_steps + 1):
        a = int(np.argmax(q[s]))
        nxt = min(s + a, length - 1)
        goal = nxt == length - 1
        ret += 1.0 if goal else 0.1 * s
        s = nxt
        if goal:
            return ret, t
    return ret, max_steps


def ql(**kw):
    base = dict(total_timesteps=2_000, log_every=250, learning_rate=0.2, gamma=0.9,
                epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=1_000, eval_episodes=4)
    base.update(kw)
    return dt.QLearningConfig(**base)


def agent_for(cfg, params=PARAMS):
    return build_agent(cfg, inspect_env(CHAIN, params))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_evaluate_matches_numpy_on_random_q_tables(seed):
    q = np.asarray(jax.random.normal(jax.random.key(seed), (6, 2)), np.float32)
    agent = agent_for(ql())
    res = dt.evaluate(jax.random.key(7), agent, TabularState(q=jnp.asarray(q)), CHAIN, PARAMS, 3)
    ret, length = numpy_greedy_return(q, 6, 20)
    np.testing.assert_allclose(np.asarray(res.returns), ret, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(res.lengths), length)
    assert bool(np.all(np.asarray(res.finished)))  # truncation at max_steps also ends an episode
    assert np.asarray(res.violations).shape == (3,)


def test_max_steps_bounds_episodes_and_marks_unfinished():
    q = np.zeros((6, 2), np.float32)
    q[:, 0] = 1.0  # always stay: never reaches the goal, truncated by the env at 20 steps
    agent = agent_for(ql())
    res = dt.evaluate(jax.random.key(0), agent, TabularState(q=jnp.asarray(q)), CHAIN, PARAMS, 2, max_steps=5)
    np.testing.assert_array_equal(np.asarray(res.lengths), 5)
    assert not bool(np.any(np.asarray(res.finished)))
    np.testing.assert_allclose(np.asarray(res.returns), 0.0)  # 0.1 * pos with pos 0


def test_ties_are_broken_at_random():
    agent = agent_for(ql())
    flat = TabularState(q=jnp.zeros((6, 2)))
    obs = jnp.zeros((4000,), jnp.int32)
    actions = np.asarray(dt.act(agent, flat, obs, jax.random.key(3)))
    assert 0.45 < actions.mean() < 0.55
    policy = dt.make_policy(agent, flat)
    picks = {int(policy(jax.random.key(i), jnp.int32(0))) for i in range(40)}
    assert picks == {0, 1}
    greedy = TabularState(q=jnp.zeros((6, 2)).at[:, 1].set(1.0))
    assert np.all(np.asarray(dt.act(agent, greedy, obs[:50], jax.random.key(0))) == 1)
    eps = np.asarray(dt.act(agent, greedy, obs, jax.random.key(1), epsilon=0.5))
    assert 0.7 < eps.mean() < 0.8  # 1 - epsilon / 2 of the actions are the greedy one


def test_eval_return_in_the_loop_is_the_final_greedy_return():
    out = jax.jit(dt.make_train(ql(), CHAIN, PARAMS))(jax.random.key(0))
    q = np.asarray(out.runner_state.agent_state.q)
    ret, length = numpy_greedy_return(q, 6, 20)
    m = out.metrics
    assert m["eval_return"].shape == (8,)
    assert np.all(np.isfinite(np.asarray(m["eval_return"])))
    np.testing.assert_allclose(float(m["eval_return"][-1]), ret, rtol=1e-5)
    np.testing.assert_allclose(float(m["eval_length"][-1]), length)


def test_training_is_bit_identical_with_evaluation_on_or_off():
    twin = dt.TwinConfig(num_domains=3, action_trials=2, lookahead=2, lookahead_rollouts=2)
    on = jax.jit(dt.make_train(ql(num_envs=2, twin=twin), CHAIN, PARAMS))(jax.random.key(5))
    off = jax.jit(dt.make_train(ql(num_envs=2, twin=twin, eval_episodes=0), CHAIN, PARAMS))(jax.random.key(5))
    for name in ("eval_return", "eval_length"):
        assert np.all(np.isnan(np.asarray(off.metrics[name])))
        assert np.all(np.isfinite(np.asarray(on.metrics[name])))
        on.metrics.pop(name), off.metrics.pop(name)
    assert tree_equal(on.metrics, off.metrics)
    assert tree_equal(on.runner_state, off.runner_state)


def test_dqn_evaluation_bit_identical_and_under_vmap_over_seeds():
    params = ChainParams(length=5, max_steps_in_episode=15, features=True)
    cfg = dt.DQNConfig(total_timesteps=600, num_envs=2, log_every=200, learning_starts=100, buffer_size=200,
                       batch_size=16, hidden_sizes=(16,), eval_episodes=3)
    keys = jax.random.split(jax.random.key(0), 3)
    on = jax.jit(jax.vmap(dt.make_train(cfg, CHAIN, params)))(keys)
    off = jax.jit(jax.vmap(dt.make_train(cfg.replace(eval_episodes=0), CHAIN, params)))(keys)
    assert on.metrics["eval_return"].shape == (3, 3)
    assert np.all(np.isfinite(np.asarray(on.metrics["eval_return"])))
    single = jax.jit(dt.make_train(cfg, CHAIN, params))(keys[1])
    np.testing.assert_allclose(np.asarray(on.metrics["eval_return"][1]), np.asarray(single.metrics["eval_return"]),
                               rtol=1e-5)
    for name in ("eval_return", "eval_length"):
        on.metrics.pop(name), off.metrics.pop(name)
    assert tree_equal(on.metrics, off.metrics)
    assert tree_equal(on.runner_state.agent_state, off.runner_state.agent_state)


def test_eval_under_vmap_over_a_traced_learning_rate_compiles_once():
    cfg = ql()

    def run(lr, key):
        return dt.make_train(cfg.replace(learning_rate=lr), CHAIN, PARAMS)(key).metrics["eval_return"]

    f = jax.jit(jax.vmap(run, in_axes=(0, None)))
    a = f(jnp.array([0.05, 0.5]), jax.random.key(0))
    b = f(jnp.array([0.1, 0.3]), jax.random.key(0))
    assert a.shape == b.shape == (2, 8)
    assert f._cache_size() == 1
    assert np.all(np.isfinite(np.asarray(b)))


def test_eval_keys_differ_per_seed_and_repeat_per_key():
    f = jax.jit(dt.make_train(ql(eval_epsilon=0.5), CHAIN, PARAMS))
    a, b, c = f(jax.random.key(0)), f(jax.random.key(0)), f(jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a.metrics["eval_return"]), np.asarray(b.metrics["eval_return"]))
    assert not np.array_equal(np.asarray(a.metrics["eval_return"]), np.asarray(c.metrics["eval_return"]))


def test_exploration_follows_the_run_length():
    short, long = ql(epsilon_decay_steps=None, total_timesteps=2_000), ql(epsilon_decay_steps=None, total_timesteps=8_000,
                                                                         log_every=1_000)
    for cfg in (short, long):
        eps = np.asarray(jax.jit(dt.make_train(cfg, CHAIN, PARAMS))(jax.random.key(0)).metrics["epsilon"])
        steps = np.arange(1, eps.size + 1) * cfg.log_every - cfg.num_envs  # epsilon is read before each step
        want = np.clip(1.0 - 0.9 * steps / (0.5 * cfg.total_timesteps), 0.1, 1.0)
        np.testing.assert_allclose(eps, want, atol=1e-6)
        assert eps[-1] == pytest.approx(0.1)  # the decay ends at half the run, whatever its length
    assert ql(epsilon_decay_steps=None, exploration_fraction=0.1).decay_steps == pytest.approx(200.0)
    assert ql(epsilon_decay_steps=777).decay_steps == 777  # an explicit decay wins
    assert dt.QLearningConfig().decay_steps == 50_000  # the former default, kept for the default run


@pytest.mark.parametrize("field,value", [("eval_episodes", -1), ("eval_episodes", 1.5), ("eval_epsilon", 1.5),
                                         ("eval_epsilon", -0.1), ("exploration_fraction", 0.0),
                                         ("exploration_fraction", 1.2), ("epsilon_decay_steps", 0),
                                         ("eval_max_steps", 0)])
def test_bad_evaluation_and_schedule_fields_are_named(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        ql(**{field: value})


def test_learning_starts_at_or_after_the_end_is_rejected():
    with pytest.raises(ValueError, match="learning_starts=5000 is not below total_timesteps=5000"):
        dt.DQNConfig(total_timesteps=5_000, learning_starts=5_000)
    dt.DQNConfig(total_timesteps=5_000, learning_starts=4_990)


def test_env_without_an_episode_limit_needs_eval_max_steps():
    class NoLimitParams:
        pass

    with pytest.raises(ValueError, match="eval_max_steps"):
        dt.evaluate(jax.random.key(0), agent_for(ql()), TabularState(q=jnp.zeros((6, 2))), CHAIN, NoLimitParams(), 1)
    with pytest.raises(ValueError, match="num_episodes"):
        dt.evaluate(jax.random.key(0), agent_for(ql()), TabularState(q=jnp.zeros((6, 2))), CHAIN, PARAMS, 0)


def test_gymnax_env_eval():
    import gymnax

    env, params = gymnax.make("CartPole-v1")
    cfg = dt.DQNConfig(total_timesteps=400, num_envs=4, log_every=200, learning_starts=100, buffer_size=200,
                       batch_size=16, hidden_sizes=(16,), eval_episodes=2, eval_max_steps=60)
    m = jax.jit(dt.make_train(cfg, env, params))(jax.random.key(0)).metrics
    assert np.all((np.asarray(m["eval_length"]) >= 1) & (np.asarray(m["eval_length"]) <= 60))
    np.testing.assert_allclose(np.asarray(m["eval_return"]), np.asarray(m["eval_length"]))  # +1 per step


def test_dt_evaluate_is_the_function_even_after_the_module_is_imported():
    import types

    import dtrl_jax.evaluate  # noqa: F401 - importing the submodule must not hide the export

    assert not isinstance(dt.evaluate, types.ModuleType)
    from dtrl_jax.evaluate import evaluate

    assert dt.evaluate is evaluate

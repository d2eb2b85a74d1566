import jax.numpy as jnp
import numpy as np

from dtrl_jax.agents.base import Experience
from dtrl_jax.agents.exploration import epsilon_greedy, greedy_action, linear_epsilon
from dtrl_jax.agents.tabular import averaged_q_update
from dtrl_jax.agents.td import double_q_bootstrap, td_loss
import jax


def test_averaged_q_update_hand_computed():
    q = jnp.array([[0.0, 1.0], [2.0, 3.0]])
    states = jnp.array([0, 0, 1])
    actions = jnp.array([1, 1, 0])
    targets = jnp.array([3.0, 5.0, 0.0])
    new = np.asarray(averaged_q_update(q, states, actions, targets, 0.5))
    # (0,1): errors 2 and 4, mean 3 -> 1 + 0.5*3 = 2.5 ; (1,0): error -2 -> 2 - 1 = 1
    np.testing.assert_allclose(new, [[0.0, 2.5], [1.0, 3.0]])


def test_duplicated_batch_moves_q_like_one_transition():
    q = jnp.zeros((3, 2))
    one = averaged_q_update(q, jnp.array([1]), jnp.array([0]), jnp.array([4.0]), 0.1)
    many = averaged_q_update(q, jnp.array([1] * 7), jnp.array([0] * 7), jnp.array([4.0] * 7), 0.1)
    np.testing.assert_allclose(np.asarray(one), np.asarray(many))


def test_double_q_and_losses():
    assert float(double_q_bootstrap(jnp.array([1.0, 5.0, 2.0]), jnp.array([0.0, -1.0, 9.0]))) == 2.0
    np.testing.assert_allclose(td_loss(jnp.array([0.5, -3.0]), "mse"), [0.125, 4.5])
    np.testing.assert_allclose(td_loss(jnp.array([0.5, -3.0]), "huber"), [0.125, 2.5])


def test_epsilon_schedule_and_greedy_ties():
    np.testing.assert_allclose(linear_epsilon(0, 1.0, 0.1, 100), 1.0)
    np.testing.assert_allclose(linear_epsilon(50, 1.0, 0.1, 100), 0.55, rtol=1e-6)
    np.testing.assert_allclose(linear_epsilon(500, 1.0, 0.1, 100), 0.1, rtol=1e-6)
    keys = jax.random.split(jax.random.key(0), 400)
    picks = np.asarray(jax.vmap(greedy_action, in_axes=(0, None))(keys, jnp.array([1.0, 3.0, 3.0, 0.0])))
    assert set(picks.tolist()) == {1, 2}
    eps0 = np.asarray(jax.vmap(epsilon_greedy, in_axes=(0, None, None))(keys, jnp.array([0.0, 1.0]), 0.0))
    assert (eps0 == 1).all()
    eps1 = np.asarray(jax.vmap(epsilon_greedy, in_axes=(0, None, None))(keys, jnp.array([0.0, 1.0]), 1.0))
    assert 0.35 < (eps1 == 0).mean() < 0.65


def test_masked_items_are_ignored_even_when_not_finite():
    """A masked twin transition with a NaN/inf target must not reach Q (0 * nan is nan)."""
    q = jnp.zeros((2, 2))
    targets = jnp.array([1.0, jnp.nan, jnp.inf])
    new = averaged_q_update(q, jnp.array([0, 0, 1]), jnp.array([0, 0, 1]), targets, 0.5,
                            mask=jnp.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(np.asarray(new), [[0.5, 0.0], [0.0, 0.0]])


def test_tabular_learn_ignores_a_non_finite_twin_transition_when_not_ready():
    import dtrl_jax as dt
    from dtrl_jax.agents.tabular import TabularQAgent
    from dtrl_jax.transition import one_step_transition

    agent = TabularQAgent(3, 2, dt.QLearningConfig())
    state = agent.init(jax.random.key(0))
    physical = jax.vmap(one_step_transition, in_axes=(0, 0, 0, 0, 0, None))(
        jnp.array([0]), jnp.array([1]), jnp.array([1.0]), jnp.array([True]), jnp.array([1]), 0.9)
    twin = jax.vmap(one_step_transition, in_axes=(0, 0, 0, 0, 0, None))(
        jnp.array([2]), jnp.array([0]), jnp.array([jnp.nan]), jnp.array([True]), jnp.array([1]), 0.9)
    twin = jax.tree.map(lambda x: x[None], twin)  # [domains=1, envs=1, ...]
    experience = Experience(physical=physical, twin=twin, twin_mask=jnp.asarray(False), steps_before=0, steps_after=1)
    new, _, stats = agent.learn(state, None, experience, jax.random.key(1))
    assert np.all(np.isfinite(np.asarray(new.q))) and np.isfinite(float(stats.loss_sum))
    np.testing.assert_allclose(np.asarray(new.q)[0, 1], 0.1)

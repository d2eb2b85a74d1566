import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtrl_jax.config import TwinConfig
from dtrl_jax.twin.space import DigitalSpace
from dtrl_jax.twin.trials import trial_actions
from tests.helpers import Chain, ChainParams, ChainState


@pytest.mark.parametrize("num_actions,num_trials", [(2, 2), (5, 3), (5, 5), (625, 8), (720, 500), (5040, 40), (625, 64)])
def test_trial_actions_are_distinct_and_exclude_the_physical_one(num_actions, num_trials):
    keys = jax.random.split(jax.random.key(0), 64)
    phys = jax.random.randint(jax.random.key(1), (64,), 0, num_actions)
    acts = np.asarray(jax.vmap(trial_actions, in_axes=(0, 0, None, None))(keys, phys, num_actions, num_trials))
    assert acts.shape == (64, num_trials - 1)
    for row, p in zip(acts, np.asarray(phys)):
        assert len(set(row.tolist())) == num_trials - 1
        assert p not in row
        assert row.min() >= 0 and row.max() < num_actions


def test_full_sweep_covers_every_other_action():
    acts = np.asarray(trial_actions(jax.random.key(3), jnp.int32(2), 5, 5))
    assert sorted(acts.tolist()) == [0, 1, 3, 4]


def test_trial_transitions_come_from_the_physical_state():
    env, params = Chain(), ChainParams(length=4)
    state = ChainState(pos=jnp.int32(2), time=0)
    obs = env.get_obs(state, params)
    space = DigitalSpace(env, params, None, TwinConfig(num_domains=2, action_trials=2),
                         can_observe=True, obs_is_float=False)
    domains = space.copy_physical(jax.random.key(1), state, obs, 0.0)
    t = space.trials(jax.random.key(0), domains, jnp.int32(0), num_actions=2, gamma=0.9)
    # physical action 0 -> the only other action is 1: 2 -> 3 = goal, reward 1, terminated
    assert int(t.action[0]) == 1
    np.testing.assert_allclose(np.asarray(t.returns), [[1.0]])
    np.testing.assert_allclose(np.asarray(t.discounts), [[0.0]])
    assert int(t.obs[0]) == 2
    assert not bool(space.shield_violation(jax.random.key(2), domains, jnp.int32(1)))
    assert bool(space.shield_violation(jax.random.key(2), domains, jnp.int32(0)))  # stay at L-2


def test_trial_actions_are_uniform_over_the_other_actions():
    """Each non-physical action appears in a subset of size n - 1 with probability (n - 1) / (A - 1)."""
    keys = jax.random.split(jax.random.key(5), 6000)
    acts = np.asarray(jax.vmap(trial_actions, in_axes=(0, None, None, None))(keys, jnp.int32(3), 7, 3))
    counts = np.bincount(acts.ravel(), minlength=7)
    assert counts[3] == 0
    expected = 6000 * 2 / 6  # 2,000 per non-physical action
    assert np.all(np.abs(np.delete(counts, 3) - expected) < 5 * np.sqrt(expected)), counts
    # and the first slot (domain 1) is itself uniform: no action is favoured in a given domain
    first = np.bincount(acts[:, 0], minlength=7)
    assert np.all(np.abs(np.delete(first, 3) - 1000) < 5 * np.sqrt(1000)), first


@pytest.mark.parametrize("num_actions,num_trials", [(41, 3), (200, 21)])
def test_sparse_trials_are_uniform_over_actions_and_domains(num_actions, num_trials):
    """The Floyd path (few trials out of many actions): every other action equally likely, in every slot."""
    draws = 20000
    keys = jax.random.split(jax.random.key(6), draws)
    acts = np.asarray(jax.vmap(trial_actions, in_axes=(0, None, None, None))(keys, jnp.int32(0), num_actions, num_trials))
    n = num_trials - 1
    counts = np.bincount(acts.ravel(), minlength=num_actions)
    assert counts[0] == 0
    expected = draws * n / (num_actions - 1)
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected)), counts
    for slot in (0, n - 1):  # first and last domain: no action favoured
        c = np.bincount(acts[:, slot], minlength=num_actions)[1:]
        e = draws / (num_actions - 1)
        assert np.all(np.abs(c - e) < 5 * np.sqrt(e) + 1), (slot, c)

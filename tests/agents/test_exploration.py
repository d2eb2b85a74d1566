"""Epsilon-greedy draws: the right frequencies, ties split evenly, and an independent NumPy check."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dtrl_jax.agents.exploration import explore_flags_and_actions, greedy_action, greedy_from_bits


def test_greedy_from_bits_picks_the_rth_tie_like_numpy():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.integers(0, 3, size=rng.integers(1, 12)).astype(np.float32)
        bits = rng.integers(0, 2**32, dtype=np.uint64)
        ties = np.flatnonzero(q == q.max())
        expected = ties[int(bits) % len(ties)]
        got = int(greedy_from_bits(jnp.uint32(bits), jnp.asarray(q)))
        assert got == expected, (q, bits)


def test_ties_are_split_evenly_and_non_maxima_never_chosen():
    q = jnp.array([3.0, 0.0, 3.0, 1.0, 3.0, -2.0, 3.0])
    picks = np.asarray(jax.vmap(greedy_action, in_axes=(0, None))(jax.random.split(jax.random.key(1), 8000), q))
    counts = np.bincount(picks, minlength=7)
    assert counts[[1, 3, 5]].sum() == 0
    # 4 ties, 2,000 expected each: 5 sigma is about +-200.
    assert np.all(np.abs(counts[[0, 2, 4, 6]] - 2000) < 200), counts


def test_exploration_rate_and_uniform_random_actions():
    q = jnp.arange(5.0)  # greedy = 4
    keys = jax.random.split(jax.random.key(2), 20000)
    action, explored, greedy = jax.vmap(explore_flags_and_actions, in_axes=(0, None, None))(keys, q, 0.3)
    action, explored, greedy = map(np.asarray, (action, explored, greedy))
    assert (greedy == 4).all()
    assert abs(explored.mean() - 0.3) < 0.015
    assert (action[~explored] == 4).all()
    counts = np.bincount(action[explored], minlength=5)
    assert np.all(np.abs(counts / explored.sum() - 0.2) < 0.02), counts
    # Two keys give different draws, one key the same draw.
    again = jax.vmap(explore_flags_and_actions, in_axes=(0, None, None))(keys, q, 0.3)[0]
    np.testing.assert_array_equal(np.asarray(again), action)


def test_nan_q_values_still_give_a_valid_action():
    a = int(greedy_action(jax.random.key(0), jnp.array([jnp.nan, 1.0, 2.0])))
    assert 0 <= a < 3

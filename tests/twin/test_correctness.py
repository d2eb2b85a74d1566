"""Twin correctness (issue 15): health check on stochastic envs, sync with many envs, the shield's
learning, key roles, observation noise, exact twin-transition counts, replay windows."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np

import dtrl_jax as dt
from dtrl_jax.twin.space import DigitalSpace


def cartpole_space(**twin):
    env, params = gymnax.make("CartPole-v1")
    cfg = dt.TwinConfig(**twin)
    return env, params, DigitalSpace(env, params, None, cfg, can_observe=True, obs_is_float=True)


def test_no_obs_noise_on_the_physical_final_observation():
    env, params, space = cartpole_space(num_domains=2, lookahead=3, lookahead_rollouts=2, obs_noise_std=1.0)
    obs, state = env.reset(jax.random.key(0), params)
    domains = space.copy_physical(jax.random.key(1), state, obs, 0.0)
    final = obs + 0.5
    policy = lambda k, o: jnp.int32(0)  # noqa: E731
    for terminated, truncated in ((False, True), (True, False)):
        t = space.rollouts(jax.random.key(2), domains, policy, obs=obs, action=1, reward=1.0,
                           terminated=terminated, truncated=truncated, final_obs=final, gamma=0.9)
        np.testing.assert_array_equal(np.asarray(t.next_obs), np.broadcast_to(np.asarray(final), (2, 4)))
    # an episode that goes on: the twin's bootstrap observations are noisy
    t = space.rollouts(jax.random.key(2), domains, policy, obs=obs, action=1, reward=1.0,
                       terminated=False, truncated=False, final_obs=final, gamma=0.9)
    assert not np.allclose(np.asarray(t.next_obs), np.asarray(final))


def test_every_random_role_of_a_step_has_its_own_stream():
    from dtrl_jax.train import TWIN_KEY_ROLES, step_keys

    num_envs = 4
    keys = step_keys(jax.random.key(0), 7, num_envs)
    assert set(keys) == {"act", "env", "learn", *TWIN_KEY_ROLES}
    flat = [jax.random.key_data(k).reshape(-1, 2) for k in keys.values()]
    rows = np.concatenate([np.asarray(f) for f in flat])
    assert len(rows) == 2 + num_envs * (1 + len(TWIN_KEY_ROLES))
    # one level further down too (what the roles derive: fold_in(k, i) == split(k, n)[i] in JAX)
    children = [jax.random.key_data(jax.vmap(lambda k: jax.random.fold_in(k, i))(keys[r])) for r in
                ("env", *TWIN_KEY_ROLES) for i in range(num_envs)]
    rows = np.concatenate([rows] + [np.asarray(c) for c in children])
    assert len({tuple(r) for r in rows.tolist()}) == len(rows)


def test_physical_randomness_is_that_of_the_first_design():
    """Physical-only runs give the numbers they gave before the twin's keys were separated (0b2d2f2)."""
    env, params = dt.make("AccessPointSelection-v0")
    cfg = dt.QLearningConfig(total_timesteps=2_000, num_envs=2, log_every=1_000)
    out = jax.jit(dt.make_train(cfg, env, params))(jax.random.key(3))
    q = np.asarray(out.runner_state.agent_state.q)
    assert float(q.sum()) == -86.9430923461914
    np.testing.assert_array_equal(out.metrics["violations"], [684, 1345])


def test_sync_every_counts_physical_steps_over_all_envs():
    from tests.helpers import Chain, ChainParams

    env, params = Chain(), ChainParams(length=5, max_steps_in_episode=30)
    for sync_every, period in ((7, 1.0), (15, 1.5), (40, 4.0)):
        twin = dt.TwinConfig(num_domains=2, action_trials=2, sync_every=sync_every)
        cfg = dt.QLearningConfig(total_timesteps=3_000, num_envs=10, log_every=600, twin=twin)
        m = jax.jit(dt.make_train(cfg, env, params))(jax.random.key(0)).metrics
        syncs = np.asarray(m["sync_events"])
        after = np.arange(1, 301) * 10  # physical steps after each vectorised step
        crossing = after // sync_every > (after - 10) // sync_every
        np.testing.assert_array_equal(syncs, np.cumsum(crossing)[59::60])
        vector_steps = 3_000 / 10
        assert vector_steps / syncs[-1] == period  # measured period in each env's own steps

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

"""k-step look-ahead targets against an independent NumPy reference (gamma**k, episode ends)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtrl_jax.agents.exploration import greedy_action
from dtrl_jax.agents.td import branch_target
from dtrl_jax.config import TwinConfig
from dtrl_jax.twin.space import DigitalSpace
from tests.helpers import Chain, ChainParams, ChainState


def reference_branch(pos, action, time, q, k, gamma, length, max_steps):
    """Plain-Python k-step return of the deterministic chain under the greedy policy of ``q``."""

    def step(s, a, t):
        nxt = min(s + a, length - 1)
        goal = nxt == length - 1
        r = 1.0 if goal else 0.1 * s
        t += 1
        return nxt, r, goal, (t >= max_steps), t

    s, r, term, trunc, t = step(pos, action, time)
    ret = r
    if term:
        return ret, 0.0, s
    if trunc:
        return ret, gamma, s
    for j in range(1, k):
        a = int(np.argmax(q[s]))
        s, r, term, trunc, t = step(s, a, t)
        ret += gamma**j * r
        if term:
            return ret, 0.0, s
        if trunc:
            return ret, gamma ** (j + 1), s
    return ret, gamma**k, s


def run_lookahead(pos, action, time, q, k, gamma, params, rollouts=3):
    return _run_lookahead(jnp.int32(pos), jnp.int32(action), jnp.int32(time), jnp.asarray(q, jnp.float32),
                          k, gamma, params, rollouts)


@partial(jax.jit, static_argnames=("k", "rollouts"))
def _run_lookahead(pos, action, time, q, k, gamma, params, rollouts):
    env = Chain()
    state = ChainState(pos=pos, time=time)
    obs = env.get_obs(state, params)
    key = jax.random.key(1)
    next_obs, next_state, reward, term, trunc, info = env.step(key, state, action, params)
    qj = jnp.asarray(q, jnp.float32)
    policy = lambda kk, o: greedy_action(kk, qj[o])  # noqa: E731
    cfg = TwinConfig(num_domains=rollouts, lookahead=k, lookahead_rollouts=rollouts)
    space = DigitalSpace(env, params, None, cfg, can_observe=True, obs_is_float=False)
    domains = space.copy_physical(jax.random.key(3), next_state, next_obs, 0.0)
    return space.rollouts(
        jax.random.key(2), domains, policy, obs=obs, action=action, reward=reward, terminated=term,
        truncated=trunc, final_obs=info["final_observation"], gamma=gamma,
    )


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("start", [(0, 1, 0), (1, 1, 0), (2, 0, 0), (0, 1, 7), (3, 1, 0), (2, 1, 8)])
def test_k_step_branch_matches_numpy(k, start):
    pos, action, time = start
    length, max_steps, gamma = 6, 10, 0.9
    params = ChainParams(length=length, max_steps_in_episode=max_steps)
    rng = np.random.default_rng(k * 100 + pos * 10 + time)
    q = rng.normal(size=(length, 2))
    q[:, 1] += 0.3  # mostly move right, so windows often hit the goal (termination inside the window)
    t = run_lookahead(pos, action, time, q, k, gamma, params)
    ret, disc, boot = reference_branch(pos, action, time, q, k, gamma, length, max_steps)
    np.testing.assert_allclose(np.asarray(t.returns), ret, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(t.discounts), disc, rtol=1e-5, atol=1e-7)
    if disc > 0:
        np.testing.assert_array_equal(np.asarray(t.next_obs), boot)


def test_discount_is_gamma_to_the_k_not_gamma():
    params = ChainParams(length=20, max_steps_in_episode=100)
    q = np.zeros((20, 2))
    q[:, 0] = 1.0  # always stay: no termination in the window
    t = run_lookahead(5, 0, 0, q, 4, 0.9, params)
    np.testing.assert_allclose(np.asarray(t.discounts), 0.9**4, rtol=1e-6)
    # stay at 5: rewards 0.5 each step
    np.testing.assert_allclose(np.asarray(t.returns), 0.5 * (1 + 0.9 + 0.81 + 0.729), rtol=1e-6)


def test_branch_target_averages_branches():
    returns = jnp.array([1.0, 2.0, 4.0])
    discounts = jnp.array([0.5, 0.0, 0.25])
    boot = jnp.array([2.0, 10.0, 4.0])
    expected = np.mean([1.0 + 0.5 * 2.0, 2.0, 4.0 + 0.25 * 4.0])
    np.testing.assert_allclose(branch_target(returns, discounts, boot, jnp.full(3, 1 / 3)), expected, rtol=1e-6)
    one_hot = branch_target(returns, discounts, boot, jnp.array([0.0, 1.0, 0.0]))
    assert float(one_hot) == 2.0

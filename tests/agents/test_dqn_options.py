"""DQN options: the branching head, dueling, value normalisation and n-step returns.

Every numerical rule is checked against a few lines of NumPy (brute force over the joint table,
a loop over a trajectory), and the branching head is shown to learn a product action space that the
joint head cannot sample enough in the same budget.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import dtrl_jax as dt
from dtrl_jax.agents.dqn import DQNAgent
from dtrl_jax.agents.networks import (
    branch_double_q,
    branch_max,
    branch_q_of_action,
    build_network,
    factor_actions,
    joint_q_from_branches,
)
from dtrl_jax.agents.td import n_step_return, normalised_returns
from dtrl_jax.transition import one_step_transition

DIMS = (3, 4, 2)


def np_joint(flat, dims):
    """Brute force: Q(a) = mean_i q_i[a_i] for every joint index a (factor 0 least significant)."""
    flat = np.asarray(flat, np.float64)
    starts = np.cumsum((0,) + dims[:-1])
    out = np.zeros(int(np.prod(dims)))
    for a in range(out.size):
        digits, rest = [], a
        for n in dims:
            digits.append(rest % n)
            rest //= n
        out[a] = np.mean([flat[s + d] for s, d in zip(starts, digits)])
    return out


def test_joint_table_of_branch_values_matches_brute_force_and_its_argmax_is_per_branch():
    rng = np.random.default_rng(0)
    for _ in range(5):
        flat = rng.normal(size=sum(DIMS)).astype(np.float32)
        joint = np.asarray(joint_q_from_branches(jnp.asarray(flat), DIMS))
        ref = np_joint(flat, DIMS)
        np.testing.assert_allclose(joint, ref, rtol=1e-6, atol=1e-6)
        # the greedy joint action is the per-branch argmax, and its value is mean_i max q_i
        starts = np.cumsum((0,) + DIMS[:-1])
        per_branch = [int(np.argmax(flat[s : s + n])) for s, n in zip(starts, DIMS)]
        a_star = int(np.argmax(ref))
        np.testing.assert_array_equal(np.asarray(factor_actions(a_star, DIMS)), per_branch)
        np.testing.assert_allclose(float(branch_max(jnp.asarray(flat), DIMS)), ref.max(), rtol=1e-6)
        for a in (0, 7, a_star, ref.size - 1):
            np.testing.assert_allclose(float(branch_q_of_action(jnp.asarray(flat), a, DIMS)), ref[a], rtol=1e-6)
        online = rng.normal(size=sum(DIMS)).astype(np.float32)
        a_online = int(np.argmax(np_joint(online, DIMS)))
        np.testing.assert_allclose(
            float(branch_double_q(jnp.asarray(flat), jnp.asarray(online), DIMS)), ref[a_online], rtol=1e-6
        )


def test_factor_actions_is_mixed_radix_with_factor_zero_least_significant():
    for a, digits in [(0, (0, 0, 0)), (1, (1, 0, 0)), (3, (0, 1, 0)), (12, (0, 0, 1)), (23, (2, 3, 1))]:
        np.testing.assert_array_equal(np.asarray(factor_actions(a, DIMS)), digits)


@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("name", ["mlp", "cnn", "gru"])
def test_branching_network_outputs_branch_values_and_the_agent_the_joint_table(name, dueling):
    net = build_network(name, (8,), 24, action_dims=DIMS, dueling=dueling)
    x = jnp.linspace(0.0, 1.0, 6)
    params = net.init(jax.random.key(0), x)
    assert net.apply(params, x).shape == (sum(DIMS),)
    cfg = dt.DQNConfig(network=name, hidden_sizes=(8,), head="branching", dueling=dueling)
    agent = DQNAgent(24, x, None, cfg, action_dims=DIMS)
    state = agent.init(jax.random.key(1))
    q = agent.q_values(state, x)
    assert q.shape == (24,)
    np.testing.assert_allclose(np.asarray(q), np_joint(agent.branch_values(state, x), DIMS), rtol=1e-5, atol=1e-6)


def test_dueling_joint_head_is_value_plus_centred_advantage():
    net = build_network("mlp", (8,), 5, dueling=True)
    x = jnp.ones((3,))
    params = net.init(jax.random.key(0), x)
    assert set(params["params"]) == {"Dense_0", "value", "advantage"}
    q = np.asarray(net.apply(params, x))
    h = np.maximum(np.asarray(x) @ np.asarray(params["params"]["Dense_0"]["kernel"])
                   + np.asarray(params["params"]["Dense_0"]["bias"]), 0.0)
    v = h @ np.asarray(params["params"]["value"]["kernel"]) + np.asarray(params["params"]["value"]["bias"])
    adv = h @ np.asarray(params["params"]["advantage"]["kernel"]) + np.asarray(params["params"]["advantage"]["bias"])
    np.testing.assert_allclose(q, v + adv - adv.mean(), rtol=1e-5, atol=1e-6)


def test_joint_head_without_options_keeps_the_plain_parameters():
    net = build_network("mlp", (6, 4), 3)
    params = net.init(jax.random.key(0), jnp.zeros((2,)))
    assert set(params["params"]) == {"Dense_0", "Dense_1", "Dense_2"}


def test_head_choice_and_new_fields_are_validated():
    x = jnp.zeros((2,))
    assert DQNAgent(6, x, None, dt.DQNConfig(), action_dims=(2, 3)).action_dims == (2, 3)  # auto
    assert DQNAgent(6, x, None, dt.DQNConfig(head="joint"), action_dims=(2, 3)).action_dims is None
    assert DQNAgent(6, x, None, dt.DQNConfig()).action_dims is None
    with pytest.raises(ValueError, match="head='branching' needs"):
        DQNAgent(6, x, None, dt.DQNConfig(head="branching"))
    with pytest.raises(ValueError, match="action_dims"):
        DQNAgent(6, x, None, dt.DQNConfig(), action_dims=(2, 2))
    with pytest.raises(ValueError, match="head"):
        dt.DQNConfig(head="factored")
    with pytest.raises(ValueError, match="n_step"):
        dt.DQNConfig(n_step=0)
    with pytest.raises(ValueError, match="n_step=3 with twin.lookahead=2"):
        dt.DQNConfig(n_step=3, twin=dt.TwinConfig(num_domains=2, lookahead=2, lookahead_rollouts=2))
    with pytest.raises(ValueError, match="reward_scale"):
        dt.DQNConfig(reward_scale=0.0)
    with pytest.raises(ValueError, match="reward_shift=1.0 needs gamma < 1"):
        dt.DQNConfig(reward_shift=1.0, gamma=1.0)
    with pytest.raises(TypeError, match="dueling"):
        dt.DQNConfig(dueling=1)


# ------------------------------------------------------------------------ value normalisation
def test_normalised_returns_equal_transformed_rewards_and_the_exact_target():
    gamma, scale, shift = 0.9, 4.0, 1.5
    offset = shift / (1 - gamma)
    rewards = np.array([1.0, 2.0, 0.5])
    # 3 steps without termination: R' = sum gamma^j scale (r_j - shift)
    ret = np.sum(gamma ** np.arange(3) * rewards)
    got = float(normalised_returns(jnp.float32(ret), jnp.float32(gamma**3), scale, offset))
    np.testing.assert_allclose(got, np.sum(gamma ** np.arange(3) * scale * (rewards - shift)), rtol=1e-5)
    # any (R, D): target in network units = scale * (env target - offset) when Q' = scale (Q - offset)
    rng = np.random.default_rng(1)
    for _ in range(10):
        r, d, q_next = rng.normal(), rng.choice([0.0, gamma, gamma**4]), rng.normal() * 10
        env_target = r + d * q_next
        net_target = float(normalised_returns(jnp.float32(r), jnp.float32(d), scale, offset)) + d * scale * (q_next - offset)
        np.testing.assert_allclose(net_target, scale * (env_target - offset), rtol=1e-4, atol=1e-3)


# ------------------------------------------------------------------------ a product bandit
@struct.dataclass
class BanditState(environment.EnvState):
    time: int


@struct.dataclass
class BanditParams(environment.EnvParams):
    max_steps_in_episode: int = 1


class ProductBandit(environment.Environment[BanditState, BanditParams]):
    """One-step episodes; the action is K = 4 choices of 6; reward = mean_i w_i[a_i] in [0, 1].

    Each factor's best choice is unique (weight 1), the others are 0 ... 0.6: the best joint action
    (reward 1) is one of 6**4 = 1296, which a joint head cannot sample enough in a short run (800
    steps) while a branching head learns every factor from every transition.
    """

    dims = (6, 6, 6, 6)
    weights = np.array([[0.0, 0.2, 1.0, 0.4, 0.6, 0.1], [0.6, 0.0, 0.1, 0.2, 0.4, 1.0],
                        [1.0, 0.4, 0.0, 0.6, 0.2, 0.1], [0.1, 0.2, 0.4, 1.0, 0.0, 0.6]], np.float32)

    @property
    def default_params(self):
        return BanditParams()

    def action_dims(self, params=None):
        return self.dims

    def reward(self, action):
        digits = factor_actions(action, self.dims)
        return jnp.mean(jnp.asarray(self.weights)[jnp.arange(4), digits])

    def step_env(self, key, state, action, params):
        new = BanditState(time=state.time + 1)
        return self.get_obs(new), new, self.reward(action), jnp.array(True), {}

    def reset_env(self, key, params):
        state = BanditState(time=0)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.ones((2,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(int(np.prod(self.dims)))

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (2,), jnp.float32)


def _bandit_run(head, **over):
    env = ProductBandit()
    kw = dict(
        total_timesteps=800, num_envs=10, log_every=400, learning_starts=200, train_every=1,
        batch_size=32, buffer_size=800, hidden_sizes=(16,), learning_rate=3e-3, target_update_every=100,
        gamma=0.0, epsilon_decay_steps=600, head=head,
    )
    cfg = dt.DQNConfig(**{**kw, **over})
    train = dt.make_train(cfg, env, env.default_params)
    outs = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 2))
    obs = jnp.ones((2,), jnp.float32)
    q = jax.vmap(lambda s: train.agent.q_values(s, obs))(outs.runner_state.agent_state)  # [seeds, A]
    best = np.asarray(jax.vmap(env.reward)(jnp.argmax(q, axis=1)))
    return outs, np.asarray(q), best


@pytest.mark.slow
def test_branching_head_learns_a_product_bandit_the_joint_head_does_not():
    _, _, best_branching = _bandit_run("auto")  # the env declares factors: branching
    _, _, best_joint = _bandit_run("joint")
    np.testing.assert_allclose(best_branching, 1.0)  # the optimal joint action, every seed
    assert np.all(best_joint < 0.9), best_joint  # the best of the few joint actions it tried


def test_value_normalisation_keeps_q_values_and_metrics_in_env_units():
    # also the fast variant of the test above: the branching head finds the best of 1,296 actions
    outs, q, best = _bandit_run("auto", reward_scale=20.0, reward_shift=0.5, gamma=0.5)
    np.testing.assert_allclose(best, 1.0)
    # gamma matters only through the offset (every episode terminates): Q(s, a) = r(a), env units
    np.testing.assert_allclose(q.max(axis=1), 1.0, atol=0.1)
    ret = np.asarray(outs.metrics["episode_return"])
    assert np.all((ret >= 0.0) & (ret <= 1.0)), ret  # env rewards, not 20 (r - 0.5)


# ------------------------------------------------------------------------ n-step
def np_n_step(rewards, ends, terminal, n, gamma):
    """Reference n-step targets of one env's stream: per start t, (R, D, index of bootstrap step).

    ``ends[t]``: the episode ends after step t (termination or truncation); ``terminal[t]``: by
    termination. The return stops at the episode end; D = gamma**m, 0 after a termination.
    """
    out = []
    for t in range(len(rewards)):
        ret, disc, j = 0.0, 1.0, t
        for i in range(n):
            j = t + i
            if j >= len(rewards):
                return out  # not enough data yet: the agent has not emitted it either
            ret += disc * rewards[j]
            disc *= 0.0 if terminal[j] else gamma
            if ends[j]:
                break
        out.append((ret, disc, j))
    return out


def test_n_step_return_of_a_window():
    r = jnp.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(n_step_return(r, jnp.full(3, 0.5), jnp.array([True, True, True]))[:2], (3.0, 0.125))
    np.testing.assert_allclose(n_step_return(r, jnp.full(3, 0.5), jnp.array([True, False, True]))[:2], (1.0, 0.5))
    ret, disc, m = n_step_return(r, jnp.array([0.5, 0.0, 0.5]), jnp.array([True, True, True]))
    np.testing.assert_allclose((ret, disc), (2.0, 0.0))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_n_step_accumulator_matches_numpy_with_terminations_and_truncations(n):
    gamma, num_envs, steps = 0.9, 2, 40
    rng = np.random.default_rng(n)
    cfg = dt.DQNConfig(num_envs=num_envs, n_step=n, gamma=gamma)
    agent = DQNAgent(4, jnp.zeros((3,)), None, cfg)
    example = one_step_transition(jnp.zeros((3,)), 0, 0.0, False, jnp.zeros((3,)), gamma)
    storage = agent.init_storage(example, None)
    window = storage.window
    # A stream per env: episodes of random length ending by termination or truncation (after a
    # truncation the next obs is a reset obs, not the final obs the transition bootstraps from).
    rewards = rng.normal(size=(num_envs, steps)).astype(np.float32)
    ends = rng.random((num_envs, steps)) < 0.25
    terminal = ends & (rng.random((num_envs, steps)) < 0.5)
    obs = np.zeros((num_envs, steps, 3), np.float32)
    final = np.zeros((num_envs, steps, 3), np.float32)
    for e in range(num_envs):
        episode, t_in = 0, 0
        for t in range(steps):
            obs[e, t] = [e, episode, t_in]
            final[e, t] = [e, episode, t_in + 1]  # the pre-reset next observation
            t_in += 1
            if ends[e, t]:
                episode, t_in = episode + 1, 0
    emitted = []
    push = jax.jit(agent.push_n_step)
    for t in range(steps):
        batch = jax.vmap(one_step_transition, in_axes=(0, 0, 0, 0, 0, None))(
            jnp.asarray(obs[:, t]), jnp.full((num_envs,), t % 4), jnp.asarray(rewards[:, t]),
            jnp.asarray(terminal[:, t]), jnp.asarray(final[:, t]), gamma,
        )
        window, out, real = push(window, batch)
        assert bool(real) == (t >= n - 1)
        if bool(real):
            emitted.append(jax.tree.map(np.asarray, out))
    for e in range(num_envs):
        ref = np_n_step(rewards[e], ends[e], terminal[e], n, gamma)
        assert len(ref) >= len(emitted) and len(emitted) == steps - n + 1
        for s, got in enumerate(emitted):
            ret, disc, j = ref[s]
            np.testing.assert_allclose(got.returns[e, 0], ret, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(got.discounts[e, 0], disc, rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(got.obs[e], obs[e, s])
            assert got.action[e] == s % 4
            if disc > 0:
                np.testing.assert_array_equal(got.next_obs[e, 0], final[e, j])


_LOOP = dict(total_timesteps=200, num_envs=2, log_every=100, learning_starts=50, train_every=2,
             batch_size=8, buffer_size=200, hidden_sizes=(8,), dueling=True, double_q=True,
             reward_scale=2.0, reward_shift=0.3, gamma=0.9)


def _loop_smoke(twin, n_step):
    env = ProductBandit()
    train = dt.make_train(dt.DQNConfig(twin=twin, n_step=n_step, **_LOOP), env, env.default_params)
    assert train.agent.action_dims == env.dims
    outs = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 2))
    assert np.all(np.isfinite(np.asarray(outs.metrics["loss"])))
    assert int(outs.metrics["updates"][0, -1]) > 0


def test_every_option_runs_in_the_loop_under_vmap():
    _loop_smoke(None, n_step=3)


@pytest.mark.slow
@pytest.mark.parametrize("twin", [dt.TwinConfig(num_domains=3, action_trials=3),
                                  dt.TwinConfig(num_domains=2, lookahead=2, lookahead_rollouts=2)])
def test_options_run_with_trials_and_look_ahead(twin):
    _loop_smoke(twin, n_step=1)


@pytest.mark.parametrize("scale,shift", [(1.0, 0.0), (4.0, 1.5)])
def test_per_example_loss_matches_numpy_for_one_and_several_branches(scale, shift):
    """The loss of one transition, 1 branch (its own fast path) and M = 3 branches, against NumPy
    from the network's raw values: 0.5 (q - sum_m w_m (scale (R_m - off (1 - D_m)) + D_m max q'_m))^2."""
    from dtrl_jax.transition import Transition

    gamma = 0.9
    cfg = dt.DQNConfig(total_timesteps=1000, log_every=500, learning_starts=100, hidden_sizes=(8,), gamma=gamma,
                       reward_scale=scale, reward_shift=shift)
    train = dt.make_train(cfg, ProductBandit(), ProductBandit().default_params)
    agent = train.agent
    state = agent.init(jax.random.key(0))
    params = state.params
    target = agent.init(jax.random.key(1)).params
    off = shift / (1 - gamma) if shift else 0.0
    rng = np.random.default_rng(0)
    for m in (1, 3):
        obs = jnp.asarray(rng.normal(size=2), jnp.float32)
        nxt = jnp.asarray(rng.normal(size=(m, 2)), jnp.float32)
        ret = rng.normal(size=m).astype(np.float32)
        disc = np.array([gamma, 0.0, gamma**3][:m], np.float32)
        w = np.full(m, 1.0 / m, np.float32) if m > 1 else np.ones(1, np.float32)
        t = Transition(obs=obs, action=jnp.int32(7), returns=jnp.asarray(ret), discounts=jnp.asarray(disc),
                       next_obs=nxt, weights=jnp.asarray(w))
        got = float(agent._per_example_loss(params, target, t, agent.reward_shift(state)))
        q = np.asarray(agent._joint(agent.raw(params, obs)))[7]
        boot = np.array([np.max(np.asarray(agent._joint(agent.raw(target, nxt[i])))) for i in range(m)])
        tgt = np.sum(w * (scale * (ret - off * (1 - disc)) + disc * boot))
        np.testing.assert_allclose(got, 0.5 * (q - tgt) ** 2, rtol=1e-4, atol=1e-5)


def test_warmup_reward_shift_is_each_seeds_mean_warmup_reward_and_then_fixed():
    """``reward_shift=None``: the shift is the mean physical reward of the steps before
    ``learning_starts``. On one-step episodes that is the loop's own ``episode_return`` of the first
    interval (an independent count: 500 episodes); the statistics stop growing once learning starts,
    and each seed under vmap has its own."""
    env = ProductBandit()
    cfg = dt.DQNConfig(total_timesteps=2000, log_every=500, learning_starts=500, hidden_sizes=(16,), gamma=0.9,
                       reward_shift=None)
    train = dt.make_train(cfg, env, env.default_params)
    outs = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(3), 2))
    state = outs.runner_state.agent_state
    np.testing.assert_array_equal(np.asarray(state.reward_stats[:, 1]), [500.0, 500.0])
    shifts = np.asarray(jax.vmap(train.agent.reward_shift)(state))
    np.testing.assert_allclose(shifts, np.asarray(outs.metrics["episode_return"][:, 0]), rtol=1e-5)
    assert shifts[0] != shifts[1]
    assert 0.2 < shifts[0] < 0.6  # uniform actions: the mean of the weights is 0.37
    assert int(outs.metrics["updates"][0, -1]) > 0
    # gamma = 1 has no finite value offset: the warm-up shift is then 0
    one = dt.DQNConfig(**{**{f: getattr(cfg, f) for f in ("total_timesteps", "log_every", "learning_starts")},
                          "gamma": 1.0, "reward_shift": None})
    agent = dt.make_train(one, env, env.default_params).agent
    st = agent.init(jax.random.key(0)).replace(reward_stats=jnp.array([5.0, 10.0]))
    assert float(agent.reward_shift(st)) == 0.0
    with pytest.raises(TypeError, match="reward_shift"):
        dt.DQNConfig(reward_shift="auto")

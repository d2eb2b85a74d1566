"""Tests for ``EdgeTaskScheduling-v0`` against an independent NumPy model of the companion paper's cost."""

import itertools
import math

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtrl_jax.envs import edge_scheduling as es
from dtrl_jax.envs.registry import make, registered_envs

ENV_ID = "EdgeTaskScheduling-v0"


def np_cost(order, d, c, dl, rate, freq_ghz, zeta):
    """Plain-Python reference: upload in ``order`` at ``rate``, compute FIFO on one core."""
    ready = done = total = 0.0
    missed = 0
    for j in order:
        ready += d[j] / rate
        done = max(ready, done) + d[j] * c[j] * 1e6 / (freq_ghz * 1e9)
        total += done
        missed += done > dl[j]
    return total + zeta * missed, missed


def np_all_costs(tasks, params):
    d, c, dl = (np.asarray(x, np.float64) for x in tasks)
    n = len(d)
    out = [np_cost(o, d, c, dl, params.rate_mbps, params.frequency_ghz, params.zeta)
           for o in itertools.permutations(range(n))]
    return np.array([x[0] for x in out]), np.array([x[1] for x in out])


@jax.jit
def all_costs(params, tasks):
    n = params.num_tasks
    orders = jax.vmap(es.decode_permutation, in_axes=(0, None))(jnp.arange(math.factorial(n)), n)
    return jax.vmap(es.schedule_cost, in_axes=(0, None, None, None, None))(orders, *tasks, params)


@jax.jit
def reset_and_step(key, action, params):
    env = _ENVS[params.num_tasks]
    k_reset, k_step = jax.random.split(key)
    obs, state = env.reset(k_reset, params)
    return state, env.step(k_step, state, action, params)


_ENVS = {n: es.EdgeTaskScheduling(num_tasks=n) for n in range(2, 9)}

# Hand-made 4-task frame at 2 Mbit/s: some orders meet every deadline, others miss one or more.
TASKS4 = es.TaskSet(
    sizes=jnp.array([1.8, 0.4, 1.2, 0.9], jnp.float32),
    complexities=jnp.array([900.0, 100.0, 500.0, 300.0], jnp.float32),
    deadlines=jnp.array([4.0, 1.0, 2.4, 2.5], jnp.float32),
)


@pytest.mark.parametrize("n", [4, 6])
def test_cost_matches_numpy_for_every_order(n):
    if n == 4:
        params, tasks = es.EnvParams(num_tasks=4, rate_mbps=2.0), TASKS4
    else:
        params = es.EnvParams(num_tasks=6)  # default frame: 58% of the orders miss a deadline
        tasks = es.task_set(params)
    costs, missed = all_costs(params, tasks)
    ref_costs, ref_missed = np_all_costs(tasks, params)
    assert costs.dtype == jnp.float32 and costs.shape == (math.factorial(n),)
    np.testing.assert_allclose(costs, ref_costs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(missed, ref_missed)
    assert 0 < np.mean(ref_missed > 0) < 1  # deadline misses are exercised, not all-or-nothing
    if n == 6:  # env.step on the default frame agrees too, for orders with and without misses
        for action in [int(np.argmin(ref_missed)), int(np.argmax(ref_missed)), math.factorial(n) - 1]:
            _, (_, _, reward, _, _, info) = reset_and_step(jax.random.key(1), action, params)
            np.testing.assert_allclose(-reward, ref_costs[action], rtol=1e-5)
            assert bool(info["violation"]) == (ref_missed[action] > 0)


def test_decode_encode_round_trip_n5():
    n = 5
    idx = jnp.arange(math.factorial(n))
    perms = jax.jit(jax.vmap(es.decode_permutation, in_axes=(0, None)), static_argnums=1)(idx, n)
    assert perms.dtype == jnp.int32
    np.testing.assert_array_equal(np.sort(perms, axis=1), np.tile(np.arange(n), (len(idx), 1)))
    np.testing.assert_array_equal(perms, np.array(list(itertools.permutations(range(n)))))
    assert len({tuple(p) for p in np.asarray(perms).tolist()}) == len(idx)
    np.testing.assert_array_equal(jax.vmap(es.encode_permutation)(perms), idx)
    np.testing.assert_array_equal(es.decode_permutation(math.factorial(n) + 3, n), perms[3])  # modulo n!


def test_brute_force_matches_numpy_n6():
    params = es.EnvParams(num_tasks=6, task_seed=3, rate_mbps=3.0)
    ref_costs, ref_missed = np_all_costs(es.task_set(params), params)
    opt = es.brute_force_optimum(params)
    assert set(opt) >= {"best_cost", "best_action", "worst_cost", "mean_cost"}
    np.testing.assert_allclose(opt["best_cost"], ref_costs.min(), rtol=1e-5)
    np.testing.assert_allclose(opt["worst_cost"], ref_costs.max(), rtol=1e-5)
    np.testing.assert_allclose(opt["mean_cost"], ref_costs.mean(), rtol=1e-5)
    np.testing.assert_allclose(ref_costs[int(opt["best_action"])], ref_costs.min(), rtol=1e-5)
    np.testing.assert_array_equal(opt["best_order"], es.decode_permutation(opt["best_action"], 6))
    assert int(opt["best_missed"]) == ref_missed[int(opt["best_action"])]
    gap = es.normalised_gap(jnp.array([opt["best_cost"], opt["mean_cost"]]), params, optimum=opt)
    np.testing.assert_allclose(gap, [0.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(es.normalised_gap(opt["best_cost"], params), 0.0, atol=1e-6)


def test_jit_and_vmap_over_keys():
    env, params = make(ENV_ID)
    keys = jax.random.split(jax.random.key(0), 1024)
    actions = jax.random.randint(jax.random.key(1), (1024,), 0, env.num_actions)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    assert obs.shape == (1024,) and obs.dtype == jnp.int32
    assert state.sizes.shape == (1024, 6)
    out = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))(keys, state, actions, params)
    _, _, reward, terminated, truncated, info = out
    assert reward.shape == (1024,) and reward.dtype == jnp.float32
    assert bool(jnp.all(terminated)) and bool(jnp.all(truncated))
    ref_costs, _ = np_all_costs(es.task_set(params), params)
    np.testing.assert_allclose(-reward, ref_costs[np.asarray(actions)], rtol=1e-5)
    np.testing.assert_array_equal(info["violation"], info["missed"] > 0)


def test_vmap_over_stacked_params():
    env = es.EdgeTaskScheduling()
    settings_ = [(0, 4.0, 2.0), (5, 2.0, 0.0), (9, 8.0, 5.0)]
    plist = [es.EnvParams(task_seed=s, rate_mbps=r, zeta=z) for s, r, z in settings_]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *plist)
    actions = jnp.array([0, 100, 719])

    @jax.jit
    def run(key, actions, params):
        _, states = jax.vmap(env.reset, in_axes=(None, 0))(key, params)
        out = jax.vmap(env.step, in_axes=(None, 0, 0, 0))(key, states, actions, params)
        return states, out[2], jax.vmap(es.brute_force_optimum)(params)

    states, rewards, opts = run(jax.random.key(0), actions, stacked)
    for i, p in enumerate(plist):
        tasks = es.task_set(p)
        np.testing.assert_array_equal(states.sizes[i], tasks.sizes)
        ref_costs, _ = np_all_costs(tasks, p)
        np.testing.assert_allclose(-rewards[i], ref_costs[int(actions[i])], rtol=1e-5)
        np.testing.assert_allclose(opts["best_cost"][i], ref_costs.min(), rtol=1e-5)


def test_one_step_per_episode_and_auto_reset():
    env, params = make(ENV_ID)
    assert isinstance(env, gymnax.environments.environment.Environment)
    assert env.name == ENV_ID and env.num_actions == 720 and env.action_space(params).n == 720
    assert env.observation_space(params).n == 1
    obs, state = env.reset(jax.random.key(0), params)
    assert int(state.time) == 0 and int(obs) == 0
    obs2, state2, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 5, params)
    assert bool(terminated) and bool(truncated)
    assert int(state2.time) == 0  # auto-reset to a fresh episode with the same frame
    np.testing.assert_array_equal(state2.sizes, state.sizes)
    for k, dtype in [("violation", jnp.bool_), ("cost", jnp.float32), ("missed", jnp.int32)]:
        assert info[k].shape == () and info[k].dtype == dtype
    np.testing.assert_allclose(reward, -info["cost"])
    # step_env alone: one decision, then terminated
    _, s_end, _, term, _ = jax.jit(env.step_env)(jax.random.key(2), state, 5, params)
    assert int(s_end.time) == 1 and bool(term) and bool(env.is_terminated(s_end, params))


def test_task_set_fixed_per_seed_and_resampled_on_request():
    env = es.EdgeTaskScheduling()
    p0, p1 = es.EnvParams(task_seed=0), es.EnvParams(task_seed=1)
    _, a = env.reset(jax.random.key(0), p0)
    _, b = env.reset(jax.random.key(1), p0)
    _, c = env.reset(jax.random.key(0), p1)
    np.testing.assert_array_equal(a.sizes, b.sizes)
    np.testing.assert_array_equal(a.deadlines, b.deadlines)
    np.testing.assert_array_equal(a.sizes, es.task_set(p0).sizes)
    assert not np.allclose(a.sizes, c.sizes)
    env_r, pr = make(ENV_ID, resample_tasks=True)
    _, ra = env_r.reset(jax.random.key(0), pr)
    _, rb = env_r.reset(jax.random.key(1), pr)
    assert not np.allclose(ra.sizes, rb.sizes) and not np.allclose(ra.complexities, rb.complexities)
    for s in (a, c, ra):
        assert bool(jnp.all((s.sizes >= 0) & (s.sizes <= 2)))
        assert bool(jnp.all((s.complexities >= 0) & (s.complexities <= 1000)))
        assert bool(jnp.all((s.deadlines >= 1) & (s.deadlines <= 5)))
    # the optimum of a resampled frame comes from its state
    opt = es.brute_force_optimum(pr, ra)
    ref_costs, _ = np_all_costs(es.TaskSet(ra.sizes, ra.complexities, ra.deadlines), pr)
    np.testing.assert_allclose(opt["best_cost"], ref_costs.min(), rtol=1e-5)


def test_features_observation():
    env, params = make(ENV_ID, observation="features", num_tasks=7)
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (21,) and obs.dtype == jnp.float32
    assert env.observation_space(params).contains(obs)
    feats = np.asarray(obs).reshape(7, 3)
    np.testing.assert_allclose(feats[:, 0], state.sizes / 2, rtol=1e-6)
    np.testing.assert_allclose(feats[:, 1], state.complexities / 1000, rtol=1e-6)
    np.testing.assert_allclose(feats[:, 2], (state.deadlines - 1) / 4, rtol=1e-5)
    assert env.num_actions == 5040


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(2, 8),
    size=st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 2.0)),
    comp=st.tuples(st.floats(0.0, 1000.0), st.floats(0.0, 1000.0)),
    dead=st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 5.0)),
    rate=st.floats(0.1, 50.0),
    freq=st.floats(0.5, 50.0),
    zeta=st.floats(0.0, 10.0),
    seed=st.integers(0, 2**31 - 1),
    action_frac=st.floats(0.0, 1.0, exclude_max=True),
)
def test_property_random_params_and_actions(n, size, comp, dead, rate, freq, zeta, seed, action_frac):
    params = es.EnvParams(
        num_tasks=n, size_low=min(size), size_high=max(size), complexity_low=min(comp),
        complexity_high=max(comp), deadline_low=min(dead), deadline_high=max(dead),
        rate_mbps=rate, frequency_ghz=freq, zeta=zeta, task_seed=seed,
    )
    es.validate_params(params)
    action = int(action_frac * math.factorial(n))
    state, (_, _, reward, terminated, _, info) = reset_and_step(jax.random.key(seed), action, params)
    cost = float(info["cost"])
    assert np.isfinite(cost) and cost >= 0 and bool(terminated)
    assert float(reward) == -cost
    order = np.asarray(es.decode_permutation(action, n))
    tasks = (np.asarray(x, np.float64) for x in (state.sizes, state.complexities, state.deadlines))
    ref, ref_missed = np_cost(order, *tasks, rate, freq, zeta)
    np.testing.assert_allclose(cost, ref, rtol=1e-4, atol=1e-5)
    assert int(info["missed"]) == ref_missed and bool(info["violation"]) == (ref_missed > 0)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"rate": 4.0}, "rate"),
        ({"num_tasks": 9}, "num_tasks"),
        ({"num_tasks": 1}, "num_tasks"),
        ({"rate_mbps": 0.0}, "rate_mbps"),
        ({"rate_mbps": -1.0}, "rate_mbps"),
        ({"frequency_ghz": 0.0}, "frequency_ghz"),
        ({"zeta": -0.5}, "zeta"),
        ({"size_low": 1.5, "size_high": 1.0}, "size_high"),
        ({"deadline_low": 6.0, "deadline_high": 5.0}, "deadline_high"),
        ({"complexity_low": -1.0}, "complexity_low"),
        ({"task_seed": -3}, "task_seed"),
        ({"observation": "pixels"}, "observation"),
    ],
)
def test_bad_input_raises_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        make(ENV_ID, **overrides)


def test_registered_and_env_equal_by_config():
    assert ENV_ID in registered_envs()
    assert make(ENV_ID)[0] == es.EdgeTaskScheduling() != es.EdgeTaskScheduling(num_tasks=7)
    assert hash(make(ENV_ID)[0]) == hash(es.EdgeTaskScheduling())

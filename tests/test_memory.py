"""``dtrl_jax.memory``: shape-only estimates match the allocated state; ``check_fits`` names the numbers."""

from __future__ import annotations

import math

import gymnax
import jax
import pytest

import dtrl_jax as dt
from dtrl_jax.memory import PARTS, check_fits, device_memory_limit, format_bytes, tree_bytes
from dtrl_jax.train import estimate_memory
from tests.helpers import Chain, ChainParams

CARTPOLE, CARTPOLE_PARAMS = gymnax.make("CartPole-v1")


def _small_dqn(**twin):
    return dt.DQNConfig(
        total_timesteps=400, num_envs=2, log_every=200, learning_starts=50, buffer_size=300, batch_size=16,
        hidden_sizes=(16,), twin=dt.TwinConfig(**twin) if twin else None,
    )


@pytest.fixture(scope="module")
def dqn_run():
    cfg = _small_dqn(num_domains=4, action_trials=2, lookahead=3, lookahead_rollouts=3)
    out = jax.jit(dt.make_train(cfg, CARTPOLE, CARTPOLE_PARAMS))(jax.random.key(0))
    return cfg, out


def test_estimate_matches_the_allocated_storage_and_state(dqn_run):
    cfg, out = dqn_run
    est = estimate_memory(cfg, CARTPOLE, CARTPOLE_PARAMS)
    rs = out.runner_state
    real = {
        "replay_physical_bytes": tree_bytes(rs.storage.physical),
        "replay_twin_bytes": tree_bytes(rs.storage.twin),
        "domain_states_bytes": tree_bytes(rs.domains),
        "agent_bytes": tree_bytes(rs.agent_state),
    }
    for key, value in real.items():
        assert value > 0, key
        assert est[key] == pytest.approx(value, rel=0.03), key
    storage = real["replay_physical_bytes"] + real["replay_twin_bytes"]
    assert est["replay_physical_bytes"] + est["replay_twin_bytes"] == pytest.approx(storage, rel=0.03)
    metrics = sum(v.size * v.dtype.itemsize for v in out.metrics.values())
    assert est["metrics_bytes"] == pytest.approx(metrics, rel=0.5)
    assert est["twin_step_bytes"] > 0


def test_estimate_parts_add_up_and_scale_with_seeds():
    cfg = _small_dqn(num_domains=2, action_trials=2)
    one = estimate_memory(cfg, CARTPOLE, CARTPOLE_PARAMS)
    eight = estimate_memory(cfg, CARTPOLE, CARTPOLE_PARAMS, num_seeds=8)
    assert one["per_seed_bytes"] == sum(one[k] for k in PARTS)
    assert one["total_bytes"] == one["per_seed_bytes"]
    assert eight["total_bytes"] == 8 * one["per_seed_bytes"]
    assert one["num_domains"] == 2 and one["buffer_size"] == 300 and one["twin_buffer_size"] >= 2
    with pytest.raises(ValueError, match="num_seeds"):
        estimate_memory(cfg, CARTPOLE, CARTPOLE_PARAMS, num_seeds=0)


def test_estimate_grows_with_buffer_and_domains():
    small = estimate_memory(_small_dqn(), CARTPOLE, CARTPOLE_PARAMS)
    big = estimate_memory(_small_dqn().replace(buffer_size=3_000), CARTPOLE, CARTPOLE_PARAMS)
    assert big["replay_physical_bytes"] == pytest.approx(10 * small["replay_physical_bytes"], rel=0.01)
    assert small["replay_twin_bytes"] == 0 and small["domain_states_bytes"] == 0 and small["twin_step_bytes"] == 0
    look = estimate_memory(_small_dqn(num_domains=8, lookahead=4, lookahead_rollouts=8), CARTPOLE, CARTPOLE_PARAMS)
    assert look["twin_step_bytes"] > 0
    # Look-ahead transitions carry M = 8 bootstrap branches: the physical replay grows with them.
    assert look["replay_physical_bytes"] > small["replay_physical_bytes"]


def test_tabular_estimate_counts_the_q_table():
    env, params = Chain(), ChainParams(length=5)
    cfg = dt.QLearningConfig(total_timesteps=100, log_every=50, twin=dt.TwinConfig(num_domains=2, action_trials=2))
    est = estimate_memory(cfg, env, params)
    assert est["agent_bytes"] == 5 * 2 * 4  # float32 Q-table [states, actions]
    assert est["replay_physical_bytes"] == 0 and est["replay_twin_bytes"] == 0
    assert est["domain_states_bytes"] > 0


def test_check_fits_passes_small_runs_and_reports_the_limit():
    est = estimate_memory(_small_dqn(), CARTPOLE, CARTPOLE_PARAMS)
    info = check_fits(est)
    assert info["fits"] is True
    assert info["limit_bytes"] > 2**26
    assert info["allowed_bytes"] == int(info["limit_bytes"] * 0.9)
    limit, source = device_memory_limit()
    assert limit == info["limit_bytes"] and source


def test_huge_buffer_raises_value_error_naming_the_numbers():
    cfg = dt.DQNConfig(buffer_size=10**11)  # 10^11 CartPole transitions: terabytes
    est = estimate_memory(cfg, CARTPOLE, CARTPOLE_PARAMS)
    limit, _ = device_memory_limit()
    assert est["total_bytes"] > limit
    with pytest.raises(ValueError) as err:
        check_fits(est)
    msg = str(err.value)
    assert str(est["total_bytes"]) in msg
    assert str(int(limit * 0.9)) in msg and str(limit) in msg
    assert "replay_physical" in msg and "buffer_size=100000000000" in msg


def test_check_fits_fraction_is_validated_and_applied():
    est = {"total_bytes": 1000, "num_seeds": 1}
    limit, _ = device_memory_limit()
    with pytest.raises(ValueError, match="fraction"):
        check_fits(est, fraction=0.0)
    tight = {"total_bytes": int(limit * 0.5) + 1, "num_seeds": 1}
    assert check_fits(tight, fraction=0.9)["fits"]
    with pytest.raises(ValueError, match="50%"):
        check_fits(tight, fraction=0.5)


def test_tree_bytes_and_format_bytes():
    tree = {"a": jax.ShapeDtypeStruct((10, 3), "float32"), "b": jax.numpy.zeros((4,), "int8"), "c": None}
    assert tree_bytes(tree) == 10 * 3 * 4 + 4
    assert tree_bytes(jax.random.split(jax.random.key(0), 5)) == 5 * 8  # typed threefry keys: 2 x uint32
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"
    assert math.isclose(float(format_bytes(3 * 2**30).split()[0]), 3.0)


def test_make_train_refuses_a_run_that_cannot_fit_before_compiling(caplog):
    cfg = dt.DQNConfig(buffer_size=10**11)
    train = dt.make_train(cfg, CARTPOLE, CARTPOLE_PARAMS)
    with pytest.raises(ValueError, match="buffer_size=100000000000") as err:
        jax.jit(train).lower(jax.random.key(0))  # fails while tracing init: nothing compiled or allocated
    assert "replay_physical" in str(err.value)
    with pytest.raises(ValueError, match="bytes"):
        train.init(jax.random.key(0))  # eager: refused before the buffer's zeros are allocated
    # Opting out (e.g. for shape-only work) lets the same program be traced.
    unchecked = dt.make_train(cfg, CARTPOLE, CARTPOLE_PARAMS, check_memory=False)
    shapes, _ = jax.eval_shape(unchecked.init, jax.random.key(0))
    assert shapes.storage.physical.size.shape == ()
    with pytest.raises(TypeError, match="check_memory"):
        dt.make_train(cfg, CARTPOLE, CARTPOLE_PARAMS, check_memory="no")


def test_a_fitting_run_logs_its_estimate(caplog):
    cfg = _small_dqn(num_domains=2, action_trials=2)
    with caplog.at_level("INFO", logger="dtrl_jax"):
        jax.eval_shape(dt.make_train(cfg, CARTPOLE, CARTPOLE_PARAMS).init, jax.random.key(0))
    lines = [r.getMessage() for r in caplog.records if "memory estimate" in r.getMessage()]
    est = estimate_memory(cfg, CARTPOLE, CARTPOLE_PARAMS)
    assert len(lines) == 1 and format_bytes(est["total_bytes"]) in lines[0] and "replay physical" in lines[0]

"""The benchmark harness: grouping by static structure, equality with single runs, the results schema."""

import jax
import numpy as np
import pytest

import dtrl_jax as dt
from benchmarks import harness
from tests.helpers import Chain, ChainParams

CHAIN = Chain()
PARAMS = ChainParams(length=5, max_steps_in_episode=30)


def ql(**kw):
    base = dict(total_timesteps=1_500, log_every=500, learning_rate=0.2, gamma=0.9, epsilon_decay_steps=800,
                eval_episodes=2)
    base.update(kw)
    return dt.QLearningConfig(**base)


ARMS = [
    harness.Arm("lr 0.2", ql()),
    harness.Arm("n=2", ql(twin=dt.TwinConfig(num_domains=2, action_trials=2))),
    harness.Arm("lr 0.5", ql(learning_rate=0.5, gamma=0.5)),
]


def test_arms_differing_in_traced_fields_share_a_program():
    assert harness.group_arms(ARMS) == [[0, 2], [1]]


@pytest.fixture(scope="module")
def runs():
    return harness.run_arms(ARMS, CHAIN, PARAMS, seeds=2, key=jax.random.key(3), progress=False)


def test_each_arm_equals_its_own_runs(runs):
    keys = jax.random.split(jax.random.key(3), 2)
    for arm in ARMS:
        single = jax.jit(jax.vmap(dt.make_train(arm.config, CHAIN, PARAMS)))(keys).metrics
        for name in ("episode_return", "eval_return", "physical_episodes", "twin_transitions"):
            np.testing.assert_allclose(runs[arm.name][name], np.asarray(single[name]), rtol=1e-5, equal_nan=True)
    assert runs["lr 0.2"]["_timing"]["group"] == runs["lr 0.5"]["_timing"]["group"]


def test_series_panel_and_schema_round_trip(runs, tmp_path):
    s = harness.series(runs["n=2"], y="eval_return")
    want = np.asarray(runs["n=2"]["eval_return"]).mean(0)
    np.testing.assert_allclose(s["mean"], want, rtol=1e-6)
    np.testing.assert_allclose(s["std"], np.asarray(runs["n=2"]["eval_return"]).std(0), rtol=1e-5, atol=1e-9)
    assert s["seeds"] == 2 and len(s["x"]) == 3
    p = harness.panel(runs, y="eval_return")
    path = harness.write("harness_test", mode="quick", config={"env": "Chain"}, summary={"ok": 1},
                         curves={"greedy": p}, out=tmp_path)
    doc = harness.load(path)
    assert doc["schema"] == harness.SCHEMA and "commit" in doc["provenance"]
    assert list(doc["curves"]["greedy"]["series"]) == ["lr 0.2", "n=2", "lr 0.5"]
    assert len(path.read_text().splitlines()) < 80  # compact: one line per curve


def test_bad_arms_are_named():
    with pytest.raises(ValueError, match="unique"):
        harness.run_arms([ARMS[0], ARMS[0]], CHAIN, PARAMS, seeds=1)
    with pytest.raises(TypeError, match="config"):
        harness.Arm("x", {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="seeds"):
        harness.run_arms(ARMS[:1], CHAIN, PARAMS, seeds=0)

"""The benchmark harness: grouping by static structure, equality with single runs, the results schema."""

import dataclasses

import jax
import numpy as np
import pytest

import dtrl_jax as dt
from benchmarks import harness
from tests.helpers import Chain, ChainParams

CHAIN = Chain()
PARAMS = ChainParams(length=5, max_steps_in_episode=30)


def ql(**kw):
    base = {"total_timesteps": 1_500, "log_every": 500, "learning_rate": 0.2, "gamma": 0.9,
            "epsilon_decay_steps": 800, "eval_episodes": 2}
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
    return harness.run_arms(ARMS, CHAIN, PARAMS, seeds=2, key=jax.random.key(3), final_eval=3, progress=False)


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


def test_final_eval_is_the_trained_agents_greedy_evaluation(runs):
    arm = ARMS[0]
    ev = runs[arm.name]["_final_eval"]
    assert ev["return"].shape == ev["length"].shape == ev["violations"].shape == (2, 3)
    train = dt.make_train(arm.config, CHAIN, PARAMS)
    keys = jax.random.split(jax.random.key(3), 2)
    eval_keys = jax.random.split(jax.random.fold_in(jax.random.key(3), harness.EVAL_STREAM), 2)

    def reference(k, k_eval):  # train, then evaluate the final agent on the evaluation stream
        res = dt.evaluate(k_eval, train.agent, train(k).runner_state.agent_state, CHAIN, PARAMS, 3)
        return res.returns, res.lengths

    returns, lengths = jax.jit(jax.vmap(reference))(keys, eval_keys)
    np.testing.assert_allclose(ev["return"], np.asarray(returns), rtol=1e-6)
    np.testing.assert_array_equal(ev["length"], np.asarray(lengths))
    with pytest.raises(ValueError, match="final_eval"):
        harness.run_arms([arm], CHAIN, PARAMS, seeds=1, final_eval=-1)


def test_run_phased_equals_run_arms_and_physical_part(runs):
    # Physical params are arguments of the phased program: in-loop evaluation needs a static bound.
    arms = [dataclasses.replace(a, config=a.config.replace(eval_max_steps=PARAMS.max_steps_in_episode))
            for a in (ARMS[0], ARMS[2])]
    phased = harness.run_phased(arms, CHAIN, PARAMS, seeds=2, phases=[1, 2], key=jax.random.key(3),
                                with_twin_params=False, progress=False)
    for arm in arms:  # chunked (1 + 2 intervals) = one run, on the same seed keys
        for name in ("episode_return", "physical_steps", "eval_return"):
            np.testing.assert_allclose(phased[arm.name][name], runs[arm.name][name], rtol=1e-5, equal_nan=True)
    late = harness.Arm("late", arms[0].config, physical_from=1)
    part = harness.physical_part({"late": phased["lr 0.2"]}, [late], budget=2, log_every=500)["late"]
    np.testing.assert_allclose(part["episode_return"], runs["lr 0.2"]["episode_return"][:, 1:3], equal_nan=True)
    assert part["physical_steps"][0].tolist() == [500.0, 1000.0]
    with pytest.raises(ValueError, match="one program structure"):
        harness.run_phased(ARMS, CHAIN, PARAMS, seeds=1, phases=[3])


def test_summary_helpers_against_numpy():
    cum = np.array([[1.0, 3.0, 6.0, 10.0]])
    steps = np.array([[10.0, 20.0, 30.0, 40.0]])
    np.testing.assert_allclose(harness.window_rate(cum, steps, 0.5, 1.0), [(10 - 3) / 20 * 1000])
    d = harness.paired([3.0, 5.0], [1.0, 1.0])
    assert d == {"mean": 3.0, "std": 1.0, "per_seed": [2.0, 4.0]}
    r = harness.returns_summary({"episode_return": np.array([[1.0, np.nan, 3.0, 5.0]])})
    assert r["final_return"]["mean"] == 5.0 and r["mean_return"]["mean"] == 3.0


def test_dtrl_plot_reads_the_schema_and_names_old_files(runs, tmp_path):
    from dtrl_jax.experiment import plotting
    from dtrl_jax.experiment.cli import main

    assert plotting.RESULTS_SCHEMA == harness.SCHEMA
    path = harness.write("bench", mode="quick", config={}, summary={},
                         curves={"greedy": harness.panel(runs, y="eval_return"),
                                 "steps": harness.panel(runs, y="episode_return", x="physical_steps")}, out=tmp_path)
    fig = plotting.plot_results(path, tmp_path / "b.png")
    ax = fig.axes[0]
    assert ax.get_title() == "greedy" and len(ax.get_lines()) == len(ARMS)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), harness.series(runs["lr 0.2"])["mean"], rtol=1e-5)
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert main(["plot", str(path), "--out", str(tmp_path / "c.png")]) == 0
    old = tmp_path / "old.json"
    old.write_text('{"agents": {}}')
    with pytest.raises(ValueError, match="written before the benchmark harness"):
        plotting.read_results(old)
    assert main(["plot", str(old), "--out", str(tmp_path / "d.png")]) == 2


def test_probe_and_seed_keys_keep_the_program(runs):
    """``probe`` (init + scan of run) and explicit ``seed_keys`` give the same runs as ``train(key)``."""
    keys = jax.random.split(jax.random.key(3), 2)
    probed = harness.run_arms(ARMS[:1], CHAIN, PARAMS, seeds=1, seed_keys=keys[1:], progress=False,
                              probe=lambda s: {"q_sum": s.q.sum()})
    for name in ("episode_return", "eval_return", "physical_episodes"):
        np.testing.assert_allclose(probed["lr 0.2"][name], runs["lr 0.2"][name][1:], rtol=1e-6, equal_nan=True)
    assert probed["lr 0.2"]["q_sum"].shape == (1, 3)
    # the probe reads the Q-table after each interval: its last value is the final table's
    single = jax.jit(dt.make_train(ARMS[0].config, CHAIN, PARAMS))(keys[1])
    np.testing.assert_allclose(probed["lr 0.2"]["q_sum"][0, -1], float(single.runner_state.agent_state.q.sum()),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="seed_keys"):
        harness.run_arms(ARMS[:1], CHAIN, PARAMS, seeds=2, seed_keys=keys[:1], progress=False)


def test_points_panel_groups_and_sorts_rows():
    rows = [{"case": "a", "d": 4, "r": 2.0}, {"case": "a", "d": 1, "r": 1.0, "sd": None}, {"case": "b", "d": 1, "r": None},
            {"case": "b", "d": 2, "r": 5.0, "sd": 0.5}, {"case": None, "d": 8, "r": 9.0}]
    p = harness.points_panel(rows, x="d", y="r", series_of=lambda r: r["case"], std="sd")
    assert list(p["series"]) == ["a", "b"]
    assert p["series"]["a"] == {"x": [1.0, 4.0], "mean": [1.0, 2.0], "std": [0.0, 0.0], "seeds": 1}
    assert p["series"]["b"]["x"] == [2.0] and p["series"]["b"]["std"] == [0.5]

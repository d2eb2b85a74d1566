"""Run folders and checkpoints: resume is bit for bit, bad checkpoints fail clearly or fall back."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import dtrl_jax as dt
from dtrl_jax.experiment import runs
from dtrl_jax.experiment.cli import main
from dtrl_jax.envs import register, registered_envs
from tests.helpers import Chain, ChainParams, tree_equal

ENV_ID = "TestChain-v0"


@pytest.fixture(scope="module", autouse=True)
def chain_registered():
    """A tiny registered env (fast to compile) for this module only."""
    from dtrl_jax.envs import registry

    added = ENV_ID not in registered_envs()
    if added:
        register(ENV_ID, lambda **kw: (Chain(), ChainParams(**kw)), "5-state chain from tests/helpers.py")
    yield
    if added:
        registry.unregister(ENV_ID)


CFG = dt.QLearningConfig(
    total_timesteps=40, log_every=10, learning_rate=0.3, gamma=0.9, epsilon_decay_steps=30,
    twin=dt.TwinConfig(num_domains=2, action_trials=2),
)
SPEC = runs.RunSpec(ENV_ID, CFG, {"max_steps_in_episode": 12}, seed=3, seeds=2)


class Crash(Exception):
    pass


def crash_after(interval):
    def hook(i):
        if i >= interval:
            raise Crash(i)

    return hook


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    metrics, runner = runs.train_run(run_dir, SPEC, checkpoint_every=10, plot=False)
    return run_dir, metrics, runner


def test_reference_run_folder(reference):
    run_dir, metrics, runner = reference
    doc = json.loads((run_dir / "config.json").read_text())
    assert doc["env_id"] == ENV_ID and doc["agent"] == "ql" and doc["seeds"] == 2 and doc["seed"] == 3
    assert doc["env_params"] == {"max_steps_in_episode": 12}
    assert doc["config"]["twin"]["action_trials"] == 2
    assert doc["config_hash"] == SPEC.hash()
    assert doc["versions"]["jax"] == jax.__version__ and doc["device"]["platform"]
    assert runs.RunSpec.from_json(doc) == SPEC
    assert metrics["episode_return"].shape == (2, 4)
    back = runs.read_metrics(run_dir)
    for name, value in metrics.items():
        np.testing.assert_array_equal(back[name], value.astype(np.float64))
    assert [i for i, _ in runs.list_checkpoints(run_dir)] == [3, 4]
    # Chunking does not matter: one chunk (checkpoint only at the end) gives the same bits.
    one_chunk, one_runner = runs.train_run(run_dir.parent / "one", SPEC, plot=False)
    assert tree_equal(one_chunk, metrics) and tree_equal(one_runner, runner)
    # The folder's runs equal the fused train(key): the state bit for bit, the metrics up to the
    # last float bit of the interval-mean loss (XLA fuses that division differently).
    env, params = SPEC.make_env()
    fused = jax.jit(jax.vmap(dt.make_train(CFG, env, params)))(SPEC.keys())
    assert tree_equal(fused.runner_state, runner)
    for name, value in metrics.items():
        np.testing.assert_allclose(np.asarray(fused.metrics[name]), value, rtol=1e-6)


def test_resume_is_bit_for_bit(reference, tmp_path):
    _, ref_metrics, ref_runner = reference
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        runs.train_run(run_dir, SPEC, checkpoint_every=10, on_checkpoint=crash_after(2), plot=False)
    assert [i for i, _ in runs.list_checkpoints(run_dir)] == [1, 2]
    assert runs.read_metrics(run_dir)["episode_return"].shape == (2, 2)
    metrics, runner = runs.train_run(run_dir, resume=True, plot=False)
    assert tree_equal(metrics, ref_metrics)
    assert tree_equal(runner, ref_runner)
    assert (run_dir / "metrics.csv").read_bytes() == (reference[0] / "metrics.csv").read_bytes()


def _state_files(ckpt):
    return sorted(p for p in (ckpt / "state").rglob("*") if p.is_file() and p.stat().st_size > 0)


def test_truncated_latest_falls_back_with_warning(reference, tmp_path):
    _, ref_metrics, _ = reference
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        runs.train_run(run_dir, SPEC, checkpoint_every=10, keep=3, on_checkpoint=crash_after(3), plot=False)
    latest = runs.checkpoint_path(run_dir, 3)
    for f in _state_files(latest):  # an interrupted copy: every array file cut in half
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    warned = []
    metrics, _ = runs.train_run(run_dir, resume=True, warn=warned.append, plot=False)
    assert any("unreadable" in w and "previous" in w for w in warned), warned
    assert tree_equal(metrics, ref_metrics)


def test_corrupt_and_mismatched_checkpoints(reference, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        runs.train_run(run_dir, SPEC, checkpoint_every=10, on_checkpoint=crash_after(2), plot=False)
    path = runs.checkpoint_path(run_dir, 2)
    good = tmp_path / "good"
    shutil.copytree(path, good)
    env, params = SPEC.make_env()
    template = jax.eval_shape(jax.vmap(dt.make_train(CFG, env, params).init), SPEC.keys())[0]

    # Readable arrays that are not the ones saved (bit rot, a copied-over folder): the checksum fails.
    _, runner, metrics = runs.read_checkpoint(path, SPEC, template)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    changed = runner.replace(agent_state=jax.tree.map(lambda q: q + 1.0, runner.agent_state))
    other = runs.save_checkpoint(other_dir, SPEC, 2, changed, metrics)
    shutil.rmtree(path / "state")
    shutil.copytree(other / "state", path / "state")
    with pytest.raises(runs.CheckpointError, match="corrupt"):
        runs.read_checkpoint(path, SPEC, template)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "corrupt" in err and "Traceback" not in err

    with pytest.raises(runs.CheckpointError, match="not a dtrl checkpoint"):
        runs.read_checkpoint(tmp_path / "nothing-here", SPEC, template)

    shutil.rmtree(path)
    shutil.copytree(good, path)
    other = runs.RunSpec(ENV_ID, CFG.replace(gamma=0.5), SPEC.env_params, seed=3, seeds=2)
    with pytest.raises(runs.CheckpointError, match="different config"):
        runs.read_checkpoint(path, other, template)

    # A checkpoint with the right hash but a state of another shape (e.g. written by other code).
    stored = runs._stored_shapes(template)  # typed PRNG keys as their uint32 key data
    wrong = jax.tree.map(lambda x: np.zeros((3,) + x.shape[1:], x.dtype), stored)
    runs.save_checkpoint(run_dir, SPEC, 2, wrong, {"episode_return": np.zeros((3, 2))})
    with pytest.raises(runs.CheckpointError, match="shape"):
        runs.read_checkpoint(path, SPEC, template)

    # An edited config.json is caught before any checkpoint is read.
    doc = json.loads((run_dir / "config.json").read_text())
    doc["config"]["gamma"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(doc))
    with pytest.raises(runs.RunError, match="edited"):
        runs.load_run(run_dir)


def test_metrics_csv_is_appended_every_interval(reference, tmp_path):
    """A crash mid-chunk leaves every finished interval in metrics.csv (no --checkpoint-every needed)."""
    run_dir = tmp_path / "run"
    seen = []

    def crash_at_third_interval(row):
        seen.append(runs.read_metrics(run_dir)["physical_steps"].shape[1])
        if len(seen) == 3:
            raise Crash()

    with pytest.raises(Exception):  # the error surfaces from inside the compiled program's callback
        runs.train_run(run_dir, SPEC, on_interval=crash_at_third_interval, plot=False)
    assert seen[:3] == [1, 2, 3]  # each row was on disk when the hook saw it
    back = runs.read_metrics(run_dir)
    np.testing.assert_array_equal(back["episode_return"][:, :3], reference[1]["episode_return"][:, :3])


def test_extend_a_finished_run_records_lineage(reference, tmp_path):
    _, ref_metrics, _ = reference
    run_dir = tmp_path / "run"
    runs.train_run(run_dir, SPEC, checkpoint_every=20, plot=False)
    status = runs.RunStatus()
    runs.train_run(run_dir, resume=True, status=status, plot=False)
    assert status.already_complete
    longer = runs.RunSpec(ENV_ID, CFG.replace(total_timesteps=60), SPEC.env_params, seed=3, seeds=2)
    status = runs.RunStatus()
    metrics, _ = runs.train_run(run_dir, longer, resume=True, status=status, plot=False)
    assert status.extended_from == SPEC.hash() and status.start_interval == 4
    assert metrics["episode_return"].shape == (2, 6)
    assert tree_equal({k: v[:, :4] for k, v in metrics.items()}, ref_metrics)  # the first 4 intervals are kept
    doc = json.loads((run_dir / "config.json").read_text())
    assert doc["config_hash"] == longer.hash() and doc["lineage"][0]["config_hash"] == SPEC.hash()
    assert doc["lineage"][0]["intervals"] == 4
    # the extension equals one 60-step run whose first 40 steps had the old config: here the configs
    # differ only in total_timesteps and the explicit epsilon schedule, so it equals a 60-step run
    fresh, _ = runs.train_run(tmp_path / "fresh", longer, plot=False)
    assert tree_equal(fresh, metrics)
    other_env = runs.RunSpec(ENV_ID, CFG.replace(total_timesteps=60), {"max_steps_in_episode": 9}, seed=3, seeds=2)
    with pytest.raises(runs.RunError, match="keeps its env params"):
        runs.train_run(run_dir, other_env, resume=True, plot=False)


def test_keep_and_checkpoint_every_validation(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="multiple of log_every"):
        runs.train_run(run_dir, SPEC, checkpoint_every=15)
    with pytest.raises(runs.RunError, match="not a run folder"):
        runs.load_run(tmp_path / "nothing")


def test_config_round_trip():
    cfg = dt.DQNConfig(hidden_sizes=(8, 4), twin=dt.TwinConfig(num_domains=3, twin_data_fraction=0.25))
    back = runs.config_from_dict("dqn", json.loads(json.dumps(runs.config_to_dict(cfg))))
    assert back == cfg and isinstance(back.hidden_sizes, tuple)
    spec = runs.RunSpec("MultiUAV-v0", cfg, {"num_uavs": 2}, seeds=4)
    assert runs.RunSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.hash() != runs.RunSpec("MultiUAV-v0", cfg, {"num_uavs": 3}, seeds=4).hash()

"""The ``dtrl`` command line, the progress bar and the plots (tiny settings: the whole file is fast)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dtrl_jax as dt
from dtrl_jax.experiment import cli, runs
from dtrl_jax.experiment.cli import main
from dtrl_jax.experiment.plotting import curve
from dtrl_jax.experiment.progress import ProgressBar
from tests.helpers import CHAIN_ID, TINY_CLI_RUN, chain_env_registered

ROOT = Path(__file__).resolve().parents[2]
AP = "AccessPointSelection-v0"
TINY_AP = ["--total-timesteps", "1000", "--log-every", "250", "--epsilon-decay-steps", "500"]
CHAIN, TINY = CHAIN_ID, TINY_CLI_RUN


@pytest.fixture(scope="module", autouse=True)
def chain_registered():
    """A tiny registered env (fast to compile) for this module only."""
    with chain_env_registered():
        yield


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dtrl_jax.experiment.cli", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


# ------------------------------------------------------------------------------------ subprocess
def test_help_and_console_script():
    out = run_cli("--help")
    assert out.returncode == 0
    for word in ("train", "eval", "plot", "bench", "envs", "examples:"):
        assert word in out.stdout
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("dtrl") == "dtrl_jax.experiment.cli:main"


def test_bad_value_is_one_line_exit_2_subprocess():
    out = run_cli("train", AP, "--gamma", "2")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "gamma" in lines[0] and "Traceback" not in out.stderr


# ------------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", AP, "--no-such-flag"], "unrecognized"),
        (["train", AP, "--gamma", "1.5"], "gamma"),
        (["train", AP, "--total-timesteps", "abc"], "--total-timesteps"),
        (["train", AP, "--total-timesteps", "1001", "--log-every", "500"], "total_timesteps"),
        (["train", AP, "--agent", "ql", "--buffer-size", "100"], "--buffer-size"),
        (["train", AP, "--hidden-sizes", "8,x"], "--hidden-sizes"),
        (["train", AP, "--action-trials", "9", "--num-domains", "9"], "action_trials"),
        (["train", AP, "--action-trials", "3"], "num_domains"),
        (["train", AP, "--env-param", "nope=1"], "nope"),
        (["train", AP, "--env-param", "missing_equals"], "NAME=VALUE"),
        (["train", AP, "--env-param", "max_steps_in_episode=1.5"], "max_steps_in_episode"),
        (["train", "NoSuchEnv-v9"], "unknown environment"),
        (["train"], "environment id"),
        (["train", AP, *TINY_AP, "--checkpoint-every", "300"], "multiple of --log-every"),
        (["train", "MultiUAV-v0", "--agent", "ql"], "Discrete observation"),
        (["train", "CartPole-v1", "--buffer-size", "100000000000"], "buffer_size=100000000000"),
        (["train", "--resume", "somewhere", "--env-param", "a=1"], "--resume"),
        (["plot"], "RUN_DIR"),
        (["bench", "no_such_benchmark"], "unknown benchmark"),
        (["eval", "x", "--episodes", "0"], "--episodes"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_in_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert err.startswith("dtrl: error:")


def test_every_config_field_is_a_typed_flag():
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    options = {opt for action in train._actions for opt in action.option_strings}
    for cls in (dt.QLearningConfig, dt.DQNConfig, dt.TwinConfig):
        for f in dataclasses.fields(cls):
            if f.name != "twin":
                assert "--" + f.name.replace("_", "-") in options, f.name
    args = train.parse_args(["X", "--agent", "dqn", "--hidden-sizes", "8,4", "--double-q", "--total-timesteps",
                             "1e5", "--log-every", "1_000", "--twin-data-fraction", "none", "--lookahead", "3",
                             "--num-domains", "2", "--no-average-rollouts", "--state-noise-std", "0.1"])
    cfg = cli.build_config("dqn", args)
    assert cfg.hidden_sizes == (8, 4) and cfg.double_q is True and cfg.total_timesteps == 100_000
    assert cfg.log_every == 1000 and cfg.twin.twin_data_fraction is None and cfg.twin.lookahead == 3
    assert cfg.twin.average_rollouts is False and cfg.twin.state_noise_std == 0.1
    assert cli.build_config("ql", train.parse_args(["X"])).twin is None
    assert cli.build_config("ql", train.parse_args(["X", "--twin"])).twin == dt.TwinConfig()
    assert cli.parse_env_params("MultiUAV-v0", ["num_uavs=2", "resample_users=true", "bandwidth_hz=1e5"]) == {
        "num_uavs": 2, "resample_users": True, "bandwidth_hz": 1e5}


def test_envs_and_bench_listing(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for env_id in dt.registered_envs():
        assert env_id in out
    assert main(["bench"]) == 0
    assert "env_throughput" in capsys.readouterr().out
    assert main(["--version"]) == 0


def test_bench_runs_the_module(capsys):
    assert main(["bench", "env_throughput", "--help"]) == 0


# ------------------------------------------------------------------------- train / plot / eval
@pytest.fixture(scope="module")
def chain_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    first, second = base / "first", base / "second"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", CHAIN, *TINY, "--seeds", "2", "--num-domains", "2", "--action-trials", "2",
                     "--checkpoint-every", "20", "--out", str(first)]) == 0
    (base / "first.stderr").write_text(err.getvalue())
    assert main(["train", CHAIN, *TINY, "--seeds", "2", "--num-domains", "2", "--action-trials", "2",
                 "--checkpoint-every", "20", "--seed", "7", "--out", str(second), "--no-progress"]) == 0
    return first, second


def test_train_writes_a_run_folder(chain_runs, capsys):
    first, _ = chain_runs
    err = (first.parent / "first.stderr").read_text()
    assert "dtrl train: TestChain-v0" in err and "40/40" in err and "steps/s" in err  # header + progress
    doc = json.loads((first / "config.json").read_text())
    assert doc["config"]["twin"]["action_trials"] == 2 and doc["seeds"] == 2 and doc["checkpoint_every"] == 20
    assert doc["env_params"] == {"max_steps_in_episode": 12} and doc["agent"] == "ql"
    assert doc["command"][:3] == ["dtrl", "train", CHAIN]
    rows = (first / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("seed,interval,physical_steps") and len(rows) == 1 + 2 * 4
    assert (first / "curves.png").stat().st_size > 1000
    assert [i for i, _ in runs.list_checkpoints(first)] == [2, 4]
    assert "compiling the training program" in err and "(compile " in err and "final epsilon" in err
    assert "2 seeds (base seed 0" in err
    # a second train into the same folder is refused; resume of a finished run says it is complete
    assert main(["train", CHAIN, *TINY, "--out", str(first)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(first), "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().err


def test_plot_overlays_runs(chain_runs, tmp_path, capsys):
    first, second = chain_runs
    out = tmp_path / "cmp.png"
    assert main(["plot", str(first), str(second), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert main(["plot", str(first), "--out", str(tmp_path / "s.png"), "--x", "steps", "--metric", "loss",
                 "--label", "twin"]) == 0
    assert main(["plot", str(first), "--metric", "nope", "--out", str(tmp_path / "n.png")]) == 2
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "n.png")]) == 1
    capsys.readouterr()


def test_eval_greedy_returns(chain_runs, capsys):
    first, _ = chain_runs
    assert main(["eval", str(first), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "seed 0" in out and "seed 1" in out
    doc = json.loads((first / "eval.json").read_text())
    assert np.asarray(doc["returns"]).shape == (2, 2) and np.asarray(doc["finished"]).all()
    assert main(["eval", str(first), "--render"]) == 2  # not a UAV env


def test_eval_render_uav(tmp_path, capsys):
    """--render / --gif on a MultiUAV run folder (an untrained agent: training is tested above)."""
    import jax

    from dtrl_jax.experiment import runs

    cfg = dt.DQNConfig(total_timesteps=8, log_every=8, num_envs=1, buffer_size=8, batch_size=4,
                       learning_starts=4, hidden_sizes=(8,))
    spec = runs.RunSpec("MultiUAV-v0", cfg, {"num_uavs": 1, "num_users": 3, "max_steps_in_episode": 8})
    run = runs.create_run(tmp_path / "uav", spec)
    env, params = spec.make_env()
    runner, _ = jax.jit(jax.vmap(dt.make_train(cfg, env, params).init))(spec.keys())
    runs.save_checkpoint(run, spec, cfg.num_intervals, runner, {})
    assert main(["eval", str(run), "--episodes", "1", "--gif"]) == 0
    from PIL import Image

    assert Image.open(run / "episode.png").size[0] > 100
    assert Image.open(run / "episode.gif").n_frames > 2
    assert "episode picture" in capsys.readouterr().out


# ------------------------------------------------------------------------------ progress / plots
def test_progress_bar_lines():
    stream = io.StringIO()
    bar = ProgressBar(300, seeds=2, stream=stream, label="X", min_interval_s=0.0)
    for i, ret in enumerate([[np.nan, np.nan], [1.0, 3.0], [np.nan, np.nan]], start=1):
        bar.update({"physical_steps": np.array([100 * i] * 2), "physical_episodes": np.array([i, i + 2]),
                    "episode_return": np.array(ret)})
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "100%" in lines[-1] and "300/300" in lines[-1]
    assert "return -" in lines[0] and "return 2" in lines[-1]  # last finite mean return is kept
    assert "steps/s" in lines[-1]
    quiet = io.StringIO()
    ProgressBar(10, stream=quiet, enabled=False).update({"physical_steps": 10})
    assert quiet.getvalue() == ""


def test_graceful_stop():
    import signal

    from dtrl_jax.experiment.progress import GracefulStop, Stopped

    said = []
    with GracefulStop(said.append, chunked=True, total=4) as stop:
        assert signal.getsignal(signal.SIGINT) == stop._handler
        stop.check(1)  # nothing requested yet
        stop._handler(signal.SIGINT, None)  # first Ctrl-C
        assert said and "next checkpoint" in said[0]
        stop.check(4)  # the run is complete: no reason to stop
        with pytest.raises(Stopped):
            stop.check(2)
        with pytest.raises(KeyboardInterrupt):
            stop._handler(signal.SIGINT, None)  # second Ctrl-C
    assert signal.getsignal(signal.SIGINT) != stop._handler


def test_curve_mean_and_band():
    m = {"physical_episodes": np.array([[1, 2, 3], [1, 2, 5]]),
         "episode_return": np.array([[np.nan, 1.0, 2.0], [np.nan, 3.0, np.nan]])}
    x, mean, std = curve(m)
    np.testing.assert_allclose(x, [2.0, 4.0])
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(std, [1.0, 0.0])

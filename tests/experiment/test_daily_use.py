"""Daily use (issue 21): typed flags, did-you-mean, config files, own envs, gymnax ids, trackers,
fast startup, sharded checkpoints. Tiny settings; the training runs use the 5-state chain."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import dtrl_jax as dt
from dtrl_jax.experiment import cli, runs, tracking
from dtrl_jax.experiment.cli import main
from tests.helpers import CHAIN_ID, TINY_CLI_RUN, chain_env_registered, subprocess_env

ROOT = Path(__file__).resolve().parents[2]
AP = "AccessPointSelection-v0"
CHAIN, TINY = CHAIN_ID, TINY_CLI_RUN


@pytest.fixture(scope="module", autouse=True)
def chain_registered():
    """A tiny registered env (fast to compile) for this module only."""
    with chain_env_registered():
        yield


def err_of(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def train_parser():
    return cli.build_parser()._subparsers._group_actions[0].choices["train"]


# ------------------------------------------------------------------------------------ flag types
def test_window_flags_parse_to_typed_tuples():
    args = train_parser().parse_args(["X", "--outage-windows", "100:200,300:400", "--burst-windows", "100:200:0.5"])
    cfg = cli.build_config("ql", args)
    assert cfg.twin.outage_windows == ((100, 200), (300, 400))
    assert cfg.twin.burst_windows == ((100, 200, 0.5),)
    assert cli.parse_windows("((100, 200),)") == ((100, 200),) and cli.parse_windows("(5, 9)") == ((5, 9),)
    assert cli.parse_windows("none") == () and cli.parse_windows("") == ()
    with pytest.raises(ValueError, match="START:END"):
        cli.parse_windows("100:x")


@pytest.mark.parametrize("argv, needle", [
    (["train", AP, "--outage-windows", "100:200:3"], "expected (start, end)"),
    (["train", AP, "--burst-windows", "100:200"], "expected (start, end, std)"),
    (["train", AP, "--outage-windows", "100:x"], "--outage-windows"),
    (["train", AP, "--learning-rat", "0.1"], "did you mean '--learning-rate'"),  # no abbreviations
    (["train", AP, "--agent", "dqn", "--network", "mpl"], "did you mean 'mlp'"),
    (["train", AP, "--loss", "l1"], "choose from 'mse', 'huber'"),
    (["train", AP, "--lookahead-policy", "x"], "choose from 'greedy', 'epsilon'"),
    (["train", "AccessPointSelection-v1"], "did you mean 'AccessPointSelection-v0'"),
    (["trian"], "did you mean 'train'"),
    (["bench", "env_throughpt"], "did you mean 'env_throughput'"),
    (["train", AP, "--log", "tensorbord"], "did you mean 'tensorboard'"),
    (["train", AP, "--seeds", "0"], "how many"),
    (["train", "--resume", "x", "--seeds", "2"], "--resume keeps the run's --seeds"),
    (["train", "--config", "/no/such/file.json"], "--config"),
])
def test_usage_errors_name_the_fix(argv, needle, capsys):
    code, err = err_of(argv, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_num_seeds_alias_and_help_texts():
    args = train_parser().parse_args(["X", "--num-seeds", "3", "--seed", "5"])
    assert args.seeds == 3 and args.seed == 5
    text = train_parser().format_help()
    assert "HOW MANY seeds" in text and "BASE seed" in text and "{mlp,cnn,gru}" in text


def test_twin_without_a_feature_warns():
    assert "plain physical RL" in cli.twin_feature_warning(dt.QLearningConfig(twin=dt.TwinConfig(num_domains=8)))
    assert cli.twin_feature_warning(dt.QLearningConfig(twin=dt.TwinConfig(num_domains=2, action_trials=2))) is None
    assert cli.twin_feature_warning(dt.QLearningConfig()) is None


# -------------------------------------------------------------------------------- env crossover
def test_make_falls_back_to_gymnax_and_our_ids_are_in_gymnax():
    import gymnax

    env, params = dt.make("CartPole-v1", max_steps_in_episode=7)
    assert params.max_steps_in_episode == 7
    assert AP in gymnax.registered_envs and CHAIN in gymnax.registered_envs
    env, params = gymnax.make(AP)
    assert type(env).__name__ == "AccessPointSelection"
    env, params = gymnax.make("MultiUAV-v0", num_uavs=2)
    assert params.num_uavs == 2 and env.num_actions == dt.make("MultiUAV-v0", num_uavs=2)[0].num_actions
    with pytest.raises(ValueError, match="did you mean 'CartPole-v1'"):
        dt.make("CartPole-v2")


def test_gymnax_registration_happens_whatever_the_import_order():
    code = ("import dtrl_jax, sys; assert 'gymnax' not in sys.modules; import gymnax; "
            "env, p = gymnax.make('EdgeTaskScheduling-v0'); print(type(env).__name__)")
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "EdgeTaskScheduling" in out.stdout, out.stderr[-2000:]


def test_envs_gymnax_lists_only_trainable_ids(capsys):
    assert main(["envs", "--gymnax"]) == 0
    out = capsys.readouterr().out
    listed = out.split("accepted by `dtrl train`):")[1]
    assert "CartPole-v1" in listed and "Pendulum-v1" not in listed and "MountainCarContinuous-v0" not in listed
    assert AP not in listed  # ours are listed above, once


def test_startup_does_not_import_jax():
    code = ("import sys, io, contextlib; from dtrl_jax.experiment.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help']); main(['envs']); main(['bench'])\n"
            "print('jax' in sys.modules, 'flax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout + out.stderr[-2000:]


# ---------------------------------------------------------------------- config files / factories
def test_config_file_json_yaml_and_a_runs_config_json(tmp_path, capsys):
    spec_json = {"env": CHAIN, "agent": "ql", "seeds": 2, "env_params": {"max_steps_in_episode": 12},
                 "config": {"total_timesteps": 40, "log_every": 10, "epsilon_decay_steps": 30,
                            "twin": {"num_domains": 2, "action_trials": 2}}}
    (tmp_path / "a.json").write_text(json.dumps(spec_json))
    args = train_parser().parse_args(["--config", str(tmp_path / "a.json"), "--learning-rate", "0.3"])
    spec = cli._new_spec(args)
    assert spec.env_id == CHAIN and spec.seeds == 2 and spec.config.learning_rate == 0.3
    assert spec.config.twin.action_trials == 2 and spec.env_params == {"max_steps_in_episode": 12}
    (tmp_path / "b.yaml").write_text(textwrap.dedent(f"""\
        env: {CHAIN}
        seeds: 1
        total_timesteps: 40
        log_every: 10
        twin:
          num_domains: 2
          outage_windows: [[10, 20]]
        """))
    spec = cli._new_spec(train_parser().parse_args(["--config", str(tmp_path / "b.yaml"), "--seeds", "3"]))
    assert spec.seeds == 3 and spec.config.twin.outage_windows == ((10, 20),)
    (tmp_path / "bad.yaml").write_text("env: X\nlearning_rte: 0.1\n")
    code, err = err_of(["train", "--config", str(tmp_path / "bad.yaml")], capsys)
    assert code == 2 and "did you mean 'learning_rate'" in err
    # a run's own config.json repeats it; flags override
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "a.json"), "--out", str(run), "--no-progress"]) == 0
    again = cli._new_spec(train_parser().parse_args(["--config", str(run / "config.json")]))
    assert again == runs.load_run(run)[0]
    capsys.readouterr()


def test_train_a_package_module_factory(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_envs.py").write_text(textwrap.dedent("""\
        from tests.helpers import Chain, ChainParams

        def make_chain(**kw):
            return Chain(), ChainParams(**kw)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    assert main(["train", "my_envs:make_chain", *TINY, "--out", str(run), "--no-progress"]) == 0
    assert runs.load_run(run)[0].env_id == "my_envs:make_chain"
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    code, err = err_of(["train", "my_envs:nope"], capsys)
    assert code == 2 and "no attribute 'nope'" in err


def test_bench_writes_to_the_callers_directory(tmp_path):
    assert cli.bench_args(["--quick"], tmp_path) == ["--quick", "--out", str(tmp_path.resolve())]
    assert cli.bench_args(["--out", "res"], tmp_path) == ["--out", str((tmp_path / "res").resolve())]
    assert cli.bench_args(["--out=/abs"], tmp_path) == ["--out=/abs"]
    assert cli.bench_args(["--help"], tmp_path) == ["--help"]


# ------------------------------------------------------------------------------------- trackers
def read_tfevents(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of a TensorBoard event file: TFRecord framing (CRCs checked) + the Event proto."""
    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto import event_pb2

    def masked(data):
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    data, pos, out = path.read_bytes(), 0, {}
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked(header)
        body = data[pos + 12:pos + 12 + length]
        assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == masked(body)
        pos += 16 + length
        event = event_pb2.Event.FromString(body)
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_log_matches_metrics_csv(tmp_path):
    pytest.importorskip("tensorboardX")
    run = tmp_path / "run"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", CHAIN, *TINY, "--seeds", "2", "--out", str(run), "--log", "tensorboard"]) == 0
    files = list((run / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars = read_tfevents(files[0])
    metrics = runs.read_metrics(run)
    steps = [s for s, _ in scalars["train/physical_episodes"]]
    assert steps == [10, 20, 30, 40]
    np.testing.assert_allclose([v for _, v in scalars["train/physical_episodes"]],
                               metrics["physical_episodes"].mean(axis=0), rtol=1e-6)
    seed1 = [v for _, v in scalars["seed1/episode_return"]]
    finite = metrics["episode_return"][1][np.isfinite(metrics["episode_return"][1])]
    np.testing.assert_allclose(seed1, finite, rtol=1e-6)


def test_wandb_sink_logs_rows(tmp_path, monkeypatch):
    """Against a stand-in ``wandb`` module (wandb itself is optional and not installed in CI)."""
    logged = []

    class Run:
        def log(self, values, step):
            logged.append((step, values))

        def finish(self):
            logged.append("finished")

    fake = types.SimpleNamespace(init=lambda **kw: logged.append(kw) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    (sink,) = tracking.make_trackers(["wandb"], tmp_path, {"env_id": "X"})
    sink({"physical_steps": np.array([10, 10]), "episode_return": np.array([1.0, 3.0]),
          "eval_return": np.array([np.nan, np.nan])})
    sink.close()
    assert logged[0]["config"] == {"env_id": "X"}
    step, values = logged[1]
    assert step == 10 and values["train/episode_return"] == 2.0 and values["seed1/episode_return"] == 3.0
    assert "eval/return" not in values and logged[-1] == "finished"


# ------------------------------------------------------------------------------ plots / final line
def test_plot_draws_the_greedy_curve_when_present(tmp_path):
    from dtrl_jax.experiment.plotting import plot_runs

    run = tmp_path / "run"
    run.mkdir()
    runs.write_metrics_csv(run / "metrics.csv", {
        "physical_steps": np.array([[10, 20, 30]] * 2), "physical_episodes": np.array([[1, 2, 3]] * 2),
        "episode_return": np.array([[1.0, 2.0, 3.0]] * 2), "eval_return": np.array([[5.0, 6.0, 7.0]] * 2)})
    fig = plot_runs([run], tmp_path / "c.png")
    lines = fig.axes[0].get_lines()
    assert [ln.get_linestyle() for ln in lines] == ["-", "--"]
    np.testing.assert_allclose(lines[0].get_ydata(), [5, 6, 7])
    assert "greedy" in fig.axes[0].get_ylabel()
    line = cli.final_line({k: v for k, v in runs.read_metrics(run).items()}, 3.0, 1.0)
    assert "last greedy return 7" in line and "(compile 1.0 s)" in line


# ----------------------------------------------------------------------------------- checkpoints
def test_sharded_checkpoint_on_8_devices():
    env = subprocess_env(extra_xla_flags="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "tests.sharded_checkpoint_check"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])
    assert r == {"leaf_devices": 8, "interval": 1, "bit_for_bit": True, "restored_sharded": True, "metrics": True,
                 "single_device_equal": True}


# ------------------------------------------------------------------------------------- renderers
@pytest.mark.parametrize("env_id, env_params, picture", [
    ("AccessPointSelection-v0", {"max_steps_in_episode": 20}, "episode.png"),
    ("EdgeTaskScheduling-v0", {"num_tasks": 4}, "schedule.png"),
])
def test_render_ap_selection_and_edge_gantt(tmp_path, capsys, env_id, env_params, picture):
    import jax
    from PIL import Image

    cfg = dt.QLearningConfig(total_timesteps=8, log_every=8)
    spec = runs.RunSpec(env_id, cfg, env_params)
    run = runs.create_run(tmp_path / "run", spec)
    env, params = spec.make_env()
    runner, _ = jax.jit(jax.vmap(dt.make_train(cfg, env, params).init))(spec.keys())
    runs.save_checkpoint(run, spec, cfg.num_intervals, runner, {})
    assert main(["eval", str(run), "--episodes", "1", "--render"]) == 0
    assert Image.open(run / picture).size[0] > 100
    if env_id.startswith("Edge"):
        from dtrl_jax.experiment import render

        saved = render.load_agent(run)
        sched = render.schedule(saved, jax.random.key(0))
        # the drawn timeline's cost equals the env's own cost for that order (sum of finish times + zeta * missed)
        finish = sched["compute"][:, 1]
        assert np.isclose(finish.sum() + params.zeta * sched["missed"].sum(), sched["cost"], rtol=1e-5)
        assert sorted(sched["order"]) == list(range(4))
    capsys.readouterr()


def test_gymnasium_wrapper_for_sb3_and_cleanrl():
    """gymnax's GymnaxToGymWrapper (what SB3/CleanRL users need) drives our envs."""
    from gymnax.wrappers.gym import GymnaxToGymWrapper

    env, params = dt.make(AP, observation="features", max_steps_in_episode=6)
    gym_env = GymnaxToGymWrapper(env, params, seed=0)
    obs, _ = gym_env.reset(seed=0)
    assert gym_env.observation_space.contains(np.asarray(obs, np.float32)) and gym_env.action_space.n == 5
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = gym_env.step(gym_env.action_space.sample())
        assert np.isfinite(reward)
        steps, done = steps + 1, bool(terminated or truncated)
    assert steps <= 6


def test_train_with_greedy_evaluation_end_to_end(tmp_path):
    run = tmp_path / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", CHAIN, *TINY, "--seeds", "2", "--eval-episodes", "2", "--out", str(run)]) == 0
    text = err.getvalue()
    assert "last greedy return" in text and "final epsilon" in text and "updates" in text and "| greedy " in text
    metrics = runs.read_metrics(run)
    assert np.isfinite(metrics["eval_return"]).all() and np.isfinite(metrics["eval_length"]).all()
    assert (run / "curves.png").stat().st_size > 1000
    # the extended run evaluates too, under its lineage
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", "--resume", str(run), "--total-timesteps", "60", "--no-progress"]) == 0
    assert runs.read_metrics(run)["eval_return"].shape == (2, 6)


def test_lazy_builtin_listing_matches_the_modules():
    """``registered_envs()`` lists the built-ins without importing them; the text equals what each
    module registers when it is imported."""
    from dtrl_jax.envs import registry

    for env_id, (module, description) in registry._BUILTINS.items():
        registry._load(env_id)
        assert registry._REGISTRY[env_id][1] == description, env_id
        assert registry._REGISTRY[env_id][0].__module__ == module


def test_lazy_package_exports_everything_it_lists():
    assert set(dt.__all__) == set(dt._EXPORTS) | {"__version__"}
    for name in dt.__all__:
        assert getattr(dt, name) is not None
    with pytest.raises(AttributeError):
        dt.no_such_name  # noqa: B018


def test_cli_warns_when_the_twin_does_nothing(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", CHAIN, *TINY, "--num-domains", "2", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "warning: the twin is on but no twin feature is" in err.getvalue()

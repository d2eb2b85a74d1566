"""Sharding over devices: 8 simulated CPU devices in a subprocess (JAX's device count is fixed at start)."""

import json
import subprocess
import sys
from pathlib import Path

import gymnax
import jax
import pytest

import dtrl_jax as dt
from dtrl_jax import distributed
from dtrl_jax.sharding import check_mesh_axes
from tests.helpers import subprocess_env

ROOT = Path(__file__).resolve().parents[1]


def test_sharded_runs_match_unsharded_on_8_devices():
    env = subprocess_env(extra_xla_flags="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "tests.sharded_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT "):])
    for name in ("loss", "episode_return", "physical_episodes", "twin_transitions"):
        assert r[name], (name, r)
    assert r["metrics_devices"] == 8 and "seeds" in r["metrics_sharding"]
    assert r["domains_only_close"], r
    assert r["domain_state_shards"] == 8, r  # each device holds its own slice of the domains


def test_bad_meshes_raise():
    env, params = gymnax.make("CartPole-v1")
    cfg = dt.DQNConfig(twin=dt.TwinConfig(num_domains=3, action_trials=2))
    with pytest.raises(ValueError, match="domains"):
        dt.make_train(cfg, env, params, mesh=jax.sharding.Mesh(jax.devices()[:1], ("batch",)))
    with pytest.raises(ValueError, match="num_domains=3"):
        check_mesh_axes({"domains": 2}, cfg.twin)
    with pytest.raises(ValueError, match="twin"):
        dt.make_train(dt.DQNConfig(), env, params, mesh=distributed.make_mesh(domains=1))
    with pytest.raises(TypeError, match="Mesh"):
        dt.make_train(cfg, env, params, mesh="4 gpus")
    with pytest.raises(ValueError, match="devices"):
        distributed.make_mesh(domains=3, seeds=5)
    with pytest.raises(ValueError, match="seeds"):
        distributed.shard_seeds(lambda k: k, distributed.make_mesh(domains=1, seeds=1).__class__(
            jax.devices()[:1], ("domains",)))


def test_scaling_benchmark_smoke(tmp_path):
    from benchmarks import scaling

    from tests.benchmarks.schema import check_results

    scaling.main(["--quick", "--steps", "400", "--domains", "4", "--counts", "1,4", "--out", str(tmp_path)])
    d = check_results(tmp_path, "scaling", png=False, summary_keys=["rows", "physical_steps_per_s_by_devices",
                                                                    "twin_transitions_per_s_by_devices"])
    assert [r["devices"] for r in d["summary"]["rows"]] == [1, 4]
    assert all(r["physical_steps_per_s"] > 0 for r in d["summary"]["rows"])
    assert d["curves"]["physical_steps_per_s"]["series"]["4 domains"]["x"] == [1.0, 4.0]
    assert (tmp_path / "scaling.png").exists()

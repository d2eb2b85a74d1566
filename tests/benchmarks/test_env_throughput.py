"""Smoke test of ``benchmarks/env_throughput.py``: tiny settings, schema and sanity of the numbers.

Speed is never asserted here; the benchmark itself reports it.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import _common, env_throughput
from tests.benchmarks.schema import check_results

BATCHES = [1, 4]


def _positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("env_throughput")
    doc = env_throughput.main(
        [
            "--quick",
            "--batch-sizes",
            ",".join(map(str, BATCHES)),
            "--steps",
            "4",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    return out, doc


def test_writes_json_and_png(run):
    out, doc = run
    assert (out / "env_throughput.json").is_file()
    assert (out / "env_throughput.png").is_file()
    assert (out / "env_throughput.png").stat().st_size > 1000
    on_disk = json.loads((out / "env_throughput.json").read_text())
    assert on_disk["benchmark"] == "env_throughput"
    assert on_disk["config"]["batch_sizes"] == BATCHES
    assert on_disk["mode"] == "quick"


def test_json_schema(run):
    out, _ = run
    doc = check_results(out, "env_throughput", png=False, summary_keys=[
        f"{env}.{k}" for env in ("CartPole-v1", *env_throughput.DTRL_ENVS)
        for k in ("ratio_by_batch", "peak_steps_per_s", "min_ratio", "meets_target_all")])
    assert set(doc["curves"]) == {"steps_per_s", "steps_per_cpu_s", "ratio_to_reference"}
    assert set(doc["curves"]["steps_per_s"]["series"]) == {"CartPole-v1", *env_throughput.DTRL_ENVS}
    assert doc["curves"]["steps_per_s"]["series"]["CartPole-v1"]["x"] == [float(b) for b in BATCHES]
    env_info = doc["environment"]
    for pkg in ("jax", "jaxlib", "flax", "optax", "chex", "gymnax", "distrax", "numpy"):
        assert pkg in env_info["packages"]
    assert env_info["packages"]["jax"]
    assert env_info["python"]
    assert env_info["jax_devices"] and env_info["jax_devices"][0]["platform"] == "cpu"
    assert doc["config"]["reference_env"] == "CartPole-v1"
    assert set(doc["envs"]) == {"CartPole-v1", *env_throughput.DTRL_ENVS}
    assert doc["config"]["target"]["min_ratio_to_reference"] == 0.5
    assert isinstance(doc["config"]["busy_machine"], bool)
    assert doc["config"]["files"] == {"png": "env_throughput.png", "json": "env_throughput.json"}


def test_reference_numbers_positive_and_finite(run):
    out, _ = run
    doc = json.loads((out / "env_throughput.json").read_text())
    ref = doc["envs"]["CartPole-v1"]
    assert ref["status"] == "ok" and ref["source"] == "gymnax"
    assert [r["batch_size"] for r in ref["results"]] == BATCHES
    for r in ref["results"]:
        assert r["num_steps"] == 4
        assert r["steps_per_call"] == r["batch_size"] * 4
        for key in ("steps_per_s", "steps_per_s_median", "steps_per_cpu_s", "compile_s", "best_s", "median_s"):
            assert _positive_finite(r[key]), (key, r[key])
        assert r["finite"] is True
        assert r["ratio_to_reference"] == pytest.approx(1.0)
        assert r["ratio_to_reference_cpu"] == pytest.approx(1.0)
        assert r["repeats"] >= 1


def test_dtrl_envs_numbers_or_recorded_error(run):
    """Every dtrl env is either measured with sane numbers or its failure is recorded with a message."""
    out, _ = run
    doc = json.loads((out / "env_throughput.json").read_text())
    for env_id in env_throughput.DTRL_ENVS:
        entry = doc["envs"][env_id]
        assert entry["status"] in ("ok", "unavailable", "error")
        if entry["status"] != "ok":
            assert entry["error"]
            continue
        assert entry["source"] == "dtrl_jax"
        assert [r["batch_size"] for r in entry["results"]] == BATCHES
        for r in entry["results"]:
            for key in ("steps_per_s", "steps_per_cpu_s", "compile_s", "best_s", "ratio_to_reference", "ratio_to_reference_cpu"):
                assert _positive_finite(r[key]), (env_id, key, r[key])
            assert r["finite"] is True
            assert isinstance(r["meets_target"], bool)
        summary = doc["summary"][env_id]
        assert set(summary["ratio_by_batch"]) == {str(b) for b in BATCHES}
        assert isinstance(summary["meets_target_all"], bool)


def test_table_mentions_every_env(run):
    _, doc = run
    table = env_throughput.format_results_table(doc["envs"], BATCHES)
    for env_id in doc["envs"]:
        assert env_id in table


def test_steps_for_batch_is_power_of_two_and_clipped():
    assert env_throughput.steps_for_batch(1, 1e9, 1.0, 16, 8192) == 8192
    assert env_throughput.steps_for_batch(65536, 1e3, 1.0, 16, 8192) == 16
    t = env_throughput.steps_for_batch(1024, 4e6, 0.3, 16, 8192)
    assert 16 <= t <= 8192 and t & (t - 1) == 0


def test_time_compiled_separates_compile_and_run():
    import jax.numpy as jnp

    timing = _common.time_compiled(lambda x: (x * 2.0).sum(), jnp.ones(8), repeats=3)
    assert timing.compile_s > 0 and timing.lower_s > 0
    assert len(timing.times_s) == len(timing.cpu_times_s) == 3
    assert timing.best_s <= timing.median_s
    assert timing.best_cpu_s <= timing.median_cpu_s
    assert float(timing.output) == 16.0


def test_write_json_adds_environment_and_timestamp(tmp_path):
    path = _common.write_json("unit", {"x": 1, "arr": __import__("numpy").arange(3)}, tmp_path)
    doc = json.loads(path.read_text())
    assert path == tmp_path / "unit.json"
    assert doc["benchmark"] == "unit" and doc["x"] == 1 and doc["arr"] == [0, 1, 2]
    assert doc["timestamp_utc"].endswith("Z") and "packages" in doc["environment"]


def test_select_device():
    import jax

    assert _common.select_device("cpu").platform == "cpu"
    if not any(d.platform == "gpu" for d in jax.devices()):
        with pytest.raises(SystemExit, match="no GPU"):
            _common.select_device("gpu")

"""Smoke test of ``benchmarks/throughput.py`` (and ``_reference_dqn``): tiny settings, the results schema.

Speed is never asserted here; the benchmark itself reports it. To stay well under a minute on a 2-core
CPU the sweep runs only the tabular case (cheap to compile) and the reference comparison the two DQN
programs (about 20 s of CPU in all).
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import throughput
from tests.benchmarks.schema import check_results

ARGS = [
    "--quick",
    "--cases", "ql-ap",
    "--features", "trials",
    "--domains", "2",
    "--seeds", "1,2",
    "--iterations", "8",
    "--repeats", "1",
    "--reference-steps", "2000",
    "--reference-seeds", "1",
    "--reference-chunk-steps", "1000",
]


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    out = tmp_path_factory.mktemp("throughput")
    result = throughput.main([*ARGS, "--out", str(out)])
    on_disk = json.loads((out / "throughput.json").read_text())
    return out, result, on_disk


def test_files_written(doc):
    out, result, on_disk = doc
    assert (out / "throughput.json").is_file()
    assert (out / "throughput.png").stat().st_size > 1000
    assert on_disk["benchmark"] == "throughput"
    assert on_disk["config"]["files"] == {"png": "throughput.png", "json": "throughput.json"}
    assert result["files"]["json"].endswith("throughput.json")


def test_top_level_schema(doc):
    _, _, d = doc
    out, _, _ = doc
    check_results(out, "throughput", summary_keys=["cases.ql-ap.off_us_per_iteration",
                                                   "reference_ratio", "reference.ours.physical_steps_per_s",
                                                   "reference.reference.physical_steps_per_s",
                                                   "reference.ours.final_return", "reference.ours.updates"])
    for key in ("reference", "results"):
        assert key in d, key
    assert d["environment"]["jax_devices"][0]["platform"] == "cpu"
    cfg = d["config"]
    assert d["mode"] == "quick" and cfg["device"] == "cpu" and cfg["wall_time_s"] > 0
    assert set(d["curves"]) == {"us_per_iteration", "cpu_us_per_iteration", "physical_steps_per_s",
                                "twin_transitions_per_s", "compile_s", "seeds"}
    assert d["curves"]["us_per_iteration"]["series"]["ql-ap trials"]["x"] == [2.0]
    assert d["curves"]["seeds"]["series"]["ql-ap off D=0"]["x"] == [1.0, 2.0]
    assert cfg["domains"] == [2] and cfg["seeds"] == [1, 2] and cfg["cases"] == ["ql-ap"]
    assert len(cfg["load_average_at_start"]) == 3
    assert cfg["targets"] == {"reference_ratio_min": 1.0, "d64_over_d1_time_per_step_max": 1.5}


def test_sweep_points(doc):
    _, _, d = doc
    points = {(r["case"], r["feature"], r["num_domains"], r["num_seeds"]) for r in d["results"]}
    assert points == {("ql-ap", "off", 0, 1), ("ql-ap", "trials", 2, 1), ("ql-ap", "off", 0, 2)}
    for r in d["results"]:
        assert r["status"] == "ok", r
        for key in ("compile_s", "run_compile_s", "init_compile_s", "best_s", "median_s", "physical_steps_per_s",
                    "physical_steps_per_s_per_seed", "us_per_iteration", "cpu_us_per_iteration",
                    "twin_transitions_per_s", "updates_per_s"):
            assert _num(r[key]) and r[key] >= 0, (key, r[key])
        assert r["physical_steps_per_call"] == 8 * r["num_envs"] * r["num_seeds"]
        assert r["iterations_per_call"] == 8 and r["repeats"] == 1 and r["loss_finite"] is True
        assert r["hlo_instructions"] > 0
        mem = r["memory"]
        assert mem["peak_rss_bytes"] > 0 and mem["xla"]["temp_bytes"] >= 0
        assert mem["estimate"]["total_bytes"] > 0 and mem["estimate"]["num_seeds"] == r["num_seeds"]
        if r["feature"] == "trials":
            assert r["action_trials"] == 2 and r["twin_transitions_per_physical_step"] == pytest.approx(1.0)
            assert r["twin_transitions_per_s"] > 0 and mem["domains_bytes"] > 0
        else:
            assert r["twin_transitions_per_s"] == 0
        assert r["updates_per_s"] > 0  # tabular: one table update per vectorised step


def test_reference_comparison(doc):
    _, _, d = doc
    ref = d["reference"]
    assert ref["total_timesteps"] == 2000 and ref["num_seeds"] == 1 and ref["chunk_steps"] == 1000
    assert ref["hyper_parameters"]["batch_size"] == 64 and ref["hyper_parameters"]["hidden_sizes"] == [120, 84]
    for name in ("ours", "reference"):
        r = ref[name]
        assert len(r["chunk_times_s"]) == 2 and len(r["chunk_cpu_s"]) == 2
        for key in ("compile_s", "wall_s", "physical_steps_per_s", "steady_physical_steps_per_s_best"):
            assert _num(r[key]) and r[key] > 0, (name, key)
        assert _num(r["final_return"]) and r["final_return"] > 0
    # learning starts at 1,000 of the 2,000 steps: the same gradient steps on both sides
    assert ref["ours"]["updates"] == ref["reference"]["updates"] > 0
    assert _num(ref["ratio_ours_over_reference"]) and ref["ratio_ours_over_reference"] > 0
    assert isinstance(ref["meets_target"], bool)
    assert d["summary"]["reference_ratio"] == ref["ratio_ours_over_reference"]


def test_summary_slowdowns(doc):
    _, _, d = doc
    cases = d["summary"]["cases"]
    assert set(cases) == {"ql-ap"}
    for item in cases.values():
        assert _num(item["off_us_per_iteration"])


def test_table_and_points_helpers():
    rows = [{"case": "ql-ap", "feature": "off", "num_domains": 0, "num_seeds": 1, "status": "error", "error": "x"}]
    assert "error" in throughput.format_table(rows)
    cfg = dict(throughput.MODES["default"])
    pts = throughput.build_points(cfg)
    assert ("dqn-cartpole", "trials", 1024, 1) in pts and ("ql-ap", "lookahead", 64, 1) in pts
    assert ("dqn-multiuav", "off", 1, 32) in pts and ("dqn-multiuav", "trials", 4, 8) in pts
    assert len(pts) == len(set(pts))
    assert throughput.iterations_for(1e9, 1.0, 8, 4096) == 4096
    assert throughput.iterations_for(10.0, 0.1, 8, 4096) == 8


def test_reference_dqn_config_mirrors_dqnconfig():
    import dtrl_jax as dt
    from benchmarks import _reference_dqn as reference_dqn

    cfg = dt.DQNConfig()
    ref = reference_dqn.config_from_dqn(cfg)
    assert ref == {**reference_dqn.DEFAULT_CONFIG, "total_timesteps": cfg.total_timesteps}

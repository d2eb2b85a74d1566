"""Smoke test of ``benchmarks/eval_cost.py``: tiny settings, the results schema and its numbers (no speed assertion)."""

import math

from benchmarks import eval_cost
from tests.benchmarks.schema import check_results


def test_eval_cost_quick(tmp_path):
    eval_cost.main(["--quick", "--cases", "ql-ap", "--out", str(tmp_path)])
    d = check_results(tmp_path, "eval_cost", png=False, summary_keys=["cases.ql-ap.rows"])
    assert (tmp_path / "eval_cost.png").stat().st_size > 0
    rows = d["summary"]["cases"]["ql-ap"]["rows"]
    assert [r["eval_episodes"] for r in rows] == [0, 2]
    for r in rows:
        assert math.isfinite(r["s_per_interval"]) and r["s_per_interval"] > 0
        assert math.isfinite(r["compile_s"]) and "overhead_vs_no_eval" in r
    assert rows[0]["mean_eval_length"] is None and rows[0]["ms_per_eval_episode"] is None
    assert 1 <= rows[1]["mean_eval_length"] <= 300  # AP episodes are at most 300 steps
    assert d["config"]["cases"]["ql-ap"]["log_every"] == 300
    assert set(d["curves"]) == {"s_per_interval", "overhead"}
    assert d["curves"]["overhead"]["series"]["ql-ap"]["x"] == [0.0, 2.0]

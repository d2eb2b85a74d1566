"""Smoke test of ``benchmarks/eval_cost.py``: tiny settings, the JSON schema and its numbers (no speed assertion)."""

import json
import math

from benchmarks import eval_cost


def test_eval_cost_quick(tmp_path):
    doc = eval_cost.main(["--quick", "--cases", "ql-ap", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "eval_cost.json").read_text())
    assert (tmp_path / "eval_cost.png").stat().st_size > 0
    rows = on_disk["cases"]["ql-ap"]["rows"]
    assert [r["eval_episodes"] for r in rows] == [0, 2]
    for r in rows:
        assert math.isfinite(r["s_per_interval"]) and r["s_per_interval"] > 0
        assert math.isfinite(r["compile_s"])
    assert rows[0]["mean_eval_length"] is None and rows[0]["ms_per_eval_episode"] is None
    assert 1 <= rows[1]["mean_eval_length"] <= 300  # AP episodes are at most 300 steps
    assert doc["cases"]["ql-ap"]["log_every"] == 300

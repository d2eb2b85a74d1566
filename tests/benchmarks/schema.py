"""The checks every ported benchmark's smoke test makes of its results file (harness schema ``dtrl-bench/1``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        assert isinstance(tree, dict) and part in tree, f"summary has no {dotted!r} (at {part!r})"
        tree = tree[part]
    return tree


def check_results(out: Path, name: str, *, mode: str = "quick", summary_keys: Sequence[str] = (),
                  png: bool = True) -> dict[str, Any]:
    """Load ``out/<name>.json`` and assert the schema: provenance, non-empty curves with finite means, the
    ``summary_keys`` (dotted paths, e.g. ``"greedy_eval.physical_plateau"``) the READMEs quote."""
    doc = harness.load(out / f"{name}.json")  # raises unless schema == "dtrl-bench/1"
    assert doc["schema"] == harness.SCHEMA and doc["benchmark"] == name and doc["mode"] == mode
    assert doc["timestamp_utc"].endswith("Z") and "packages" in doc["environment"]
    prov = doc["provenance"]
    assert prov["commit"] is None or len(prov["commit"]) == 40
    assert isinstance(prov["dirty"], (bool, type(None)))
    assert prov["command"].startswith("python -m ")
    assert isinstance(doc["config"], dict) and isinstance(doc["summary"], dict)
    assert doc["curves"], "no curve panels"
    for pname, panel in doc["curves"].items():
        for key in ("x", "y", "xlabel", "ylabel", "series"):
            assert key in panel, (pname, key)
        assert panel["series"], f"panel {pname!r} has no series"
        for arm, s in panel["series"].items():
            assert len(s["x"]) == len(s["mean"]) == len(s["std"]) > 0, (pname, arm)
            assert all(_number(v) and math.isfinite(v) for v in s["x"]), (pname, arm)
            finite = [v for v in s["mean"] if _number(v) and math.isfinite(v)]
            assert finite, f"{pname}/{arm}: no finite mean"
            assert isinstance(s["seeds"], int) and s["seeds"] >= 1
    for key in summary_keys:
        _get(doc["summary"], key)
    if png:
        assert (out / f"{name}.png").stat().st_size > 5_000
    return doc

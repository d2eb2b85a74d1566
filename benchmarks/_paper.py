"""Helpers of ``multi_uav.py`` that predate the harness (it is the one script not yet ported to it).

The shared pieces live in ``benchmarks/harness.py`` (``run_seeds``, ``plot_curves``,
``save_with_caption``, ``git_state``, ``COLORS``, re-exported here under their old names);
what is left here is what only ``multi_uav.py`` still uses: its progress printer, NaN-aware curve
statistics, first reach, JSON list rounding and the banner. Retire this module when that script writes
the harness schema.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from benchmarks import _common
from benchmarks.harness import (  # noqa: F401
    COLORS,
    git_state,
    plot_curves,
    run_seeds,
    save_with_caption,
)
from dtrl_jax import convergence


def progress_reporter(label: str, num_intervals: int, every: int | None = None) -> Callable[[Any], None]:
    """Host function for ``make_train(on_interval=...)`` printing ``label`` progress about 10 times.

    The metrics row it receives carries the seed axis first; it prints the interval count, the
    physical episodes of seed 0 and the seed-mean return of the interval.
    """
    every = every or max(1, num_intervals // 10)
    state = {"count": 0, "t0": None}

    def report(row: Any) -> None:
        state["count"] += 1
        i = state["count"]
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        if i % every and i != num_intervals:
            return
        episodes = np.asarray(row["physical_episodes"]).reshape(-1)[0]
        ret = np.asarray(row["episode_return"], dtype=np.float64)
        mean = float(np.nanmean(ret)) if np.any(np.isfinite(ret)) else float("nan")
        _common.log(
            f"  [{label}] interval {i:>5}/{num_intervals}  episodes {int(episodes):>7}  "
            f"return {mean:9.3f}  (+{time.perf_counter() - state['t0']:.0f}s)"
        )

    return report


def moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing NaN-aware moving average along the last axis: ``dtrl_jax.convergence.smooth``."""
    return convergence.smooth(y, max(1, int(window)))


def curve_stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) std over the seed axis 0, ignoring NaNs."""
    y = np.asarray(y, np.float64)
    with np.errstate(invalid="ignore"), _quiet_nan():
        return np.nanmean(y, axis=0), np.nanstd(y, axis=0)


class _quiet_nan:
    """Silence numpy's 'Mean of empty slice' warnings inside the block."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def first_reach(x: np.ndarray, y: np.ndarray, level: float, *, stay: bool = False) -> float | None:
    """First ``x`` where ``y >= level`` (``stay``: and ``y >= level`` at every later point); None if never."""
    y = np.asarray(y, np.float64)
    ok = np.isfinite(y) & (y >= level)
    if stay:
        # ok_from[i]: ok at i and at every later point.
        ok = np.flip(np.logical_and.accumulate(np.flip(ok)))
    idx = np.flatnonzero(ok)
    return None if idx.size == 0 else float(np.asarray(x)[idx[0]])


def tail_mean(y: np.ndarray, tail: int) -> np.ndarray:
    """Per row of ``y`` ``[seeds, points]``: the mean of its last ``tail`` finite values (NaN if none)."""
    y = np.asarray(y, np.float64)
    out = np.full(y.shape[0], np.nan)
    for i, row in enumerate(y):
        finite = row[np.isfinite(row)]
        if finite.size:
            out[i] = finite[-max(1, tail):].mean()
    return out


def finite_or_none(x: Any) -> float | None:
    """``float(x)`` when finite, else None (JSON-friendly)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def to_list(a: np.ndarray, digits: int = 5) -> list[float | None]:
    """A 1-D array as a JSON list, rounded, NaN/inf as None."""
    return [finite_or_none(round(float(v), digits)) if np.isfinite(v) else None for v in np.asarray(a, np.float64)]


def header(name: str, mode: str, device: jax.Device, extra: str = "") -> None:
    """Print the banner every case-study script starts with."""
    _common.log(f"== {name} ({mode} mode) on {_common.describe_device(device)} {extra}".rstrip())

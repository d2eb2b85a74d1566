"""Convergence measures of learning curves, in one place for the benchmarks, the CLI and notebooks.

A curve is ``y[T]`` (or ``y[S, T]``, one row per seed) sampled at increasing ``x[T]`` (physical
episodes or steps). Points may be NaN (an interval without a finished episode); every measure skips
them. Two questions are asked of a curve:

* **When does it first reach a level?** :func:`first_reach`: the first ``x`` with ``y >= level``
  (``<=`` with ``higher_is_better=False``, e.g. an optimality gap). Cheap, but sensitive to a lucky
  noisy point; smooth first (:func:`smooth`) or ask the second question.
* **When does it settle?** :func:`settle`: the first ``x`` from which the curve stays within ``tol``
  of its own plateau to the end. The plateau (:func:`plateau`) is the mean of the last quarter of
  the run, not one noisy last point.

:func:`reach_ratios` compares two sets of seeds (a variant against a reference, e.g. the twin
against physical RL) at several levels: per seed, the ``x`` at which each first reaches the level,
and the ratio of the means with the per-seed spread. Plain NumPy, host side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _as_curve(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or y.shape[-1] != x.shape[0]:
        raise ValueError(f"curve shapes: x {x.shape} must be [T] and y {y.shape} end in T={x.shape[0]}")
    return x, y


def smooth(y, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points along the last axis, NaN-aware.

    Point ``t`` is the mean of the finite values among ``y[t - window + 1 .. t]`` (NaN when none),
    so a smoothed curve never looks ahead and its first points use what exists.
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"smooth: window={window!r}; expected an int >= 1")
    y = np.asarray(y, np.float64)
    finite = np.isfinite(y)
    vals = np.where(finite, y, 0.0)
    csum = np.cumsum(vals, axis=-1)
    ccount = np.cumsum(finite, axis=-1)
    pad = [(0, 0)] * (y.ndim - 1) + [(window, 0)]
    csum = np.pad(csum, pad)
    ccount = np.pad(ccount, pad)
    total = csum[..., window:] - csum[..., :-window]
    count = ccount[..., window:] - ccount[..., :-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def plateau(y, fraction: float = 0.25) -> np.ndarray | float:
    """Mean of the finite points in the last ``fraction`` of the curve (per seed for ``[S, T]``)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"plateau: fraction={fraction!r}; expected a number in (0, 1]")
    y = np.asarray(y, np.float64)
    n = y.shape[-1]
    tail = y[..., n - max(1, int(round(n * fraction))):]
    finite = np.isfinite(tail)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(finite.any(-1), np.where(finite, tail, 0.0).sum(-1) / np.maximum(finite.sum(-1), 1), np.nan)
    return float(out) if out.ndim == 0 else out


def first_reach(x, y, level: float, *, higher_is_better: bool = True) -> float:
    """The first ``x`` at which the curve ``y[T]`` reaches ``level``; NaN if it never does."""
    x, y = _as_curve(x, y)
    if y.ndim != 1:
        raise ValueError(f"first_reach takes one curve y[T]; got shape {y.shape} (use reach_ratios for seeds)")
    with np.errstate(invalid="ignore"):
        hit = (y >= level) if higher_is_better else (y <= level)
    idx = np.flatnonzero(hit)  # NaN compares False: never a hit
    return float(x[idx[0]]) if idx.size else float("nan")


def settle(x, y, tol: float, *, level: float | None = None, fraction: float = 0.25) -> float:
    """The first ``x`` from which ``y[T]`` stays within ``tol`` of ``level`` up to the end.

    ``level`` defaults to the curve's own :func:`plateau`. NaN points neither break nor start a
    stay. NaN if the last finite point is itself outside the band.
    """
    x, y = _as_curve(x, y)
    if y.ndim != 1:
        raise ValueError(f"settle takes one curve y[T]; got shape {y.shape}")
    if not tol >= 0:
        raise ValueError(f"settle: tol={tol!r}; expected a number >= 0")
    level = plateau(y, fraction) if level is None else float(level)
    finite = np.isfinite(y)
    if not finite.any() or not np.isfinite(level):
        return float("nan")
    outside = finite & (np.abs(y - level) > tol)
    bad = np.flatnonzero(outside)
    start = 0 if not bad.size else bad[-1] + 1
    good = np.flatnonzero(finite[start:])
    return float(x[start + good[0]]) if good.size else float("nan")


def _spread(values: np.ndarray) -> dict[str, Any]:
    ok = values[np.isfinite(values)]
    return {
        "mean": float(ok.mean()) if ok.size else None,
        "std": float(ok.std()) if ok.size else None,
        "reached": int(ok.size),
        "seeds": int(values.size),
        "per_seed": [None if not np.isfinite(v) else float(v) for v in values],
    }


def reach_ratios(x, reference, variant, levels: Sequence[float], *, higher_is_better: bool = True,
                 window: int = 1) -> list[dict[str, Any]]:
    """How much sooner ``variant`` reaches each level than ``reference`` (both ``[S, T]`` over seeds).

    For each level: the per-seed first ``x`` (after :func:`smooth` with ``window``) of both, their
    mean/std/how many seeds reached it, and ``ratio`` = mean(variant) / mean(reference) over the
    seeds that reached it (None when either never did). A ratio below 1 means the variant is faster.
    With equal seed counts, ``paired_ratio`` is the mean and std of the per-seed ratios of seeds where
    both reached the level (seed i of the variant paired with seed i of the reference).
    """
    x = np.asarray(x, np.float64)
    ref = smooth(np.atleast_2d(np.asarray(reference, np.float64)), window)
    var = smooth(np.atleast_2d(np.asarray(variant, np.float64)), window)
    rows = []
    for level in levels:
        r = np.array([first_reach(x, c, level, higher_is_better=higher_is_better) for c in ref])
        v = np.array([first_reach(x, c, level, higher_is_better=higher_is_better) for c in var])
        rs, vs = _spread(r), _spread(v)
        ratio = vs["mean"] / rs["mean"] if rs["mean"] and vs["mean"] is not None else None
        row = {"level": float(level), "reference": rs, "variant": vs, "ratio": ratio}
        if r.size == v.size:
            both = np.isfinite(r) & np.isfinite(v) & (r > 0)
            per = v[both] / r[both]
            row["paired_ratio"] = {"mean": float(per.mean()) if per.size else None,
                                   "std": float(per.std()) if per.size else None, "pairs": int(per.size)}
        rows.append(row)
    return rows

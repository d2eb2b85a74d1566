"""Helpers shared by the paper case-study benchmarks (``ap_selection``, ``multi_uav``, ``edge_scheduling``).

Each case study compares *variants* (physical RL vs DT-enhanced RL with some twin setting) that are the
same program with the twin switched on or off. A variant's seeds always run as ONE ``jax.vmap`` over
keys inside one ``jax.jit``; :func:`run_seeds` compiles it ahead of time (so compile time and run time
are reported separately), runs it, prints progress and returns the metrics as numpy arrays with a
leading seed axis. :func:`curve_stats`, :func:`moving_average` and :func:`first_reach` turn them into
the numbers the scripts report; :func:`plot_curves` draws mean curves with a shaded std band.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks import _common
from dtrl_jax import convergence

#: Colours of the variants, in order (the physical baseline first, black).
COLORS = ("black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:olive", "tab:cyan")


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


def run_seeds(
    fn: Callable[[jax.Array], Any],
    keys: jax.Array,
    label: str,
    device: jax.Device,
    keep: Callable[[Any], Any] = lambda out: out.metrics,
) -> tuple[Any, float, float]:
    """Compile ``jax.jit(jax.vmap(lambda k: keep(fn(k))))`` for ``keys`` ahead of time, run it once.

    Args:
      fn: one seed's pure function ``key -> result`` (e.g. ``dt.make_train(cfg, env, params)``).
      keys: ``[num_seeds]`` PRNG keys.
      label: name printed with the timings.
      device: where to run.
      keep: what of ``fn``'s result to return (default: ``.metrics``); applied inside the compiled
        program, so the rest (e.g. replay buffers in the final runner state) never leaves it.

    Returns:
      ``(kept result as a numpy pytree with a leading seed axis, compile_s, run_s)``.
    """
    keys = jax.device_put(keys, device)
    with jax.default_device(device):
        t0 = time.perf_counter()
        compiled = jax.jit(jax.vmap(lambda k: keep(fn(k)))).lower(keys).compile()
        t1 = time.perf_counter()
        _common.log(f"  [{label}] compiled in {t1 - t0:.1f}s; running {keys.shape[0]} seeds as one vmap")
        out = jax.block_until_ready(compiled(keys))
        t2 = time.perf_counter()
    _common.log(f"  [{label}] ran in {t2 - t1:.1f}s")
    return jax.tree.map(np.asarray, out), t1 - t0, t2 - t1


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


def plot_curves(
    path: Path,
    series: Sequence[dict[str, Any]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    caption: str,
    hlines: Sequence[tuple[float, str]] = (),
    vlines: Sequence[tuple[float, str]] = (),
    xlog: bool = False,
    ylog: bool = False,
    ax=None,
) -> Path | None:
    """Mean curve with a shaded +-1 std band per series; dashed reference lines; caption below.

    Args:
      path: PNG to write (ignored when ``ax`` is given: the caller owns the figure).
      series: dicts with ``label``, ``x``, ``mean``, ``std`` and optionally ``color``, ``linestyle``.
      hlines / vlines: ``(value, label)`` dashed reference lines (e.g. the paper's values).
      caption: text under the axes (wrapped).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(8.5, 6.0), dpi=120)
    for i, s in enumerate(series):
        color = s.get("color", COLORS[i % len(COLORS)])
        x = np.asarray(s["x"], np.float64)
        m = np.asarray(s["mean"], np.float64)
        sd = np.asarray(s["std"], np.float64)
        ax.plot(x, m, color=color, linestyle=s.get("linestyle", "-"), linewidth=1.8, label=s["label"])
        low = m - sd
        if ylog:  # a log axis of a non-negative quantity: keep the band above 0
            low = np.maximum(low, 0.0)
        ax.fill_between(x, low, m + sd, color=color, alpha=0.15, linewidth=0)
    for value, label in hlines:
        ax.axhline(value, color="gray", linestyle="--", linewidth=1.0)
        ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8, color="dimgray",
                    va="bottom")
    for value, label in vlines:
        ax.axvline(value, color="gray", linestyle="--", linewidth=1.0)
        ax.annotate(label, (value, 0.45), xycoords=("data", "axes fraction"), fontsize=8, color="dimgray",
                    rotation=90, ha="right", va="bottom")
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(bottom=0.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if not own:
        return None
    save_with_caption(fig, path, caption, width=125, fontsize=7, base=0.02, per_line=0.018)
    return path


def save_with_caption(fig, path, caption: str, *, width: int, fontsize: float = 8, base: float = 0.03,
                      per_line: float = 0.025) -> None:
    """Wrap ``caption`` at ``width`` characters under the axes, leave room for it, save and close."""
    import matplotlib.pyplot as plt

    lines = textwrap.wrap(caption, width)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=fontsize, va="bottom", ha="left")
    fig.tight_layout(rect=(0, base + per_line * len(lines), 1, 1))
    fig.savefig(path)
    plt.close(fig)


def git_state() -> dict[str, Any]:
    """The repository's commit and whether the working tree had uncommitted changes (for the JSON)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.rstrip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty), "modified": dirty.splitlines()[:50]}


def header(name: str, mode: str, device: jax.Device, extra: str = "") -> None:
    """Print the banner every case-study script starts with."""
    _common.log(f"== {name} ({mode} mode) on {_common.describe_device(device)} {extra}".rstrip())

"""Learning curves: mean over seeds with a +-1 std band, against physical episodes or steps.

Works on metrics as ``train`` returns them under ``vmap`` (``{name: [seeds, intervals]}``), on
a single run's metrics (``[intervals]``), or on run folders (``metrics.csv``)::

    from dtrl_jax import plotting
    fig, ax = plt.subplots()
    plotting.plot_metrics(ax, out.metrics, label="DT n=5")          # out = jax.vmap(train)(keys)
    plotting.plot_runs(["runs/a", "runs/b"], "compare.png")          # what `dtrl plot` does

Files are drawn on a ``matplotlib.figure.Figure`` (no pyplot state), so any backend works.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

X_AXES = {"episodes": "physical_episodes", "steps": "physical_steps"}
_X_LABELS = {"episodes": "physical episodes", "steps": "physical steps"}
_Y_LABELS = {"episode_return": "mean physical episode return"}


def curve(metrics: dict[str, Any], x: str = "episodes", y: str = "episode_return"):
    """``(x, mean, std)`` over seeds; intervals where no seed has a finite ``y`` are dropped.

    Args:
      metrics: ``{name: [seeds, intervals]}`` or ``{name: [intervals]}`` arrays.
      x: ``"episodes"`` (physical episodes, the paper's x-axis) or ``"steps"`` (physical steps).
      y: a metric name, e.g. ``"episode_return"``, ``"loss"``, ``"violations"``.
    """
    if x not in X_AXES:
        raise ValueError(f"x={x!r}: expected one of {sorted(X_AXES)}")
    if y not in metrics:
        raise ValueError(f"no metric {y!r}; have {sorted(metrics)}")
    xs = np.atleast_2d(np.asarray(metrics[X_AXES[x]], dtype=np.float64))
    ys = np.atleast_2d(np.asarray(metrics[y], dtype=np.float64))
    keep = np.any(np.isfinite(ys), axis=0)
    xs, ys = xs[:, keep], ys[:, keep]
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(ys, axis=0) if ys.size else ys.sum(axis=0)
        std = np.nanstd(ys, axis=0) if ys.size else ys.sum(axis=0)
    return xs.mean(axis=0), mean, std


def plot_metrics(ax, metrics, *, label: str | None = None, x: str = "episodes", y: str = "episode_return", color=None):
    """Draw one curve (mean over seeds) with its std band on ``ax``; returns the line."""
    xs, mean, std = curve(metrics, x, y)
    (line,) = ax.plot(xs, mean, label=label, color=color, lw=1.8)
    ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(_X_LABELS[x])
    ax.set_ylabel(_Y_LABELS.get(y, y.replace("_", " ")))
    return line


def run_label(run_dir) -> str:
    """A short legend label for a run folder: its name, agent and active twin features."""
    run_dir = Path(run_dir)
    try:
        doc = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return run_dir.name
    twin = doc.get("config", {}).get("twin")
    parts = []
    if twin:
        if twin.get("action_trials", 1) > 1:
            parts.append(f"n={twin['action_trials']}")
        if twin.get("lookahead", 0) > 1:
            parts.append(f"k={twin['lookahead']}")
        if twin.get("shield"):
            parts.append("shield")
        if twin.get("share_global_obs"):
            parts.append("global obs")
    desc = f"DT {', '.join(parts)}" if parts else ("twin on, no feature" if twin else "no twin")
    return f"{run_dir.name} ({doc.get('agent', '?')}, {desc}, {doc.get('seeds', 1)} seeds)"


def plot_runs(
    run_dirs: Sequence,
    out=None,
    *,
    x: str = "episodes",
    y: str = "episode_return",
    labels: Sequence[str] | None = None,
    title: str | None = None,
):
    """Overlay the curves of one or more run folders; save to ``out`` (PNG) if given.

    Returns:
      The ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    from dtrl_jax.runs import read_metrics

    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"got {len(labels)} labels for {len(run_dirs)} runs")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    envs = set()
    for i, run_dir in enumerate(run_dirs):
        metrics = read_metrics(run_dir)
        plot_metrics(ax, metrics, label=labels[i] if labels else run_label(run_dir), x=x, y=y)
        try:
            envs.add(json.loads((Path(run_dir) / "config.json").read_text())["env_id"])
        except (OSError, ValueError, KeyError):
            pass
    ax.set_title(title or ", ".join(sorted(envs)) or None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    return fig


# ------------------------------------------------------------------------- benchmark result files
_X_KEYS = ("x", "physical_episodes", "episodes", "physical_steps", "steps", "iterations", "evaluations",
           "batch_size", "num_domains", "domains", "devices", "level")
_Y_KEYS = ("mean_smoothed", "mean", "mean_return", "episode_return", "return", "mean_reward", "reward", "gap",
           "mean_gap", "steps_per_s", "physical_steps_per_s", "twin_transitions_per_s")
_LOG_X = ("batch_size", "num_domains", "domains", "devices")


def find_curves(doc: Any, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Curves found anywhere in a benchmark JSON document (best effort, never raises).

    A curve is a dict holding an x-like list (``x``, ``physical_episodes``, ``physical_steps``,
    ``batch_size``, ...) and a y-like list of the same length (``mean_smoothed``, ``mean``,
    ``mean_return``, ``steps_per_s``, ...), optionally ``std``, ``label`` and ``x_label``; or a list
    of records sharing such keys (one point each). Returns ``{label: {"x", "y", "std", "x_label",
    "y_label"}}`` with float arrays (``std`` may be None).
    """
    found: dict[str, dict[str, Any]] = {}

    def as_array(v):
        if not isinstance(v, list) or len(v) < 2:
            return None
        try:
            a = np.asarray([np.nan if e is None else e for e in v], dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if a.ndim == 2:  # [seeds, points]
            with np.errstate(invalid="ignore"):
                a = np.nanmean(a, axis=0)
        return a if a.ndim == 1 else None

    def add(label, x, y, std, xk, yk):
        name = label or yk
        while name in found:
            name += "'"
        found[name] = {"x": x, "y": y, "std": std, "x_label": xk.replace("_", " "), "y_label": yk.replace("_", " ")}

    def visit(node, path):
        if isinstance(node, dict):
            xk = next((k for k in _X_KEYS if as_array(node.get(k)) is not None), None)
            yk = next((k for k in _Y_KEYS if as_array(node.get(k)) is not None), None)
            if xk and yk and as_array(node[xk]).shape == as_array(node[yk]).shape:
                std_key = "std_smoothed" if yk == "mean_smoothed" else "std"
                std = as_array(node.get(std_key))
                std = std if std is not None and std.shape == as_array(node[yk]).shape else None
                label = node.get("label") if isinstance(node.get("label"), str) else path
                x_label = node.get("x_label") if isinstance(node.get("x_label"), str) else xk
                add(label, as_array(node[xk]), as_array(node[yk]), std, x_label, yk)
                return
            for k, v in node.items():
                if k not in ("environment", "config", "paper"):
                    visit(v, f"{path}/{k}" if path else str(k))
        elif isinstance(node, list) and node and all(isinstance(r, dict) for r in node):
            common = set.intersection(*(set(r) for r in node))
            varies = lambda k: len({repr(r[k]) for r in node}) > 1  # noqa: E731
            xk = next((k for k in _X_KEYS if k in common and varies(k)), None)
            yk = next((k for k in _Y_KEYS if k in common), None)
            if xk and yk:
                try:
                    xa = np.asarray([float(r[xk]) for r in node])
                    ya = np.asarray([np.nan if r[yk] is None else float(r[yk]) for r in node])
                    if len(xa) > 1:
                        add(path.removesuffix("/results").removesuffix("/rows"), xa, ya, None, xk, yk)
                        return
                except (TypeError, ValueError):
                    pass
            for i, r in enumerate(node):
                visit(r, f"{path}[{i}]")

    try:
        visit(doc, prefix)
    except Exception:  # noqa: BLE001 - a best-effort reader must not fail on odd files
        pass
    return found


def plot_found_curves(ax, curves: dict[str, dict[str, Any]]) -> None:
    """Draw curves returned by :func:`find_curves` on one axes (log x for sizes such as batch_size)."""
    for label, c in curves.items():
        ok = np.isfinite(c["x"]) & np.isfinite(c["y"])
        (line,) = ax.plot(c["x"][ok], c["y"][ok], marker="o" if ok.sum() < 20 else None, ms=3, label=label)
        if c["std"] is not None:
            lo, hi = (c["y"] - c["std"])[ok], (c["y"] + c["std"])[ok]
            ax.fill_between(c["x"][ok], lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xlabel(c["x_label"])
        ax.set_ylabel(c["y_label"])
    if any(c["x_label"].replace(" ", "_") in _LOG_X for c in curves.values()):
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7)

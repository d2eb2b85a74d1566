"""Learning curves: mean over seeds with a +-1 std band, against physical episodes or steps.

``curves.png`` and ``dtrl plot`` draw the greedy return (``eval_return``) when a run has it, with
the training return (behaviour policy, exploration included) dashed.

Works on metrics as ``train`` returns them under ``vmap`` (``{name: [seeds, intervals]}``), on
a single run's metrics (``[intervals]``), or on run folders (``metrics.csv``)::

    from dtrl_jax.experiment import plotting
    fig, ax = plt.subplots()
    plotting.plot_metrics(ax, out.metrics, label="DT n=5")          # out = jax.vmap(train)(keys)
    plotting.plot_runs(["runs/a", "runs/b"], "compare.png")          # what `dtrl plot` does
    plotting.plot_results("benchmarks/results/shield.json", "s.png")  # `dtrl plot RESULTS.json`

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
_Y_LABELS = {"episode_return": "mean physical episode return", "eval_return": "greedy return (eval_return)"}
GREEDY, TRAINING = "eval_return", "episode_return"


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


def has_greedy(metrics) -> bool:
    """Whether ``metrics`` hold a greedy-evaluation curve (``eval_return`` with a finite value)."""
    return GREEDY in metrics and bool(np.isfinite(np.asarray(metrics[GREEDY], dtype=np.float64)).any())


def plot_metrics(ax, metrics, *, label: str | None = None, x: str = "episodes", y: str = "episode_return", color=None,
                 linestyle="-", band: bool = True):
    """Draw one curve (mean over seeds) with its std band on ``ax``; returns the line."""
    xs, mean, std = curve(metrics, x, y)
    (line,) = ax.plot(xs, mean, label=label, color=color, lw=1.8 if linestyle == "-" else 1.2, ls=linestyle)
    if band:
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2 if linestyle == "-" else 0.08,
                        lw=0)
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
    seeds = doc.get("seeds", 1)
    return f"{run_dir.name} ({doc.get('agent', '?')}, {desc}, {seeds} seed{'s' if seeds != 1 else ''})"


def plot_runs(
    run_dirs: Sequence,
    out=None,
    *,
    x: str = "episodes",
    y: str | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
):
    """Overlay the curves of one or more run folders; save to ``out`` (PNG) if given.

    With ``y=None`` (default) each run's greedy curve (``eval_return``, when the run evaluated) is
    drawn solid and its training return (``episode_return``, which includes exploration) dashed in
    the same colour; a run without evaluation shows its training return solid. Any other ``y``
    draws that one metric.

    Returns:
      The ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    from dtrl_jax.experiment.records import read_metrics

    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"got {len(labels)} labels for {len(run_dirs)} runs")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    envs = set()
    greedy_any = False
    for i, run_dir in enumerate(run_dirs):
        metrics = read_metrics(run_dir)
        label = labels[i] if labels else run_label(run_dir)
        if y is None and has_greedy(metrics):
            greedy_any = True
            line = plot_metrics(ax, metrics, label=f"{label}: greedy", x=x, y=GREEDY)
            plot_metrics(ax, metrics, label=f"{label}: training", x=x, y=TRAINING, color=line.get_color(),
                         linestyle="--", band=False)
        else:
            plot_metrics(ax, metrics, label=label, x=x, y=y or TRAINING)
    if greedy_any:
        ax.set_ylabel("return: greedy evaluation (solid), training with exploration (dashed)")
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


#: The schema of benchmark result files (``benchmarks/harness.py`` writes it).
RESULTS_SCHEMA = "dtrl-bench/1"


def read_results(path) -> dict[str, Any]:
    """A benchmark results file in the harness schema; ``ValueError`` (saying what to do) otherwise.

    The schema: ``{"schema": "dtrl-bench/1", "benchmark", "mode", "provenance", "config", "summary",
    "curves": {panel: {"x", "y", "xlabel", "ylabel", "series": {arm: {"x", "mean", "std", "seeds"}}}}}``.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(doc, dict) or doc.get("schema") != RESULTS_SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise ValueError(f"{path}: not a {RESULTS_SCHEMA} benchmark results file (schema={found!r}); it was "
                         "written before the benchmark harness: re-run its script "
                         f"(python -m benchmarks.{path.stem}) or read its JSON directly")
    return doc


def plot_results(path, out=None, *, panels: Sequence[str] | None = None, title: str | None = None):
    """Draw the curve panels of a benchmark results file (:func:`read_results`), one axis per panel.

    Each series is its mean with a +-1 std band over its seeds. ``panels``: names to draw (default all).
    Returns the ``matplotlib.figure.Figure``; saved to ``out`` (PNG) if given.
    """
    from matplotlib.figure import Figure

    doc = read_results(path)
    names = list(doc["curves"]) if panels is None else list(panels)
    missing = [n for n in names if n not in doc["curves"]]
    if missing or not names:
        raise ValueError(f"{path}: no panel {missing or names}; panels: {sorted(doc['curves'])}")
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(6 * cols, 4.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        panel = doc["curves"][name]
        for arm, s in panel["series"].items():
            x, m, sd = (np.asarray(s[k], dtype=np.float64) for k in ("x", "mean", "std"))
            ok = np.isfinite(m)
            (line,) = ax.plot(x[ok], m[ok], lw=1.4, label=f"{arm} ({s['seeds']} seeds)")
            ax.fill_between(x[ok], (m - sd)[ok], (m + sd)[ok], color=line.get_color(), alpha=0.15, lw=0)
        ax.set(title=name, xlabel=panel.get("xlabel", panel["x"]), ylabel=panel.get("ylabel", panel["y"]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title or f"{doc.get('benchmark', Path(path).stem)} ({doc.get('mode')}, "
                 f"commit {str(doc.get('provenance', {}).get('commit'))[:8]})")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    return fig

"""Learning curves: mean over seeds with a +-1 std band, against physical episodes or steps.

``curves.png`` and ``dtrl plot`` draw the greedy return (``eval_return``) when a run has it, with
the training return (behaviour policy, exploration included) dashed.

Works on metrics as ``train`` returns them under ``vmap`` (``{name: [seeds, intervals]}``), on
a single run's metrics (``[intervals]``), or on run folders (``metrics.csv``)::

    from dtrl_jax.experiment import plotting
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

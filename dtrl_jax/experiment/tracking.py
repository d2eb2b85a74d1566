"""Live experiment tracking: TensorBoard and Weights & Biases, fed once per logging interval.

``dtrl train --log tensorboard,wandb`` (or ``runs.train_run(..., trackers=make_trackers(...))``)
adds one sink per backend to the run's per-interval hook (``make_train(on_interval=...)``). Each
sink logs the mean over seeds of every metric (``train/<name>``; the greedy evaluation as
``eval/return`` and ``eval/length``) at x = physical steps, plus one ``seed<i>/episode_return``
(and ``seed<i>/eval_return``) curve per seed.

Both backends are optional and imported only when asked for:

* ``tensorboard``: ``pip install "dtrl-jax[log]"`` (tensorboardX); event files go to ``RUN_DIR/tb``
  (``tensorboard --logdir RUN_DIR/tb``).
* ``wandb``: ``pip install wandb``; the run's config.json is the W&B config, the project is
  ``$WANDB_PROJECT`` or ``dtrl-jax``, files go under ``RUN_DIR/wandb``. Offline mode works as usual
  (``WANDB_MODE=offline``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("tensorboard", "wandb")
_EVAL = {"eval_return": "eval/return", "eval_length": "eval/length"}
_PER_SEED = ("episode_return", "eval_return")


def parse_backends(text: str) -> tuple[str, ...]:
    """``"tensorboard,wandb"`` -> ``("tensorboard", "wandb")``; unknown names raise ValueError."""
    from dtrl_jax.envs.registry import did_you_mean

    names = tuple(dict.fromkeys(s.strip().lower() for s in str(text).split(",") if s.strip()))
    for name in names:
        if name not in BACKENDS:
            raise ValueError(f"unknown logger {name!r}{did_you_mean(name, BACKENDS)}; choose from {', '.join(BACKENDS)}")
    return names


def scalars(row: dict[str, Any]) -> tuple[int, dict[str, float]]:
    """``(physical_steps, {tag: value})`` for one metrics row (leaves scalar or ``[seeds]``)."""
    step = int(np.max(np.asarray(row["physical_steps"])))
    out = {}
    for name, value in row.items():
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if name == "physical_steps" or not np.isfinite(arr).any():
            continue
        out[_EVAL.get(name, f"train/{name}")] = float(np.nanmean(arr))
        if name in _PER_SEED and arr.size > 1:
            for s, v in enumerate(arr):
                if math.isfinite(v):
                    out[f"seed{s}/{name}"] = float(v)
    return step, out


class TensorBoardSink:
    """Writes every row to TensorBoard event files in ``logdir`` (tensorboardX)."""

    def __init__(self, logdir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError('--log tensorboard needs tensorboardX: pip install "dtrl-jax[log]"') from None
        self.logdir = Path(logdir)
        self.writer = SummaryWriter(logdir=str(self.logdir), flush_secs=5)

    def __call__(self, row) -> None:
        step, values = scalars(row)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """Logs every row to a W&B run (``wandb.init`` with the run folder's config)."""

    def __init__(self, run_dir, config: dict[str, Any], name: str | None = None):
        try:
            import wandb
        except ImportError:
            raise ImportError("--log wandb needs wandb: pip install wandb") from None
        self.wandb = wandb
        folder = Path(run_dir) / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "dtrl-jax"), dir=str(run_dir),
                              name=name or Path(run_dir).name, config=config, reinit=True)

    def __call__(self, row) -> None:
        step, values = scalars(row)
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def make_trackers(names, run_dir, config: dict[str, Any]) -> list:
    """One sink per backend name (see :data:`BACKENDS`); call ``close()`` on each at the end."""
    sinks = []
    for name in names:
        if name == "tensorboard":
            sinks.append(TensorBoardSink(Path(run_dir) / "tb"))
        elif name == "wandb":
            sinks.append(WandbSink(run_dir, config))
        else:
            raise ValueError(f"unknown logger {name!r}; choose from {', '.join(BACKENDS)}")
    return sinks

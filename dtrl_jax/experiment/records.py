"""A run folder's plain records: ``metrics.csv`` (written atomically, appended per interval, read back
as arrays) and the errors raised about a run folder.

The lowest layer of ``dtrl_jax.experiment`` (no JAX): ``runs`` (training into folders) and
``plotting`` (drawing them) both build on it, so ``dtrl plot`` and notebooks read runs quickly.
"""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path

import numpy as np


class RunError(Exception):
    """A problem with a run folder a user can act on (the message is one line)."""


class CheckpointError(RunError):
    """A checkpoint that cannot be used: corrupt, or written for a different config."""


def _fsync_dir(path: Path) -> None:
    try:  # make a rename durable
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _metric_order(names) -> list[str]:
    from dtrl_jax.train import METRIC_NAMES

    names = list(names)
    return [n for n in METRIC_NAMES if n in names] + sorted(set(names) - set(METRIC_NAMES))


def _csv_lines(arrays: dict[str, np.ndarray], names: list[str], intervals) -> list[str]:
    seeds = next(iter(arrays.values())).shape[0]
    return [",".join([str(s), str(i)] + [repr(arrays[n][s, j].item()) for n in names])
            for s in range(seeds) for j, i in enumerate(intervals)]


def write_metrics_csv(path, metrics: dict[str, np.ndarray]) -> None:
    """One row per (seed, interval); ``metrics`` leaves are ``[seeds, intervals]`` (atomic rewrite)."""
    names = _metric_order(metrics)
    arrays = {n: np.asarray(metrics[n]) for n in names}
    intervals = range(arrays[names[0]].shape[1])
    lines = [",".join(["seed", "interval", *names])] + _csv_lines(arrays, names, intervals)
    _atomic_write(Path(path), ("\n".join(lines) + "\n").encode())


def read_metrics(run_dir_or_csv) -> dict[str, np.ndarray]:
    """Metrics of a run folder (or a metrics.csv) as ``{name: float64 [seeds, intervals]}``.

    Tolerates a last line cut short by a crash (it is dropped).
    """
    path = Path(run_dir_or_csv)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise RunError(f"no metrics at {path} (has the run finished a logging interval?)")
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        rows = [r for r in reader if header and len(r) == len(header)]
    if not header or not rows:
        raise RunError(f"{path} holds no rows")
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError as err:
        raise RunError(f"{path} is not a metrics table: {err}") from None
    seed, interval = table[:, 0].astype(int), table[:, 1].astype(int)
    out = {}
    for j, name in enumerate(header[2:], start=2):
        arr = np.full((seed.max() + 1, interval.max() + 1), np.nan)
        arr[seed, interval] = table[:, j]
        out[name] = arr
    return out


class MetricsLog:
    """Per-interval sink: appends each logging interval's rows to ``metrics.csv`` as it finishes and
    forwards the row to trackers (TensorBoard, W&B: ``dtrl_jax.experiment.tracking``) and a progress bar.

    Used as ``make_train(on_interval=...)``'s target by :func:`train_run`; a crash therefore leaves every
    finished interval on disk. At each checkpoint the file is rewritten from the checkpointed metrics
    (``sync``), which also drops rows of intervals a resumed run will redo.
    """

    def __init__(self, path, seeds: int, log_every: int, sinks=(), *, write: bool = True):
        self.path, self.seeds, self.log_every, self.write = Path(path), seeds, log_every, write
        self.sinks = [s for s in sinks if s is not None]
        self.names: list[str] | None = None
        self.next_interval = 0
        self._lock = threading.Lock()

    def sync(self, metrics: dict[str, np.ndarray] | None) -> None:
        if not self.write:
            return
        with self._lock:
            if metrics:
                write_metrics_csv(self.path, metrics)
                self.names = _metric_order(metrics)
                self.next_interval = next(iter(metrics.values())).shape[1]
            else:
                self.path.unlink(missing_ok=True)
                self.names, self.next_interval = None, 0

    def __call__(self, row) -> None:
        arrays = {k: np.broadcast_to(np.asarray(v), (self.seeds,)).reshape(self.seeds, 1) for k, v in row.items()}
        interval = int(np.max(arrays["physical_steps"])) // self.log_every - 1
        with self._lock:
            if self.write and interval >= self.next_interval:  # never write an interval twice
                if self.names is None:
                    self.names = _metric_order(arrays)
                    header = ",".join(["seed", "interval", *self.names]) + "\n"
                    self.path.write_text(header)
                with open(self.path, "a") as fh:
                    fh.write("\n".join(_csv_lines(arrays, self.names, [interval])) + "\n")
                    fh.flush()
                self.next_interval = interval + 1
        for sink in self.sinks:
            sink(row)

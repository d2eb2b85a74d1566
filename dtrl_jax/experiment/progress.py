"""A progress bar for a long jitted run, fed from inside the compiled program.

``make_train(..., on_interval=bar.update)`` calls ``bar.update(metrics_row)`` on the host at the
end of every logging interval (once per interval, even under ``vmap``: the leaves then carry the
seed axis). Nothing here touches the jitted core; to embed ``train`` without any output pass
``on_interval=None`` (the CLI's ``--no-progress``).

    bar = ProgressBar(total_steps=cfg.total_timesteps, seeds=8)
    train = dt.make_train(cfg, env, params, on_interval=bar.update)
    out = jax.jit(jax.vmap(train))(keys)
    bar.close()

On a terminal the bar redraws one line; elsewhere (logs, CI) it prints a line at most every
``min_interval_s`` seconds, and always the last one. Plain text on stderr, no dependency.

``GracefulStop`` turns the first Ctrl-C during a checkpointed run into "stop after the next
checkpoint" (``dtrl train`` uses it; ``dtrl train --resume DIR`` continues).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from typing import Any, TextIO

import numpy as np


def _si(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """Physical steps, physical episodes, mean return and steps/s of a running ``train``.

    Args:
      total_steps: physical steps of the whole run (``config.total_timesteps``), per seed.
      seeds: number of vmapped seeds (for the steps/s figure, which counts all seeds).
      stream: where to write (default ``sys.stderr``).
      enabled: False makes every method a no-op (handy to keep one code path).
      label: a prefix, e.g. the env id.
      min_interval_s: least time between two printed lines when the stream is not a terminal.
    """

    def __init__(
        self,
        total_steps: int,
        *,
        seeds: int = 1,
        stream: TextIO | None = None,
        enabled: bool = True,
        label: str = "",
        width: int = 24,
        min_interval_s: float = 2.0,
    ):
        self.total = max(int(total_steps), 1)
        self.seeds = max(int(seeds), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.label = label
        self.width = width
        self.min_interval_s = min_interval_s
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._first: tuple[float, int] | None = None
        self._last_print = -math.inf
        self._last_return = math.nan
        self._open_line = False
        self.last: dict[str, float] = {}

    def update(self, row: dict[str, Any]) -> None:
        """Consume one metrics row (leaves are scalars, or ``[seeds]`` arrays under ``vmap``)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        steps = int(np.max(np.asarray(row["physical_steps"])))
        episodes = float(np.mean(np.asarray(row["physical_episodes"])))
        ret = np.asarray(row["episode_return"], dtype=np.float64)
        if np.any(np.isfinite(ret)):
            self._last_return = float(np.nanmean(ret))
        greedy = np.asarray(row.get("eval_return", np.nan), dtype=np.float64)
        greedy = float(np.nanmean(greedy)) if np.any(np.isfinite(greedy)) else math.nan
        with self._lock:
            if self._first is None:
                self._first = (now, steps)
                rate = math.nan
            else:
                t0, s0 = self._first
                rate = (steps - s0) * self.seeds / max(now - t0, 1e-9)
            self.last = {"steps": steps, "episodes": episodes, "episode_return": self._last_return, "rate": rate,
                         "eval_return": greedy}
            done = steps >= self.total
            gap = 0.1 if self.tty else self.min_interval_s
            if not done and now - self._last_print < gap:
                return
            self._last_print = now
            self._write(self.render(), final=done)

    def render(self) -> str:
        """The current status line (also useful in tests)."""
        d = self.last
        if not d:
            return f"{self.label} waiting for the first logging interval"
        frac = min(d["steps"] / self.total, 1.0)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        eta = (self.total - d["steps"]) * self.seeds / d["rate"] if d["rate"] and d["rate"] > 0 else math.nan
        ret = "-" if not math.isfinite(d["episode_return"]) else f"{d['episode_return']:.4g}"
        if math.isfinite(d.get("eval_return", math.nan)):
            ret = f"{ret} | greedy {d['eval_return']:.4g}"
        prefix = f"{self.label} " if self.label else ""
        return (
            f"{prefix}[{bar}] {frac:4.0%} steps {d['steps']:,}/{self.total:,} | episodes {d['episodes']:,.0f} "
            f"| return {ret} | {_si(d['rate'])} steps/s | eta {_hms(eta)}"
        )

    def _write(self, line: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
            self._open_line = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line (call once the run is over)."""
        if self.enabled and self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Ticker:
    """A "compiling ..." line with the elapsed time while the main thread is busy (XLA compiles).

    On a terminal the line is redrawn every second; elsewhere a line is printed every ``every_s``
    seconds. ``with Ticker("compiling"): ...``; ``ticker.elapsed`` holds the time taken.
    """

    def __init__(self, text: str, *, stream: TextIO | None = None, enabled: bool = True, every_s: float = 10.0):
        self.text, self.enabled, self.every_s = text, enabled, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.elapsed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _line(self, seconds: float) -> str:
        return f"{self.text} ... {seconds:.0f} s"

    def _run(self, t0: float) -> None:
        gap = 1.0 if self.tty else self.every_s
        while not self._stop.wait(gap):
            line = self._line(time.perf_counter() - t0)
            self.stream.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
            self.stream.flush()

    def __enter__(self) -> Ticker:
        self._t0 = time.perf_counter()
        if self.enabled:
            self.stream.write(f"{self.text} ..." + ("" if self.tty else "\n"))
            self.stream.flush()
            self._thread = threading.Thread(target=self._run, args=(self._t0,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self._t0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            done = f"{self.text}: done in {self.elapsed:.1f} s"
            self.stream.write(("\r\x1b[2K" if self.tty else "") + done + "\n")
            self.stream.flush()


class Stopped(Exception):
    """Raised by ``GracefulStop.check`` after a checkpoint once a stop was requested."""

    def __init__(self, interval: int):
        super().__init__(interval)
        self.interval = interval


class GracefulStop:
    """Ctrl-C / SIGTERM handling for a chunked (checkpointed) run, as a context manager.

    First Ctrl-C (or SIGTERM): ``check(interval)`` (pass it as ``train_run(on_checkpoint=...)``) raises ``Stopped``
    after the next checkpoint, so nothing is lost; second Ctrl-C (or the first, for an unchunked
    run, which cannot stop early): ``KeyboardInterrupt`` at once.
    """

    #: SIGTERM too: batch schedulers (Slurm, Kubernetes) send it before killing a job.
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say, chunked: bool, total: int):
        self.say, self.chunked, self.total = say, chunked, total
        self.requested, self.previous = False, None

    def _handler(self, signum, frame):
        if self.requested or not self.chunked:
            raise KeyboardInterrupt
        self.requested = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.say(f"\n{name}: stopping after the next checkpoint (Ctrl-C again to stop at once)")

    def check(self, interval: int) -> None:
        if self.requested and interval < self.total:
            raise Stopped(interval)

    def __enter__(self):
        self.previous = {}
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

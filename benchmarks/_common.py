"""Helpers shared by every benchmark script in ``benchmarks/``.

A benchmark script is a module run as ``python -m benchmarks.<name> [--quick|--full] [--device cpu|gpu]
[--out DIR]``. It uses :func:`add_common_args` for those flags, :func:`select_device` to pick the
accelerator, :func:`time_compiled` to measure compile time separately from steady-state run time, and
:func:`write_json` to store its result (together with :func:`environment_info` and a UTC timestamp) as
``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

#: Packages whose versions every result file records.
PACKAGES: tuple[str, ...] = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "chex",
    "gymnax",
    "distrax",
    "numpy",
    "matplotlib",
    "dtrl-jax",
)

_RESULTS_DIR = Path(__file__).resolve().parent / "results"


def results_dir(out: str | os.PathLike[str] | None = None) -> Path:
    """Directory that result files go to, created if missing.

    Args:
      out: an explicit directory (e.g. the ``--out`` flag); ``None`` means ``benchmarks/results/``
        next to this file.

    Returns:
      The directory as an absolute :class:`~pathlib.Path`.
    """
    path = Path(out).expanduser().resolve() if out is not None else _RESULTS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _usable_cpus() -> int | None:
    """CPUs this process may run on (its affinity mask), falling back to ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def environment_info() -> dict[str, Any]:
    """Describe the software and hardware a benchmark ran on.

    Returns:
      A JSON-serialisable dict with ``packages`` (versions of jax, jaxlib, flax, optax, chex, gymnax,
      distrax, numpy, matplotlib and dtrl-jax; ``None`` where not installed), ``python`` (version
      string), ``platform`` (OS / machine string), ``cpu_count`` (logical CPUs of the machine),
      ``usable_cpus`` (CPUs in this process's affinity mask), ``jax_backend`` (the default backend,
      e.g. ``"cpu"`` or ``"gpu"``), ``jax_devices`` (one ``{"id", "platform", "device_kind", "repr"}``
      entry per visible device), ``jax_default_prng_impl``, ``xla_flags`` (the ``XLA_FLAGS``
      environment variable, if set) and ``load_average`` (1/5/15-minute load when the info was taken,
      a hint of background work that could have slowed the measurements).
    """
    devices = []
    for dev in jax.devices():
        devices.append(
            {
                "id": int(dev.id),
                "platform": str(dev.platform),
                "device_kind": str(getattr(dev, "device_kind", "")),
                "repr": repr(dev),
            }
        )
    return {
        "packages": {name: _package_version(name) for name in PACKAGES},
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "jax_backend": jax.default_backend(),
        "jax_devices": devices,
        "jax_default_prng_impl": str(jax.config.jax_default_prng_impl),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "load_average": load_average(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute system load averages, or ``None`` where the OS does not report them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def utc_timestamp() -> str:
    """The current time as an ISO-8601 UTC string with a trailing ``Z`` (second resolution)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _json_default(obj: Any) -> Any:
    """Fallback JSON encoder for numpy / JAX scalars and arrays, dataclasses and paths."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / jax arrays and scalars
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _round(x: Any, digits: int) -> Any:
    if isinstance(x, float) and math.isfinite(x) and x != 0.0:
        return float(f"{x:.{digits}g}")
    return x


def compact_json(doc: Any, *, digits: int = 6, indent: int = 1) -> str:
    """``doc`` as JSON with every list of scalars on one line and floats to ``digits`` significant digits.

    Objects and lists of objects are indented (readable, diffable); a curve stays one line instead
    of one number per line. NaN/inf are written as JSON's ``NaN``/``Infinity`` (Python's reader).
    """
    plain = json.loads(json.dumps(doc, default=_json_default, allow_nan=True))

    def encode(x: Any, level: int) -> str:
        pad, inner = " " * (indent * level), " " * (indent * (level + 1))
        if isinstance(x, dict):
            if not x:
                return "{}"
            items = [f"{inner}{json.dumps(str(k))}: {encode(v, level + 1)}" for k, v in x.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(x, list):
            if all(not isinstance(v, (dict, list)) for v in x):
                return json.dumps([_round(v, digits) for v in x], allow_nan=True, separators=(",", ":"))
            return "[\n" + ",\n".join(inner + encode(v, level + 1) for v in x) + "\n" + pad + "]"
        return json.dumps(_round(x, digits), allow_nan=True)

    return encode(plain, 0)


def write_json(
    name: str,
    payload: dict[str, Any],
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``payload`` as ``<results dir>/<name>.json`` (:func:`compact_json`: small, one line per curve).

    The file holds ``{"benchmark": name, "timestamp_utc": ..., "environment": environment_info(),
    **payload}``; keys already in ``payload`` win over these three.

    Args:
      name: benchmark name, used as the file stem (``"env_throughput"`` -> ``env_throughput.json``).
      payload: the JSON-serialisable results (numpy / JAX scalars are converted).
      out: output directory (see :func:`results_dir`); ``None`` for ``benchmarks/results/``.

    Returns:
      The path written.
    """
    document: dict[str, Any] = {
        "benchmark": name,
        "timestamp_utc": utc_timestamp(),
        "environment": environment_info(),
    }
    document.update(payload)
    path = results_dir(out) / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(compact_json(document))
        fh.write("\n")
    os.replace(tmp, path)
    return path


@dataclasses.dataclass(frozen=True)
class Timing:
    """Result of :func:`time_compiled`.

    Attributes:
      lower_s: seconds spent tracing and lowering to StableHLO (``jax.jit(fn).lower(*args)``).
      compile_s: seconds spent in XLA compilation (``lowered.compile()``).
      first_run_s: seconds of the first (warm-up) call of the compiled executable, not in the stats.
      times_s: wall-clock seconds of each timed call, each ended by ``block_until_ready``.
      best_s: minimum of ``times_s``.
      median_s: median of ``times_s``.
      cpu_times_s: CPU seconds (``time.process_time``: user + system time of all threads of this
        process) of each timed call. On a CPU backend this is insensitive to other processes
        competing for the cores, so it is a steadier figure than wall time on a busy machine; it
        exceeds the wall time when XLA runs the call on several threads.
      best_cpu_s: minimum of ``cpu_times_s``.
      median_cpu_s: median of ``cpu_times_s``.
      output: the output of the last call (so callers can check it, or keep it alive).
    """

    lower_s: float
    compile_s: float
    first_run_s: float
    times_s: tuple[float, ...]
    best_s: float
    median_s: float
    cpu_times_s: tuple[float, ...] = ()
    best_cpu_s: float = math.nan
    median_cpu_s: float = math.nan
    output: Any = dataclasses.field(repr=False, compare=False, default=None)

    @property
    def trace_and_compile_s(self) -> float:
        """Lowering plus compilation: the one-off cost before the first call can run."""
        return self.lower_s + self.compile_s


def time_compiled(
    fn: Callable[..., Any],
    *args: Any,
    repeats: int = 5,
    budget_s: float | None = None,
    **jit_kwargs: Any,
) -> Timing:
    """Time ``fn(*args)`` with compilation separated from steady-state execution.

    ``fn`` is wrapped in :func:`jax.jit` (unless it already is a jitted function), lowered and
    compiled ahead of time (``jax.jit(fn).lower(*args).compile()``), which gives the compile time.
    The compiled executable is then called once as a warm-up, and then up to ``repeats`` more times,
    each call ended with :func:`jax.block_until_ready` so that asynchronous dispatch does not hide
    any work.

    Args:
      fn: the function to benchmark; it must be jittable with ``args``.
      *args: its arguments (arrays or pytrees of arrays), already placed on the target device.
      repeats: the number of timed calls (at least 1).
      budget_s: optional wall-clock budget for the timed calls: after each timed call, stop early
        once the timed calls together have taken longer than this (at least one timed call is
        always made). ``None``: always make ``repeats`` calls.
      **jit_kwargs: passed to :func:`jax.jit` (e.g. ``static_argnums``) when ``fn`` is not jitted.

    Returns:
      A :class:`Timing` with lowering, compile, warm-up and per-call wall and CPU times; ``best_s``
      (the minimum) is the usual steady-state figure, ``median_s`` shows its spread.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn, **jit_kwargs)

    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    out = jax.block_until_ready(compiled(*args))
    t3 = time.perf_counter()

    times: list[float] = []
    cpu_times: list[float] = []
    spent = 0.0
    for _ in range(repeats):
        cpu_start = time.process_time()
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        elapsed = time.perf_counter() - start
        cpu_times.append(time.process_time() - cpu_start)
        times.append(elapsed)
        spent += elapsed
        if budget_s is not None and spent >= budget_s:
            break

    return Timing(
        lower_s=t1 - t0,
        compile_s=t2 - t1,
        first_run_s=t3 - t2,
        times_s=tuple(times),
        best_s=min(times),
        median_s=statistics.median(times),
        cpu_times_s=tuple(cpu_times),
        best_cpu_s=min(cpu_times),
        median_cpu_s=statistics.median(cpu_times),
        output=out,
    )


def select_device(name: str) -> jax.Device:
    """The first JAX device of the kind named by a ``--device`` flag.

    Args:
      name: ``"cpu"`` or ``"gpu"`` (``"cuda"`` / ``"rocm"`` are accepted as ``"gpu"``).

    Returns:
      A :class:`jax.Device`; use it with ``jax.default_device(device)`` and/or
      ``jax.device_put(x, device)``.

    Raises:
      SystemExit: ``name`` is ``"gpu"`` but JAX sees no GPU (the message says how to install the CUDA
        build of JAX and what devices are visible), or ``name`` is unknown.
    """
    kind = name.lower()
    if kind in ("cuda", "rocm"):
        kind = "gpu"
    if kind not in ("cpu", "gpu"):
        raise SystemExit(f"--device must be 'cpu' or 'gpu', got {name!r}")
    try:
        devices = jax.devices(kind)
    except RuntimeError:
        devices = []
    if not devices:
        visible = ", ".join(repr(d) for d in jax.devices()) or "none"
        raise SystemExit(
            f"--device {name} requested but JAX sees no {kind.upper()} "
            f"(default backend: {jax.default_backend()}; visible devices: {visible}). "
            "Install a GPU build of JAX (e.g. `pip install -e '.[cuda]'`, i.e. jax[cuda12]) and check "
            "that the driver is visible (nvidia-smi), or run with --device cpu."
        )
    return devices[0]


def describe_device(device: jax.Device) -> str:
    """Short human-readable name of ``device``, e.g. ``"cpu (2 cores)"`` or ``"gpu NVIDIA H200"``."""
    if device.platform == "cpu":
        return f"cpu ({_usable_cpus()} cores)"
    kind = getattr(device, "device_kind", "") or ""
    return f"{device.platform} {kind}".strip()


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags every benchmark script shares to ``parser``.

    Flags:
      ``--quick``: a reduced sweep (CI / smoke sized, about two minutes on a 2-core CPU).
      ``--full``: the most thorough sweep (e.g. extra sizes meant for a GPU).
      ``--device {cpu,gpu}``: where to run (default ``cpu``); see :func:`select_device`.
      ``--out DIR``: output directory for result files (default ``benchmarks/results/``).

    ``--quick`` and ``--full`` are mutually exclusive; use :func:`run_mode` to read the chosen mode.

    Returns:
      ``parser`` (for chaining).
    """
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced sweep (about 2 minutes on 2 CPU cores)")
    mode.add_argument("--full", action="store_true", help="largest sweep (extra sizes, more repeats)")
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="device to run on (default: cpu); gpu fails with a clear message if none is visible",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="directory for the result files (default: benchmarks/results/)",
    )
    return parser


def run_mode(args: argparse.Namespace) -> str:
    """``"quick"``, ``"full"`` or ``"default"`` from arguments parsed with :func:`add_common_args`."""
    if getattr(args, "quick", False):
        return "quick"
    if getattr(args, "full", False):
        return "full"
    return "default"


def add_study_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """:func:`add_common_args` plus the twin studies' ``--tiny`` (smoke-test size) and ``--seed``."""
    add_common_args(parser)
    parser.add_argument("--tiny", action="store_true", help="smoke-test size (seconds of compute, nothing learned)")
    parser.add_argument("--seed", type=int, default=0, help="root key of the study (default 0)")
    return parser


def study_mode(args: argparse.Namespace) -> str:
    """``"tiny"`` with ``--tiny``, else :func:`run_mode`."""
    return "tiny" if getattr(args, "tiny", False) else run_mode(args)


def override(settings: dict[str, Any], args: argparse.Namespace, fields: Sequence[str]) -> dict[str, Any]:
    """``settings`` with each of ``fields`` given on the command line (an int >= 1) put in its place."""
    out = dict(settings)
    for field in fields:
        value = getattr(args, field)
        if value is not None:
            if value < 1:
                raise SystemExit(f"--{field.replace('_', '-')} must be >= 1, got {value}")
            out[field] = value
    return out


def subset(text: str | None, allowed: Sequence[str], flag: str) -> list[str] | None:
    """A comma-separated subset of ``allowed`` from a ``--flag`` (None when not given); exits on a bad name."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or set(names) - set(allowed):
        raise SystemExit(f"--{flag}={text!r}: expected a comma-separated subset of {','.join(allowed)}")
    return names


def format_rate(x: float) -> str:
    """Format a rate such as steps/s compactly: ``9.1M``, ``512k``, ``37.5``; ``-`` for missing."""
    if x is None or not math.isfinite(x):
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(parts)

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def fmt1(x: float | None) -> str:
    """A number with one decimal, ``nan`` for None / NaN (for the conclusions scripts print)."""
    return "nan" if x is None or not math.isfinite(x) else f"{x:.1f}"


def log(msg: str) -> None:
    """Print a progress line to stdout immediately (flushed)."""
    print(msg, flush=True)


def int_list(text: str, minimum: int = 1) -> list[int]:
    """argparse type: ``"1,4,16"`` -> ``[1, 4, 16]``, every value an integer >= ``minimum``."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values or any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= {minimum}, got {text!r}")
    return values


def nonnegative_int_list(text: str) -> list[int]:
    """argparse type: like :func:`int_list`, zero allowed."""
    return int_list(text, minimum=0)


def write_results(name: str, doc: dict[str, Any], out=None, plot: Callable[[Path], Any] | None = None) -> Path:
    """:func:`write_json` of ``doc``, then ``plot(png_path)`` (unless None) next to it; logs both paths."""
    path = write_json(name, doc, out)
    log(f"wrote {path}")
    if plot is not None:
        png = results_dir(out) / f"{name}.png"
        plot(png)
        log(f"wrote {png}")
    return path

"""Run folders and checkpoints: everything a training run leaves on disk, and resuming it.

This module sits *above* ``train.py``: it calls ``make_train`` like any user would, runs the
compiled program in chunks of logging intervals (``train.run`` on slices of ``intervals``) and
writes files between the chunks. The jitted core never sees a file.

A run folder holds::

    RUN_DIR/
      config.json         everything needed to repeat the run (see RunSpec.to_json) + versions, device
      metrics.csv         one row per (seed, logging interval): the metrics of train.METRIC_NAMES
      curves.png          mean physical episode return over seeds (+- std) vs physical episodes
      checkpoints/
        ckpt-000004.dtrl  runner state after 4 logging intervals (format below)
      eval.json           written by ``dtrl eval``

Checkpoint format (``dtrl-checkpoint/1``), one file per saved interval boundary::

    line 1   b"dtrl-checkpoint/1\\n"                      magic
    line 2   one line of JSON, then b"\\n"                header
    rest     payload_bytes bytes                          flax.serialization.to_bytes(payload)

The header holds ``config_hash`` (RunSpec.hash(): env id, env params, agent config incl. twin,
seed, seeds), ``interval`` (logging intervals completed), ``num_intervals``, ``physical_steps``,
``payload_bytes``, ``sha256`` (of the payload), ``created`` and ``dtrl_jax`` (version). The
payload is the msgpack state dict of ``{"runner_state": RunnerState (leading [seeds] axis),
"metrics": {name: [seeds, interval]}}``; typed PRNG key leaves are stored as their key data.
Files are written to a temporary name, fsync'ed and renamed, so a crash leaves either the old set
of checkpoints or the new one. On resume, a *truncated* file (shorter than its header says) is
skipped with a warning in favour of the previous one; a file that is complete but fails its
checksum, or was written for another config, raises ``CheckpointError``.

Because ``train.run`` over ``intervals[:i]`` then ``intervals[i:]`` equals one full run,
a resumed run gives the same metrics, bit for bit, as an uninterrupted one with the same key.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from dtrl_jax.config import DQNConfig, QLearningConfig, TwinConfig
from dtrl_jax.envs import make as make_registered
from dtrl_jax.envs import registered_envs
from dtrl_jax.train import METRIC_NAMES, make_train

RUN_FORMAT = "dtrl-run/1"
CKPT_MAGIC = b"dtrl-checkpoint/1\n"
AGENTS: dict[str, type] = {"ql": QLearningConfig, "dqn": DQNConfig}
_VERSIONED = ("dtrl-jax", "jax", "jaxlib", "flax", "optax", "chex", "gymnax", "distrax", "numpy")


class RunError(Exception):
    """A problem with a run folder a user can act on (the message is one line)."""


class CheckpointError(RunError):
    """A checkpoint that cannot be used: corrupt, or written for a different config."""


# ----------------------------------------------------------------------------------- environments
def make_env(env_id: str, overrides: dict[str, Any] | None = None):
    """``(env, params)`` for a registered id (``dt.make``) or any gymnax id (``gymnax.make``)."""
    overrides = dict(overrides or {})
    if env_id in registered_envs():
        return make_registered(env_id, **overrides)
    import gymnax

    if env_id not in gymnax.registered_envs:
        raise ValueError(
            f"unknown environment {env_id!r}; use one of {sorted(registered_envs())} "
            "or a gymnax id such as 'CartPole-v1' (see `dtrl envs`)"
        )
    env, params = gymnax.make(env_id)
    if overrides:
        names = {f.name for f in dataclasses.fields(params)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown {type(params).__name__} field(s) {unknown}; allowed: {sorted(names)}")
        params = params.replace(**overrides)
    return env, params


def default_env_params(env_id: str):
    """The default ``EnvParams`` of ``env_id`` (to type ``--env-param`` values)."""
    return make_env(env_id)[1]


# ---------------------------------------------------------------------------------------- configs
def _plain(value: Any) -> Any:
    """A JSON-friendly version of a config value (arrays -> numbers/lists, tuples -> lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return np.asarray(value).tolist()
    return value


def config_to_dict(config) -> dict[str, Any]:
    """Fields of an agent config as a JSON-friendly dict; ``twin`` is a nested dict or None."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "twin":
            out["twin"] = None if value is None else config_to_dict(value)
        else:
            out[f.name] = _plain(value)
    return out


def _from_dict(cls: type, data: dict[str, Any]):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}")
    kwargs = {}
    for name, value in data.items():
        if "tuple" in str(hints[name]) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(agent: str, data: dict[str, Any]):
    """Inverse of :func:`config_to_dict` for agent ``'ql'`` or ``'dqn'``."""
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; expected one of {sorted(AGENTS)}")
    data = dict(data)
    twin = data.pop("twin", None)
    if twin is not None:
        data["twin"] = _from_dict(TwinConfig, twin)
    return _from_dict(AGENTS[agent], data)


def agent_name(config) -> str:
    for name, cls in AGENTS.items():
        if type(config) is cls:
            return name
    raise TypeError(f"config must be a QLearningConfig or DQNConfig, got {type(config).__name__}")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What fixes a run's computation: env id + overrides, agent config (incl. twin), seed, seeds.

    The seeds are ``jax.random.split(jax.random.key(seed), seeds)``, run as one ``vmap``.
    """

    env_id: str
    config: Any
    env_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    seeds: int = 1

    def __post_init__(self):
        agent_name(self.config)
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds={self.seeds!r}: expected an integer >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r}: expected an integer >= 0")

    @property
    def agent(self) -> str:
        return agent_name(self.config)

    def to_json(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "env_params": {k: _plain(v) for k, v in sorted(self.env_params.items())},
            "agent": self.agent,
            "config": config_to_dict(self.config),
            "seed": self.seed,
            "seeds": self.seeds,
            "key": f"jax.random.split(jax.random.key({self.seed}), {self.seeds})",
            "prng_impl": str(jax.config.jax_default_prng_impl),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        return cls(
            env_id=data["env_id"],
            config=config_from_dict(data["agent"], data["config"]),
            env_params=dict(data.get("env_params", {})),
            seed=int(data.get("seed", 0)),
            seeds=int(data.get("seeds", 1)),
        )

    def hash(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def make_env(self):
        return make_env(self.env_id, self.env_params)

    def keys(self) -> jax.Array:
        return jax.random.split(jax.random.key(self.seed), self.seeds)


@functools.lru_cache(maxsize=1)
def environment_info() -> dict[str, Any]:
    """Package versions and the device, recorded in config.json."""
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    dev = jax.devices()[0]
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": {"platform": dev.platform, "kind": getattr(dev, "device_kind", ""), "count": jax.device_count()},
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:  # make the rename durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def create_run(run_dir, spec: RunSpec, *, checkpoint_every: int | None = None, command: list[str] | None = None) -> Path:
    """Create ``run_dir`` with its ``config.json``; refuse a folder that already holds a run."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
    log_every = spec.config.log_every
    if checkpoint_every is not None and (checkpoint_every <= 0 or checkpoint_every % log_every):
        raise ValueError(
            f"checkpoint_every={checkpoint_every} must be a positive multiple of log_every={log_every}"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {"format": RUN_FORMAT, **spec.to_json(), "config_hash": spec.hash(),
           "checkpoint_every": checkpoint_every, "created": _now(), "command": command,
           **environment_info()}
    _atomic_write(run_dir / "config.json", (json.dumps(doc, indent=2) + "\n").encode())
    return run_dir


def load_run(run_dir) -> tuple[RunSpec, dict[str, Any]]:
    """``(spec, config.json as a dict)`` of a run folder."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run folder (no config.json)")
    try:
        doc = json.loads(path.read_text())
        spec = RunSpec.from_json(doc)
    except (ValueError, KeyError, TypeError) as err:
        raise RunError(f"{path} is not a valid run config: {err}") from None
    if doc.get("config_hash") not in (None, spec.hash()):
        raise RunError(f"{path} was edited: its config_hash {doc['config_hash']} does not match its content ({spec.hash()})")
    return spec, doc


# ---------------------------------------------------------------------------------------- metrics
def write_metrics_csv(path, metrics: dict[str, np.ndarray]) -> None:
    """One row per (seed, interval); ``metrics`` leaves are ``[seeds, intervals]``."""
    names = [n for n in METRIC_NAMES if n in metrics] + sorted(set(metrics) - set(METRIC_NAMES))
    arrays = {n: np.asarray(metrics[n]) for n in names}
    seeds, intervals = arrays[names[0]].shape[:2]
    lines = [",".join(["seed", "interval", *names])]
    for s in range(seeds):
        for i in range(intervals):
            lines.append(",".join([str(s), str(i)] + [repr(arrays[n][s, i].item()) for n in names]))
    _atomic_write(Path(path), ("\n".join(lines) + "\n").encode())


def read_metrics(run_dir_or_csv) -> dict[str, np.ndarray]:
    """Metrics of a run folder (or a metrics.csv) as ``{name: float64 [seeds, intervals]}``."""
    path = Path(run_dir_or_csv)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise RunError(f"no metrics at {path} (has the run finished a logging interval?)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise RunError(f"{path} holds no rows")
    seeds = 1 + max(int(r["seed"]) for r in rows)
    intervals = 1 + max(int(r["interval"]) for r in rows)
    names = [n for n in rows[0] if n not in ("seed", "interval")]
    out = {n: np.full((seeds, intervals), np.nan) for n in names}
    for r in rows:
        for n in names:
            out[n][int(r["seed"]), int(r["interval"])] = float(r[n])
    return out


# ------------------------------------------------------------------------------------ checkpoints
def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _key_impl(x):
    try:
        return jax.random.key_impl(x)
    except Exception:  # noqa: BLE001 - an abstract (ShapeDtypeStruct) key leaf
        return x.dtype._impl


def _stored_shapes(template):
    """Shapes/dtypes of the runner state as stored (typed keys as their key data)."""
    return jax.eval_shape(
        lambda t: jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, t), template
    )


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir, interval: int) -> Path:
    return checkpoint_dir(run_dir) / f"ckpt-{interval:06d}.dtrl"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """``[(interval, path)]`` of the checkpoint files in ``run_dir``, oldest first."""
    found = []
    for p in checkpoint_dir(run_dir).glob("ckpt-*.dtrl"):
        try:
            found.append((int(p.stem.split("-")[1]), p))
        except (IndexError, ValueError):
            continue
    return sorted(found)


def save_checkpoint(run_dir, spec: RunSpec, interval: int, runner_state, metrics, *, keep: int = 2) -> Path:
    """Write the checkpoint after ``interval`` logging intervals atomically; keep the newest ``keep``."""
    state = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, runner_state)
    payload = serialization.to_bytes({"runner_state": jax.device_get(state),
                                      "metrics": {k: np.asarray(v) for k, v in metrics.items()}})
    config = spec.config
    header = {
        "config_hash": spec.hash(),
        "interval": int(interval),
        "num_intervals": int(config.num_intervals),
        "physical_steps": int(interval * config.log_every),
        "payload_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "created": _now(),
        "dtrl_jax": environment_info()["versions"]["dtrl-jax"],
    }
    path = checkpoint_path(run_dir, interval)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, CKPT_MAGIC + json.dumps(header).encode() + b"\n" + payload)
    for _, old in list_checkpoints(run_dir)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


class _Truncated(Exception):
    pass


def read_checkpoint(path, spec: RunSpec, template):
    """``(interval, runner_state, metrics)`` from one checkpoint file, checked against ``spec``.

    ``template`` is a runner state of the right structure (e.g. from ``train.init``): it gives the
    tree structure, and every restored leaf must match its shape and dtype.

    Raises:
      CheckpointError: corrupt file, checksum failure, other config, or a state of another shape.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(CKPT_MAGIC):
        if CKPT_MAGIC.startswith(data):
            raise _Truncated(f"{path} is truncated ({len(data)} bytes)")
        raise CheckpointError(f"{path} is not a dtrl checkpoint (bad magic line)")
    end = data.find(b"\n", len(CKPT_MAGIC))
    if end < 0:
        raise _Truncated(f"{path} is truncated inside its header")
    try:
        header = json.loads(data[len(CKPT_MAGIC):end])
        size, digest = int(header["payload_bytes"]), header["sha256"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path} is corrupt: unreadable header") from None
    payload = data[end + 1:]
    if len(payload) < size:
        raise _Truncated(f"{path} is truncated ({len(payload)} of {size} payload bytes)")
    if len(payload) > size or hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path} is corrupt: its sha256 checksum does not match its content")
    if header.get("config_hash") != spec.hash():
        raise CheckpointError(
            f"{path} was written for a different config (hash {header.get('config_hash')}, this run "
            f"{spec.hash()}); it cannot be resumed with this config.json"
        )
    target = _stored_shapes(template)
    try:
        restored = serialization.msgpack_restore(payload)
        metrics = {k: np.asarray(v) for k, v in restored["metrics"].items()}
        state = serialization.from_state_dict(target, restored["runner_state"])
    except Exception as err:  # noqa: BLE001 - any decoding failure is a corrupt/mismatched file
        raise CheckpointError(f"{path} does not hold a runner state of this run: {err}") from None
    flat_t, treedef = jax.tree_util.tree_flatten_with_path(target)
    flat_s = jax.tree.leaves(state)
    if len(flat_s) != len(flat_t):
        raise CheckpointError(f"{path} holds a runner state of another structure than this config builds")
    leaves = []
    for (kp, t), s, orig in zip(flat_t, flat_s, jax.tree.leaves(template)):
        s = np.asarray(s)
        if s.shape != tuple(t.shape) or s.dtype != t.dtype:
            raise CheckpointError(
                f"{path}: runner_state{jax.tree_util.keystr(kp)} has shape {s.shape} {s.dtype}, this config "
                f"expects {tuple(t.shape)} {t.dtype}"
            )
        leaves.append(jax.random.wrap_key_data(s, impl=_key_impl(orig)) if _is_key(orig) else s)
    interval = int(header["interval"])
    for name, value in metrics.items():
        if value.shape[1:2] != (interval,):
            raise CheckpointError(f"{path}: metrics {name!r} has shape {value.shape}, expected [seeds, {interval}]")
    return interval, jax.tree.unflatten(treedef, leaves), metrics


def latest_checkpoint(run_dir, spec: RunSpec, template, *, warn: Callable[[str], None] | None = None):
    """The newest usable checkpoint as ``(interval, runner_state, metrics)``, or None if there is none.

    Truncated files (an interrupted write or copy) are skipped with a warning; the previous good
    checkpoint is used instead. Corrupt or mismatched files raise ``CheckpointError``.
    """
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=3))
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return read_checkpoint(path, spec, template)
        except _Truncated as err:
            warn(f"{err}; falling back to the previous checkpoint")
    return None


# ------------------------------------------------------------------------------------ the driver
def _concat(a: dict | None, b: dict) -> dict:
    b = {k: np.asarray(v) for k, v in b.items()}
    if not a:
        return b
    return {k: np.concatenate([a[k], b[k]], axis=1) for k in b}


class _Hook:
    """Forwards the compiled program's per-interval callback to the current run's ``on_interval``."""

    def __init__(self):
        self.target = None

    def __call__(self, row):
        if self.target is not None:
            self.target(row)


_COMPILED: dict[tuple[str, bool], tuple[Any, Any, _Hook]] = {}  # (env + config, hook?) -> programs


def _compiled(spec: RunSpec, with_hook: bool):
    """Jitted ``vmap(train.init)`` and ``vmap(train.run)`` for ``spec``, reused across calls in a process
    (a resumed or repeated run, or another seed, in a notebook or test does not compile again)."""
    doc = spec.to_json()
    key = (json.dumps([doc["env_id"], doc["env_params"], doc["agent"], doc["config"]], sort_keys=True), with_hook)
    if key not in _COMPILED:
        env, env_params = spec.make_env()
        hook = _Hook()
        train = make_train(spec.config, env, env_params, on_interval=hook if with_hook else None)
        if len(_COMPILED) >= 4:
            _COMPILED.pop(next(iter(_COMPILED)))
        # The runner state is donated to each chunk: its replay buffers (the largest arrays) are then
        # reused for the output instead of existing twice at every chunk boundary.
        # Interval indices are shared by all seeds (in_axes None): see ``make_train``'s ``run``.
        run = jax.jit(jax.vmap(train.run, in_axes=(0, None)), donate_argnums=0)
        _COMPILED[key] = (jax.jit(jax.vmap(train.init)), run, hook)
    return _COMPILED[key]


def train_run(
    run_dir,
    spec: RunSpec | None = None,
    *,
    checkpoint_every: int | None = None,
    resume: bool = False,
    on_interval: Callable[[Any], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    keep: int = 2,
    warn: Callable[[str], None] | None = None,
    command: list[str] | None = None,
    plot: bool = True,
):
    """Train ``spec`` in ``run_dir``, saving a checkpoint every ``checkpoint_every`` physical steps.

    Args:
      run_dir: the run folder; created for a new run, read (config.json) for ``resume=True``.
      spec: the run to start (None with ``resume=True``: read from ``run_dir/config.json``).
      checkpoint_every: physical steps between checkpoints (a multiple of ``log_every``); None = only
        at the end. Stored in config.json; on resume the stored value is used unless given.
      resume: continue from the newest good checkpoint (from the start if there is none).
      on_interval: host hook per logging interval, passed to ``make_train`` (a progress bar).
      on_checkpoint: called with the interval index after each checkpoint is written.
      keep: number of newest checkpoints to keep (>= 2 keeps a fallback).
      warn: where warnings go (default ``warnings.warn``).
      command: the command line, recorded in config.json.
      plot: write ``curves.png`` at the end.

    Returns:
      ``(metrics, runner_state)``: metrics ``{name: np.ndarray [seeds, intervals]}``.
    """
    run_dir = Path(run_dir)
    if resume:
        spec, doc = load_run(run_dir)
        if checkpoint_every is None:
            checkpoint_every = doc.get("checkpoint_every")
        mine = environment_info()["versions"]
        if doc.get("versions") and doc["versions"] != mine:
            (warn or warnings.warn)(
                f"package versions differ from the original run ({doc['versions']} vs {mine}); "
                "the resumed metrics may not match an uninterrupted run bit for bit"
            )
    else:
        if spec is None:
            raise ValueError("train_run needs a RunSpec for a new run")
        create_run(run_dir, spec, checkpoint_every=checkpoint_every, command=command)
    config = spec.config
    if checkpoint_every is not None and (checkpoint_every <= 0 or checkpoint_every % config.log_every):
        raise ValueError(f"checkpoint_every={checkpoint_every} must be a positive multiple of log_every={config.log_every}")
    init, run, hook = _compiled(spec, on_interval is not None)
    hook.target = on_interval
    runner, intervals = init(spec.keys())
    start, metrics = 0, None
    if resume:
        found = latest_checkpoint(run_dir, spec, runner, warn=warn)
        if found is None:
            (warn or warnings.warn)(f"no usable checkpoint in {run_dir}; starting from the beginning")
        else:
            start, runner, metrics = found
            metrics = metrics if start else None
    n = config.num_intervals
    chunk = n if checkpoint_every is None else checkpoint_every // config.log_every
    for lo in range(start, n, chunk):
        hi = min(lo + chunk, n)
        runner, new = run(runner, intervals[0, lo:hi])
        metrics = _concat(metrics, jax.device_get(new))
        save_checkpoint(run_dir, spec, hi, runner, metrics, keep=keep)
        write_metrics_csv(run_dir / "metrics.csv", metrics)
        if on_checkpoint is not None:
            on_checkpoint(hi)
    if metrics is not None:
        write_metrics_csv(run_dir / "metrics.csv", metrics)
        if plot:
            from dtrl_jax.plotting import plot_runs

            plot_runs([run_dir], run_dir / "curves.png")
    return metrics, runner

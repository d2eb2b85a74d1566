"""Run folders and checkpoints: everything a training run leaves on disk, resuming and extending it.

This module sits *above* ``train.py``: it calls ``make_train`` like any user would, runs the
compiled program in chunks of logging intervals (``train.run`` on slices of ``intervals``) and
writes files between the chunks. The jitted core never sees a file. JAX, flax and orbax are
imported on first use, so reading a run folder (``read_metrics``, ``dtrl plot``) stays fast.

A run folder holds::

    RUN_DIR/
      config.json         everything needed to repeat the run (see RunSpec.to_json) + versions, device,
                          and ``lineage`` (the runs this one extends, oldest first)
      metrics.csv         one row per (seed, logging interval), appended at the end of every interval
      curves.png          greedy return (when evaluated) and training return vs physical episodes
      checkpoints/
        4/                orbax checkpoint after 4 logging intervals: ``state`` (RunnerState, leading
                          [seeds] axis; typed PRNG keys as key data) and ``meta`` (JSON, below)
      tb/                 TensorBoard event files (``dtrl train --log tensorboard``)
      eval.json           written by ``dtrl eval``

Checkpoints are written with orbax-checkpoint (``CheckpointManager``): each one to a temporary folder
that is renamed when complete, so a crash leaves the previous set intact; arrays sharded over
several devices (or hosts) are saved shard by shard without gathering them. The ``meta`` item
holds ``format``, ``config_hash`` (RunSpec.hash(): env id, env params, agent config incl. twin,
seed, seeds), ``interval``, ``num_intervals``, ``physical_steps``, ``sha256`` (of the state's
bytes in tree order; None when the state spans processes), ``metrics`` (``{name: {dtype, values}}``,
``[seeds, interval]``), ``created`` and ``dtrl_jax``. On resume, a checkpoint that cannot be read
(truncated or missing files) is skipped with a warning in favour of the previous one; one that is
read but fails its checksum, or was written for another config, raises ``CheckpointError``.

Because ``train.run`` over ``intervals[:i]`` then ``intervals[i:]`` equals one full run,
a resumed run gives the same metrics, bit for bit, as an uninterrupted one with the same key.

**Extending a finished run.** ``train_run(run_dir, new_spec, resume=True)`` with a spec that differs
from the folder's (more ``total_timesteps``, another learning rate, ...) continues from the
folder's newest checkpoint under the new config hash; ``config.json`` then records the previous
configs in ``lineage``. The env, seeds and every field that shapes the state must stay the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import hashlib
import importlib
import importlib.metadata
import json
import platform
import shutil
import sys
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dtrl_jax.experiment.records import (  # noqa: F401 - part of runs' interface
    CheckpointError,
    MetricsLog,
    RunError,
    _atomic_write,
    read_metrics,
    write_metrics_csv,
)

RUN_FORMAT = "dtrl-run/2"
CKPT_FORMAT = "dtrl-checkpoint/2 (orbax)"
_VERSIONED = ("dtrl-jax", "jax", "jaxlib", "flax", "optax", "chex", "gymnax", "distrax", "numpy", "orbax-checkpoint")


def _agents() -> dict[str, type]:
    from dtrl_jax.config import DQNConfig, QLearningConfig

    return {"ql": QLearningConfig, "dqn": DQNConfig}


# ----------------------------------------------------------------------------------- environments
def is_factory_id(env_id: str) -> bool:
    """``"package.module:Factory"``: an environment defined in the user's own importable code."""
    return ":" in env_id


def _import_factory(env_id: str):
    module_name, _, attr = env_id.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{env_id!r}: cannot import module {module_name!r} ({err}); is it on PYTHONPATH?") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(f"{env_id!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{env_id!r} is not callable")
    return obj


def make_env(env_id: str, overrides: dict[str, Any] | None = None):
    """``(env, params)`` for a dtrl_jax id, a gymnax id, or ``"package.module:Factory"``.

    A factory is called with the overrides as keywords and returns ``(env, params)`` or an
    environment (its ``default_params`` are then used, with the overrides replaced in).
    """
    from dtrl_jax.envs.registry import make

    overrides = dict(overrides or {})
    if not is_factory_id(env_id):
        return make(env_id, **overrides)
    out = _import_factory(env_id)(**overrides)
    if isinstance(out, tuple) and len(out) == 2:
        return out
    if hasattr(out, "default_params") and hasattr(out, "step"):
        params = out.default_params
        names = {f.name for f in dataclasses.fields(params)}
        return out, params.replace(**{k: v for k, v in overrides.items() if k in names})
    raise ValueError(f"{env_id!r} returned {type(out).__name__}; expected (env, params) or a gymnax Environment")


def default_env_params(env_id: str):
    """The default ``EnvParams`` of ``env_id`` (to type ``--env-param`` values)."""
    return make_env(env_id)[1]


# ---------------------------------------------------------------------------------------- configs
def _plain(value: Any) -> Any:
    """A JSON-friendly version of a config value (arrays -> numbers/lists, tuples -> lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or type(value).__module__.startswith("jax"):
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


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _from_dict(cls: type, data: dict[str, Any]):
    from dtrl_jax.envs.registry import did_you_mean

    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        hint = did_you_mean(unknown[0], names)
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}{hint}")
    kwargs = {}
    for name, value in data.items():
        if "tuple" in str(hints[name]) and isinstance(value, list):
            value = _tuples(value)  # nested: outage_windows ((start, end), ...)
        kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(agent: str, data: dict[str, Any]):
    """Inverse of :func:`config_to_dict` for agent ``'ql'`` or ``'dqn'``."""
    from dtrl_jax.config import TwinConfig

    agents = _agents()
    if agent not in agents:
        raise ValueError(f"unknown agent {agent!r}; expected one of {sorted(agents)}")
    data = dict(data)
    twin = data.pop("twin", None)
    if twin is not None:
        data["twin"] = _from_dict(TwinConfig, twin)
    return _from_dict(agents[agent], data)


def agent_name(config) -> str:
    for name, cls in _agents().items():
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
        import jax

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

    def keys(self):
        import jax

        return jax.random.split(jax.random.key(self.seed), self.seeds)


@functools.lru_cache(maxsize=1)
def environment_info() -> dict[str, Any]:
    """Package versions and the device, recorded in config.json."""
    import jax

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
        "device": {"platform": dev.platform, "kind": getattr(dev, "device_kind", ""), "count": jax.device_count(),
                   "processes": jax.process_count()},
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _check_checkpoint_every(checkpoint_every, log_every) -> None:
    if checkpoint_every is not None and (checkpoint_every <= 0 or checkpoint_every % log_every):
        raise ValueError(f"checkpoint_every={checkpoint_every} must be a positive multiple of log_every={log_every}")


def _write_config(run_dir: Path, spec: RunSpec, **extra) -> None:
    doc = {"format": RUN_FORMAT, **spec.to_json(), "config_hash": spec.hash(), **extra, **environment_info()}
    _atomic_write(run_dir / "config.json", (json.dumps(doc, indent=2) + "\n").encode())


def create_run(run_dir, spec: RunSpec, *, checkpoint_every: int | None = None, command: list[str] | None = None) -> Path:
    """Create ``run_dir`` with its ``config.json``; refuse a folder that already holds a run."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
    _check_checkpoint_every(checkpoint_every, spec.config.log_every)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config(run_dir, spec, checkpoint_every=checkpoint_every, created=_now(), command=command, lineage=[])
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


def extend_run(run_dir, spec: RunSpec, *, command: list[str] | None = None) -> dict[str, Any]:
    """Rewrite ``run_dir/config.json`` for ``spec``, recording the previous config in ``lineage``.

    Only what does not change the computation's identity may differ from the folder's run: the env,
    its parameters, the agent kind, the seed and the number of seeds must be the same.
    """
    run_dir = Path(run_dir)
    old, doc = load_run(run_dir)
    check_extension(old, spec)
    done = [i for i, _ in list_checkpoints(run_dir)]
    entry = {"config_hash": old.hash(), "config": doc["config"], "intervals": max(done, default=0),
             "physical_steps": max(done, default=0) * old.config.log_every, "created": doc.get("created"),
             "command": doc.get("command")}
    lineage = [*doc.get("lineage", []), entry]
    _write_config(run_dir, spec, checkpoint_every=doc.get("checkpoint_every"), created=_now(), command=command,
                  lineage=lineage)
    return entry


def check_extension(old: RunSpec, spec: RunSpec) -> None:
    """Raise RunError unless ``spec`` may extend a run of ``old`` (same env, params, agent, seeds, log_every)."""
    same = {"env": (old.env_id, spec.env_id), "env params": (old.env_params, spec.env_params),
            "agent": (old.agent, spec.agent), "seed": (old.seed, spec.seed), "seeds": (old.seeds, spec.seeds)}
    changed = [f"{k} ({a!r} -> {b!r})" for k, (a, b) in same.items() if a != b]
    if changed:
        raise RunError(f"an extended run keeps its {', '.join(changed)}; start a new run (--out) instead")
    if old.config.log_every != spec.config.log_every:
        raise RunError(f"an extended run keeps log_every={old.config.log_every} (the interval indices continue)")


# ------------------------------------------------------------------------------------ checkpoints
def _is_key(x) -> bool:
    import jax

    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _key_impl(x):
    import jax

    try:
        return jax.random.key_impl(x)
    except Exception:  # noqa: BLE001 - an abstract (ShapeDtypeStruct) key leaf
        return x.dtype._impl


def _stored(tree):
    """The runner state as stored: typed PRNG keys as their key data (other leaves unchanged)."""
    import jax

    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _stored_shapes(template):
    """Shapes/dtypes (and shardings, for concrete arrays) of the runner state as stored."""
    import jax

    def abstract(x):
        sharding = getattr(x, "sharding", None) if isinstance(x, jax.Array) else None
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    concrete = [isinstance(x, jax.Array) for x in jax.tree.leaves(template)]
    if concrete and all(concrete):
        return jax.tree.map(abstract, _stored(template))
    return jax.eval_shape(_stored, template)


def _leaf_names(tree) -> dict[str, Any]:
    """``{"agent_state.q": leaf, ...}``: leaves by their dotted path (dataclass fields or dict keys)."""
    import jax

    def part(k):
        for attr in ("name", "key", "idx"):
            if hasattr(k, attr):
                return str(getattr(k, attr))
        return str(k)

    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {".".join(part(k) for k in path): leaf for path, leaf in flat}


def _state_digest(state) -> str | None:
    """sha256 of the state's bytes in tree order, or None if it spans processes."""
    import jax

    leaves = jax.tree.leaves(state)
    if any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves):
        return None
    digest = hashlib.sha256()
    for x in jax.device_get(leaves):
        x = np.ascontiguousarray(x)
        digest.update(f"{x.dtype}{x.shape}".encode())
        digest.update(x.tobytes())
    return digest.hexdigest()


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir, interval: int) -> Path:
    return checkpoint_dir(run_dir) / str(int(interval))


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """``[(interval, path)]`` of the complete checkpoints in ``run_dir``, oldest first.

    Folders of interrupted writes (orbax's temporary names) are not listed.
    """
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted((int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def _manager(run_dir, keep: int | None = None):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True, enable_async_checkpointing=False,
    )
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(checkpoint_dir(run_dir).resolve(), item_handlers=handlers, options=options)


def _metrics_json(metrics) -> dict[str, Any]:
    out = {}
    for k, v in (metrics or {}).items():
        v = np.asarray(v)
        out[k] = {"dtype": str(v.dtype), "values": v.tolist()}
    return out


def save_checkpoint(run_dir, spec: RunSpec, interval: int, runner_state, metrics, *, keep: int = 2) -> Path:
    """Write the checkpoint after ``interval`` logging intervals (orbax); keep the newest ``keep``.

    Works for states sharded over several devices or processes: nothing is gathered to one host
    (except for the checksum, which is only computed when the whole state is addressable here).
    """
    import orbax.checkpoint as ocp

    state = _stored(runner_state)
    config = spec.config
    meta = {
        "format": CKPT_FORMAT,
        "config_hash": spec.hash(),
        "interval": int(interval),
        "num_intervals": int(config.num_intervals),
        "physical_steps": int(interval * config.log_every),
        "sha256": _state_digest(state),
        "metrics": _metrics_json(metrics),
        "created": _now(),
        "dtrl_jax": environment_info()["versions"]["dtrl-jax"],
    }
    path = checkpoint_path(run_dir, interval)
    if path.exists():  # a resumed run redoing an interval whose checkpoint was unreadable
        shutil.rmtree(path)
    with _manager(run_dir, max(keep, 1)) as mngr:
        mngr.save(int(interval), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)
        mngr.wait_until_finished()
    return path


class _Unreadable(Exception):
    pass


def read_checkpoint(path, spec: RunSpec, template, *, allowed_hashes=()):
    """``(interval, runner_state, metrics)`` from one checkpoint folder, checked against ``spec``.

    ``template`` is a runner state of the right structure (e.g. from ``train.init``, concrete to
    restore onto its shardings, or abstract): every restored leaf must match its shape and dtype.
    ``allowed_hashes``: further config hashes accepted (the parents of an extended run).

    Raises:
      CheckpointError: checksum failure, other config, or a state of another shape.
      _Unreadable: missing or truncated files (``latest_checkpoint`` falls back to an older one).
    """
    import jax
    import orbax.checkpoint as ocp

    path = Path(path)
    if not path.is_dir() or not path.name.isdigit():
        raise CheckpointError(f"{path} is not a dtrl checkpoint folder")
    step = int(path.name)
    with _manager(path.parent.parent) as mngr:
        try:
            meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as err:  # noqa: BLE001
            raise _Unreadable(f"{path} is unreadable (metadata: {type(err).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != CKPT_FORMAT:
            raise CheckpointError(f"{path} is not a dtrl checkpoint (format {meta.get('format') if isinstance(meta, dict) else meta!r})")
        if meta.get("config_hash") not in (spec.hash(), *allowed_hashes):
            raise CheckpointError(
                f"{path} was written for a different config (hash {meta.get('config_hash')}, this run "
                f"{spec.hash()}); it cannot be resumed with this config.json"
            )
        target = _stored_shapes(template)
        flat_t, treedef = jax.tree_util.tree_flatten_with_path(target)
        try:
            stored_meta = mngr.item_metadata(step)["state"]
            stored = _leaf_names(getattr(stored_meta, "tree", stored_meta))
        except Exception:  # noqa: BLE001 - the checks below then rely on restore itself
            stored = None
        if stored is not None:
            wanted = _leaf_names(target)
            if set(stored) != set(wanted):
                diff = sorted(set(stored) ^ set(wanted))[:3]
                raise CheckpointError(f"{path} holds a runner state of another structure than this config builds "
                                      f"(differs in {diff})")
            for name, t in wanted.items():
                shape = tuple(getattr(stored[name], "shape", None) or ())
                if shape != tuple(t.shape):
                    raise CheckpointError(f"{path}: runner_state.{name} has shape {shape}, this config expects "
                                          f"{tuple(t.shape)}")
        try:
            state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
        except Exception as err:  # noqa: BLE001 - files missing/truncated
            raise _Unreadable(f"{path} is unreadable ({type(err).__name__}: {str(err)[:120]})") from None
    for (kp, t), s in zip(flat_t, jax.tree.leaves(state)):
        if tuple(s.shape) != tuple(t.shape) or s.dtype != t.dtype:
            raise CheckpointError(f"{path}: runner_state{jax.tree_util.keystr(kp)} has shape {tuple(s.shape)} "
                                  f"{s.dtype}, this config expects {tuple(t.shape)} {t.dtype}")
    if meta.get("sha256") is not None and _state_digest(state) != meta["sha256"]:
        raise CheckpointError(f"{path} is corrupt: its sha256 checksum does not match its content")
    leaves = [jax.random.wrap_key_data(s, impl=_key_impl(orig)) if _is_key(orig) else s
              for s, orig in zip(jax.tree.leaves(state), jax.tree.leaves(template))]
    interval = int(meta["interval"])
    metrics = {k: np.asarray(v["values"], dtype=v["dtype"]) for k, v in meta.get("metrics", {}).items()}
    for name, value in metrics.items():
        if value.shape[1:2] != (interval,):
            raise CheckpointError(f"{path}: metrics {name!r} has shape {value.shape}, expected [seeds, {interval}]")
    return interval, jax.tree.unflatten(treedef, leaves), metrics


def latest_checkpoint(run_dir, spec: RunSpec, template, *, warn: Callable[[str], None] | None = None,
                      allowed_hashes=()):
    """The newest usable checkpoint as ``(interval, runner_state, metrics)``, or None if there is none.

    Unreadable checkpoints (an interrupted write or copy: missing or truncated files) are skipped
    with a warning; the previous good checkpoint is used instead. Corrupt (checksum) or mismatched
    checkpoints raise ``CheckpointError``.
    """
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=3))
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return read_checkpoint(path, spec, template, allowed_hashes=allowed_hashes)
        except _Unreadable as err:
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


# (env + config, hook?) -> (init, run, hook, {chunk length: compiled run})
_COMPILED: dict[tuple[str, bool], tuple[Any, Any, _Hook, dict]] = {}


def _compiled(spec: RunSpec, with_hook: bool):
    """Jitted ``vmap(train.init)`` and ``vmap(train.run)`` for ``spec``, reused across calls in a process
    (a resumed or repeated run, or another seed, in a notebook or test does not compile again)."""
    import jax

    from dtrl_jax.train import make_train

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
        _COMPILED[key] = (jax.jit(jax.vmap(train.init)), run, hook, {})
    return _COMPILED[key]


@dataclasses.dataclass
class RunStatus:
    """What :func:`train_run` found and did (``train_run(..., status=RunStatus())`` fills it)."""

    start_interval: int = 0
    num_intervals: int = 0
    already_complete: bool = False
    extended_from: str | None = None
    compile_s: float = 0.0  # time to build and compile the programs (0 when reused in this process)


def train_run(
    run_dir,
    spec: RunSpec | None = None,
    *,
    checkpoint_every: int | None = None,
    resume: bool = False,
    on_interval: Callable[[Any], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    on_start: Callable[[RunStatus], None] | None = None,
    keep: int = 2,
    warn: Callable[[str], None] | None = None,
    command: list[str] | None = None,
    plot: bool = True,
    trackers=(),
    status: RunStatus | None = None,
    compiling: Callable[[], Any] | None = None,
):
    """Train ``spec`` in ``run_dir``, saving a checkpoint every ``checkpoint_every`` physical steps.

    Args:
      run_dir: the run folder; created for a new run, read (config.json) for ``resume=True``.
      spec: the run to start. With ``resume=True``: None continues the folder's own config; a spec
        that differs from it *extends* the run under the new config (see the module docstring).
      checkpoint_every: physical steps between checkpoints (a multiple of ``log_every``); None = only
        at the end. Stored in config.json; on resume the stored value is used unless given.
      resume: continue from the newest good checkpoint (from the start if there is none).
      on_interval: host hook per logging interval (a progress bar), after the row is in metrics.csv.
      on_checkpoint: called with the interval index after each checkpoint is written.
      on_start: called with the :class:`RunStatus` once the starting point is known, before running.
      keep: number of newest checkpoints to keep (>= 2 keeps a fallback).
      warn: where warnings go (default ``warnings.warn``).
      command: the command line, recorded in config.json.
      plot: write ``curves.png`` at the end.
      trackers: more per-interval sinks ``f(row)`` (``dtrl_jax.experiment.tracking``: TensorBoard, W&B).
      status: a :class:`RunStatus` to fill in (e.g. to tell the user a run was already complete).
      compiling: a context-manager factory wrapped around building and compiling the programs
        (the CLI's "compiling ..." line); the time taken is ``status.compile_s``.

    Returns:
      ``(metrics, runner_state)``: metrics ``{name: np.ndarray [seeds, intervals]}``.
    """
    import jax

    run_dir = Path(run_dir)
    status = status if status is not None else RunStatus()
    # Several processes (multi-host): each runs this driver; orbax coordinates the checkpoint, and
    # only process 0 writes config.json, metrics.csv and the plot (the folder must be shared).
    primary = jax.process_index() == 0
    allowed: tuple[str, ...] = ()
    extend = False
    if resume:
        stored, doc = load_run(run_dir)
        extend = spec is not None and spec.hash() != stored.hash()
        if extend:
            check_extension(stored, spec)
        else:
            spec = stored
        allowed = tuple(e["config_hash"] for e in doc.get("lineage", [])) + ((stored.hash(),) if extend else ())
        if not list_checkpoints(run_dir) and list(checkpoint_dir(run_dir).glob("ckpt-*.dtrl")):
            raise RunError(f"{run_dir} holds checkpoints of an older dtrl-jax (ckpt-*.dtrl, before orbax); "
                           "resume it with that version, or start the run again")
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
        if primary:
            create_run(run_dir, spec, checkpoint_every=checkpoint_every, command=command)
    config = spec.config
    _check_checkpoint_every(checkpoint_every, config.log_every)
    import time

    log = MetricsLog(run_dir / "metrics.csv", spec.seeds, config.log_every, [*trackers, on_interval],
                     write=primary)
    t0 = time.perf_counter()
    with (compiling() if compiling is not None else contextlib.nullcontext()):
        init, run, hook, executables = _compiled(spec, True)
        runner, intervals = init(spec.keys())
        start, metrics = 0, None
        if resume:
            found = latest_checkpoint(run_dir, spec, runner, warn=warn, allowed_hashes=allowed)
            if found is None:
                (warn or warnings.warn)(f"no usable checkpoint in {run_dir}; starting from the beginning")
            else:
                start, runner, metrics = found
                metrics = metrics if start else None
        if extend:  # the old state restored fine under the new config: record the extension
            status.extended_from = (extend_run(run_dir, spec, command=command) if primary else
                                    {"config_hash": allowed[-1]})["config_hash"]
        n = config.num_intervals
        if start > n:
            raise RunError(f"{run_dir} already has {start} logging intervals; its config now asks for {n} "
                           f"(extend with a larger --total-timesteps)")
        chunk = n if checkpoint_every is None else checkpoint_every // config.log_every
        for length in sorted({min(chunk, n - start), (n - start) % chunk} - {0}):
            if length not in executables:  # compiled ahead of time, so the compile time is known
                executables[length] = run.lower(runner, intervals[0, :length]).compile()
    status.compile_s = time.perf_counter() - t0
    hook.target = log
    status.start_interval, status.num_intervals, status.already_complete = start, n, resume and start == n
    if on_start is not None:
        on_start(status)
    log.sync(metrics)
    try:
        for lo in range(start, n, chunk):
            hi = min(lo + chunk, n)
            idx = intervals[0, lo:hi]
            runner, new = executables[hi - lo](runner, idx)
            metrics = _concat(metrics, new)
            save_checkpoint(run_dir, spec, hi, runner, metrics, keep=keep)
            log.sync(metrics)
            if on_checkpoint is not None:
                on_checkpoint(hi)
    finally:
        hook.target = None
    if metrics is not None and plot and primary:
        from dtrl_jax.experiment.plotting import plot_runs

        plot_runs([run_dir], run_dir / "curves.png")
    return metrics, runner

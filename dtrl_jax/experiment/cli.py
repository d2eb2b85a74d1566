"""The ``dtrl`` command line: train, evaluate, plot, benchmark, list environments.

    dtrl envs
    dtrl train AccessPointSelection-v0 --total-timesteps 20000 --log-every 1000 --action-trials 5 --seeds 4
    dtrl eval runs/my-run --episodes 20
    dtrl plot runs/physical runs/twin --out compare.png
    dtrl bench env_throughput --quick

Every field of the agent config (``QLearningConfig`` / ``DQNConfig``) and of ``TwinConfig`` is a
flag, generated from the dataclass fields with their documentation as help text. Bad flags or
values print one line and exit with status 2; problems with a run folder exit with status 1.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as _dt
import json
import re
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any

from dtrl_jax.envs.registry import did_you_mean

# JAX, flax and the configs are imported only by the commands that need them (and by the train
# parser's config flags), so `dtrl --help`, `dtrl envs` and `dtrl plot` start fast
# (benchmarks/startup.py measures it).
_AGENT_TITLES = {"ql": "tabular Q-learning", "dqn": "DQN"}


def _agent_classes():
    from dtrl_jax.config import DQNConfig, QLearningConfig

    return {"ql": QLearningConfig, "dqn": DQNConfig}


class UsageError(Exception):
    """A bad flag or value: reported in one line, exit status 2."""


def _all_options(parser: argparse.ArgumentParser) -> set[str]:
    opts = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                opts |= _all_options(sub)
    return opts


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (no usage dump, no traceback), never accepts an
    abbreviated flag (``--learning-rat`` is an error, not ``--learning-rate``) and suggests the
    closest flag or choice."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        hint = ""
        if message.startswith("unrecognized arguments:"):
            flags = [w.split("=")[0] for w in message.split(":", 1)[1].split() if w.startswith("--")]
            if flags:
                hint = did_you_mean(flags[0], _all_options(self))
        else:
            m = re.search(r"invalid choice: '([^']*)'", message)
            if m:
                choices = re.findall(r"'([^']*)'", message.split("choose from", 1)[-1])
                hint = did_you_mean(m.group(1), choices)
        raise UsageError(f"{message}{hint} (see `{self.prog} --help`)")


# -------------------------------------------------------------------------------- typed parsing
def parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "y", "on"):
        return True
    if low in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"expected a bool (true/false), got {text!r}")


def parse_int(text: str) -> int:
    """An int; accepts ``100_000`` and integral floats like ``1e5``."""
    try:
        return int(text)
    except ValueError:
        pass
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"expected an integer, got {text!r}")
    return int(value)


def _is_none(text: str) -> bool:
    return str(text).strip().lower() in ("none", "null")


def _number(text: str):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_windows(text: str) -> tuple:
    """Windows such as ``--outage-windows 100:200,300:400`` or ``--burst-windows 100:200:0.5``.

    Items are comma-separated, fields colon-separated; ``none`` or ``""`` is no window. The Python
    form ``((100, 200), (300, 400))`` is accepted too.
    """
    text = str(text).strip()
    if not text or _is_none(text):
        return ()
    if text[0] in "([":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"expected START:END[,START:END...], got {text!r}") from None
        if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (list, tuple)):
            value = (value,)
        return tuple(tuple(v) for v in value)
    try:
        return tuple(tuple(_number(f) for f in item.split(":")) for item in text.split(",") if item.strip())
    except ValueError:
        raise ValueError(f"expected START:END[:STD][,...] with numbers, got {text!r}") from None


_WINDOW_METAVARS = {"outage_windows": "START:END[,START:END...]", "burst_windows": "START:END:STD[,...]"}


def _parser_for(hint, name: str = "") -> tuple[Any, str]:
    """``(parse function, metavar)`` for a config field's type hint."""
    if hint is tuple:  # a bare tuple: windows of numbers
        return parse_windows, _WINDOW_METAVARS.get(name, "A:B[,A:B...]")
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        inner = next(a for a in args if a is not type(None))
        parse, meta = _parser_for(inner)
        return (lambda t: None if _is_none(t) else parse(t)), f"{meta}|none"
    origin = typing.get_origin(hint)
    if origin is tuple:
        parse, meta = _parser_for(args[0])

        def parse_tuple(text):
            items = [s for s in str(text).strip("()[] ").replace(" ", ",").split(",") if s]
            if not items:
                raise ValueError(f"expected a comma-separated list, got {text!r}")
            return tuple(parse(s) for s in items)

        return parse_tuple, f"{meta},{meta},..."
    if hint is bool:
        return parse_bool, "BOOL"
    if hint is int:
        return parse_int, "INT"
    if hint is float:
        return float, "FLOAT"
    return str, "STR"


def _typed(name: str, parse):
    def convert(text):
        try:
            return parse(text)
        except (ValueError, TypeError) as err:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')}: {err}") from None

    convert.__name__ = name
    return convert


def _int_flag(name: str) -> dict[str, Any]:
    """argparse settings of an integer option whose bad value is reported under its flag name."""
    return {"type": _typed(name, parse_int)}


#: ``dtrl train``'s own options (the config fields are added by :func:`add_config_flags`): one row per
#: option, ``(flags, argparse settings, help)``, declared by :func:`_add_options`.
_TRAIN_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any], str], ...] = (
    (("env",), {"nargs": "?"},
     ("environment id (see `dtrl envs`), e.g. AccessPointSelection-v0, any gymnax id with discrete actions, or "
     "package.module:Factory (a callable returning (env, params) or a gymnax Environment, importable from the "
     "current directory)")),
    (("--config",), {"metavar": "FILE"},
     ("start from a run description in JSON or YAML (a run's config.json works); flags given on the command line "
     "override it")),
    (("--agent",), {"choices": ("auto", "ql", "dqn"), "default": "auto"},
     ("ql = tabular Q-learning (discrete observations), dqn = deep Q-network; auto picks ql for a discrete "
     "observation space, else dqn [default: auto]")),
    (("--seeds", "--num-seeds"), {"dest": "seeds", **_int_flag("seeds"), "default": None, "metavar": "N"},
     "HOW MANY seeds, run in parallel as one vmap [default: 1]"),
    (("--seed",), {**_int_flag("seed"), "default": None, "metavar": "S"},
     "the BASE seed (not a count): the N keys are jax.random.split(jax.random.key(S), N) [default: 0]"),
    (("--out",), {"metavar": "DIR"}, "run folder [default: runs/ENV-AGENT-TIMESTAMP]"),
    (("--env-param",), {"action": "append", "metavar": "NAME=VALUE"},
     "override an environment parameter (repeatable), e.g. --env-param num_uavs=2"),
    (("--checkpoint-every",), {**_int_flag("checkpoint_every"), "metavar": "STEPS"},
     "save a checkpoint every STEPS physical steps (a multiple of --log-every) [default: only at the end]"),
    (("--keep-checkpoints",), {**_int_flag("keep_checkpoints"), "default": 2, "metavar": "K"},
     "keep the K newest checkpoints (>= 2 leaves a fallback) [default: 2]"),
    (("--resume",), {"metavar": "DIR"},
     ("continue an interrupted run from its last good checkpoint (config from DIR/config.json); with config flags "
     "(e.g. --total-timesteps), extend it under the new config, keeping its lineage in config.json")),
    (("--log",), {"metavar": "BACKENDS"},
     ("also log every interval to tensorboard (RUN_DIR/tb; pip install 'dtrl-jax[log]') and/or wandb, "
     "comma-separated, e.g. --log tensorboard,wandb (metrics.csv is always written)")),
    (("--no-progress",), {"action": "store_true"}, "no progress bar and no compile ticker"),
)


def _add_options(parser: argparse.ArgumentParser, options) -> None:
    """Declare ``parser``'s options from a table of ``(flags, settings, help)`` rows."""
    for flags, settings, help_text in options:
        parser.add_argument(*flags, help=help_text, **settings)


def _config_fields(cls) -> list[tuple[str, Any, Any, str]]:
    from dtrl_jax.config import field_docs

    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    return [(f.name, hints[f.name], f.default, docs[f.name]) for f in dataclasses.fields(cls) if f.name != "twin"]


def _choices(cls, name: str) -> tuple[str, ...] | None:
    """The allowed values of a string config field, read from the config's own validation message."""
    try:
        cls(**{name: "\x00?"})
    except (ValueError, TypeError) as err:
        m = re.search(r"expected one of (\[.*?\])", str(err))
        if m and f"{name}=" in str(err):
            return tuple(ast.literal_eval(m.group(1)))
    return None


def _add_field(group, name: str, hint, default_text: str, doc: str, dest: str, cls=None) -> None:
    flag = "--" + name.replace("_", "-")
    help_text = f"{doc} [default: {default_text}]".replace("%", "%%")
    if hint is bool:
        group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_text)
        return
    choices = _choices(cls, name) if hint is str and cls is not None else None
    if choices:
        group.add_argument(flag, dest=dest, choices=choices, default=argparse.SUPPRESS, help=help_text)
        return
    parse, meta = _parser_for(hint, name)
    group.add_argument(flag, dest=dest, type=_typed(name, parse), default=argparse.SUPPRESS, metavar=meta,
                       help=help_text)


def _fmt_default(value) -> str:
    if isinstance(value, tuple):
        return ",".join(":".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per field of QLearningConfig, DQNConfig and TwinConfig (dests ``agent:``/``twin:``)."""
    from dtrl_jax.config import DQNConfig, QLearningConfig, TwinConfig

    ql = {n: (h, d, doc) for n, h, d, doc in _config_fields(QLearningConfig)}
    dqn = {n: (h, d, doc) for n, h, d, doc in _config_fields(DQNConfig)}
    common = parser.add_argument_group("agent options (QLearningConfig and DQNConfig)")
    only = {
        "ql": parser.add_argument_group("tabular Q-learning only (--agent ql)"),
        "dqn": parser.add_argument_group("DQN only (--agent dqn)"),
    }
    for name in list(ql) + [n for n in dqn if n not in ql]:
        if name in ql and name in dqn:
            (hint, d1, doc), (_, d2, doc2) = ql[name], dqn[name]
            doc = doc if doc == doc2 else f"ql: {doc} dqn: {doc2}"
            text = _fmt_default(d1) if d1 == d2 else f"ql {_fmt_default(d1)}, dqn {_fmt_default(d2)}"
            _add_field(common, name, hint, text, doc, f"agent:{name}", QLearningConfig)
        else:
            owner = "ql" if name in ql else "dqn"
            hint, d, doc = (ql if owner == "ql" else dqn)[name]
            _add_field(only[owner], name, hint, _fmt_default(d), doc, f"agent:{name}",
                       QLearningConfig if owner == "ql" else DQNConfig)
    twin = parser.add_argument_group(
        "digital twin (TwinConfig): --twin, or any of these flags, switches the twin on; without them "
        "the run is plain physical RL. The twin changes learning only through --action-trials > 1, "
        "--lookahead > 1, --shield or --share-global-obs (a warning says so otherwise)"
    )
    twin.add_argument("--twin", action="store_true", default=False,
                      help="use a digital twin (TwinConfig defaults, changed by the flags below)")
    for name, hint, d, doc in _config_fields(TwinConfig):
        if name in ql or name in dqn or name == "twin":
            raise RuntimeError(f"TwinConfig.{name} clashes with an agent config field; the CLI needs unique names")
        _add_field(twin, name, hint, _fmt_default(d), doc, f"twin:{name}", TwinConfig)


def _given(args, prefix: str) -> dict[str, Any]:
    return {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith(prefix)}


def build_config(agent: str, args, base: dict[str, Any] | None = None):
    """The agent config from parsed flags over ``base`` (a config dict as in config.json, e.g. from
    ``--config FILE``); raises UsageError with the config's own message."""
    from dtrl_jax.experiment.runs import config_from_dict

    cls = _agent_classes()[agent]
    allowed = {f.name for f in dataclasses.fields(cls)}
    base = dict(base or {})
    base_twin = base.pop("twin", None)
    wrong_base = sorted(set(base) - allowed)
    fields = _given(args, "agent:")
    wrong = sorted(set(fields) - allowed)
    if wrong:
        other = "dqn" if agent == "ql" else "ql"
        flags = ", ".join("--" + w.replace("_", "-") for w in wrong)
        raise UsageError(f"{flags} only apply to --agent {other} ({_AGENT_TITLES[other]}), not --agent {agent}")
    if wrong_base:
        raise UsageError(f"config field(s) {wrong_base} do not apply to --agent {agent} ({_AGENT_TITLES[agent]})"
                         f"{did_you_mean(wrong_base[0], allowed)}")
    twin_fields = _given(args, "twin:")
    data = {**base, **fields}
    if twin_fields or getattr(args, "twin", False) or base_twin is not None:
        data["twin"] = {**(base_twin or {}), **twin_fields}
    try:
        return config_from_dict(agent, data)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def twin_feature_warning(config) -> str | None:
    """A warning when a twin is configured but none of its features changes learning."""
    twin = config.twin
    if twin is None or twin.uses_domains or twin.share_global_obs:
        return None
    return ("the twin is on but no twin feature is: without --action-trials > 1, --lookahead > 1, --shield "
            "or --share-global-obs this run is plain physical RL (the twin's domains are not even built)")


def load_config_file(path) -> dict[str, Any]:
    """A run description from JSON or YAML (``--config FILE``); a run's ``config.json`` works as is.

    Keys: ``env`` (or ``env_id``), ``agent``, ``seeds``, ``seed``, ``env_params``, ``config`` (agent
    fields, ``twin`` nested); agent fields and ``twin`` may also sit at the top level. Other keys of a
    run's config.json (versions, device, lineage, ...) are ignored.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"--config {path}: {err.strerror or err}") from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    if is_yaml:
        try:
            import yaml
        except ImportError:
            raise UsageError('--config: reading YAML needs PyYAML (pip install "dtrl-jax[yaml]")') from None
    try:
        doc = yaml.safe_load(text) if is_yaml else json.loads(text)
    except Exception as err:  # noqa: BLE001 - json.JSONDecodeError or yaml.YAMLError
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"--config {path}: not valid {'YAML' if is_yaml else 'JSON'}: {first}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"--config {path}: expected a mapping at the top level, got {type(doc).__name__}")
    from dtrl_jax.config import DQNConfig, QLearningConfig

    agent_fields = {f.name for cls in (QLearningConfig, DQNConfig) for f in dataclasses.fields(cls)}
    run_keys = {"format", "key", "prng_impl", "config_hash", "checkpoint_every", "created", "command", "lineage",
                "versions", "python", "platform", "device"}
    out: dict[str, Any] = {"config": dict(doc.get("config") or {})}
    for key, value in doc.items():
        if key in ("env", "env_id"):
            out["env"] = value
        elif key in ("agent", "seeds", "seed", "env_params"):
            out[key] = value
        elif key == "config" or key in run_keys:
            continue
        elif key in agent_fields:
            out["config"][key] = value
        else:
            known = ["env", "agent", "seeds", "seed", "env_params", "config", *sorted(agent_fields)]
            raise UsageError(f"--config {path}: unknown key {key!r}{did_you_mean(key, known)}")
    if out.get("agent") not in (None, "ql", "dqn"):
        raise UsageError(f"--config {path}: agent {out['agent']!r}: expected 'ql' or 'dqn'")
    return out


def parse_env_params(env_id: str, items: list[str]) -> dict[str, Any]:
    """``["name=value", ...]`` -> typed overrides, typed by the env's default ``EnvParams``."""
    from dtrl_jax.experiment.runs import default_env_params

    if not items:
        return {}
    try:
        defaults = default_env_params(env_id)
    except ValueError as err:
        raise UsageError(str(err)) from None
    names = {f.name for f in dataclasses.fields(defaults)}
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise UsageError(f"--env-param {item!r}: expected NAME=VALUE, e.g. --env-param num_uavs=2")
        if name not in names:
            raise UsageError(f"--env-param {name!r} is not a parameter of {env_id}; allowed: {', '.join(sorted(names))}")
        current = getattr(defaults, name)
        try:
            if isinstance(current, bool):
                out[name] = parse_bool(raw)
            elif isinstance(current, int):
                out[name] = parse_int(raw)
            elif isinstance(current, float):
                out[name] = float(raw)
            elif isinstance(current, str):
                out[name] = raw
            else:
                out[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError) as err:
            raise UsageError(f"--env-param {name}={raw!r}: {err}") from None
    return out


# --------------------------------------------------------------------------------------- commands
def _auto_agent(env_id: str, env_params: dict) -> str:
    from gymnax.environments import spaces

    from dtrl_jax.experiment.runs import make_env

    env, params = make_env(env_id, env_params)
    return "ql" if isinstance(env.observation_space(params), spaces.Discrete) else "dqn"


def _twin_summary(config) -> str:
    from dtrl_jax.config import TwinConfig

    twin = config.twin
    if twin is None:
        return "no twin (physical RL)"
    on = [f"{n}={getattr(twin, n)}" for n, _, d, _ in _config_fields(TwinConfig) if getattr(twin, n) != d]
    return "twin " + (", ".join(on) if on else "(defaults)")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


_RESUME_FIXED = (("env", "ENV"), ("env_param", "--env-param"), ("seeds", "--seeds"), ("seed", "--seed"),
                 ("out", "--out"), ("agent", "--agent"), ("config", "--config"))


def _new_spec(args):
    """The RunSpec of a new run: --config FILE (if given), then the flags on top."""
    from dtrl_jax.experiment import runs

    base = load_config_file(args.config) if args.config else {"config": {}}
    env_id = args.env or base.get("env")
    if not env_id:
        raise UsageError("give an environment id, e.g. `dtrl train AccessPointSelection-v0` (list: `dtrl envs`), "
                         "or --config FILE")
    env_params = dict(base.get("env_params") or {})
    env_params.update(parse_env_params(env_id, args.env_param or []))
    try:
        agent = args.agent if args.agent != "auto" else base.get("agent") or _auto_agent(env_id, env_params)
    except ValueError as err:
        raise UsageError(str(err)) from None
    config = build_config(agent, args, base.get("config"))
    seeds = args.seeds if args.seeds is not None else int(base.get("seeds", 1))
    seed = args.seed if args.seed is not None else int(base.get("seed", 0))
    if seeds < 1 or seed < 0:
        raise UsageError(f"--seeds={seeds} / --seed={seed}: expected seeds >= 1 (how many) and seed >= 0 (the base seed)")
    return runs.RunSpec(env_id, config, env_params, seed=seed, seeds=seeds)


def _resumed_spec(args):
    """The folder's RunSpec, with config flags applied on top (extending the run) when given."""
    from dtrl_jax.experiment import runs

    fixed = [flag for name, flag in _RESUME_FIXED
             if (getattr(args, name) not in (None, [], "auto"))]
    if fixed:
        raise UsageError(f"--resume keeps the run's {', '.join(fixed)} (from {args.resume}/config.json); drop "
                         f"{', '.join(fixed)}, or start a new run with --config {args.resume}/config.json --out NEW")
    spec, doc = runs.load_run(args.resume)
    overrides = _given(args, "agent:") or _given(args, "twin:") or args.twin
    if not overrides:
        return spec, doc, False
    base = runs.config_to_dict(spec.config)
    new = build_config(spec.agent, args, base)
    return dataclasses.replace(spec, config=new), doc, new != spec.config


def cmd_train(args) -> int:
    if args.keep_checkpoints < 1:
        raise UsageError(f"--keep-checkpoints={args.keep_checkpoints}: expected >= 1 (2 keeps a fallback)")
    if args.checkpoint_every is not None and args.checkpoint_every <= 0:
        raise UsageError(f"--checkpoint-every={args.checkpoint_every}: expected a positive number of physical steps")
    from dtrl_jax.experiment import tracking

    try:
        loggers = tracking.parse_backends(args.log) if args.log else ()
    except ValueError as err:
        raise UsageError(f"--log: {err}") from None

    import jax

    from dtrl_jax.experiment import runs
    from dtrl_jax.memory import check_fits, describe
    from dtrl_jax.train import estimate_memory
    from dtrl_jax.experiment.progress import GracefulStop, ProgressBar, Stopped, Ticker
    from dtrl_jax.train import make_train

    extending = False
    if args.resume:
        spec, doc, extending = _resumed_spec(args)
        run_dir = Path(args.resume)
        checkpoint_every = args.checkpoint_every or doc.get("checkpoint_every")
    else:
        spec = _new_spec(args)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out or f"runs/{spec.env_id.replace(':', '.')}-{spec.agent}-{stamp}")
        if (run_dir / "config.json").exists():
            raise UsageError(f"--out {run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out")
        checkpoint_every = args.checkpoint_every
    config = spec.config
    if checkpoint_every is not None and checkpoint_every % config.log_every:
        raise UsageError(
            f"--checkpoint-every={checkpoint_every} must be a multiple of --log-every={config.log_every}"
        )
    try:  # every check make_train does before tracing, so that bad values are usage errors
        env, params = spec.make_env()
        make_train(config, env, params)
        estimate = estimate_memory(config, env, params, num_seeds=spec.seeds)
        check_fits(estimate)  # all seeds together, before anything is compiled
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None

    dev = jax.devices()[0]
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    say(f"dtrl train: {spec.env_id} | {_AGENT_TITLES[spec.agent]} | {_twin_summary(config)} | "
        f"{config.total_timesteps:,} physical steps x {_plural(spec.seeds, 'seed')} (base seed {spec.seed}, one vmap) "
        f"on {dev.platform}")
    warning = twin_feature_warning(config)
    if warning:
        say(f"warning: {warning}")
    say(describe(estimate))
    say(f"run folder: {run_dir}" + (" (extending: new config, lineage in config.json)" if extending
                                    else " (resuming)" if args.resume else ""))
    trackers = tracking.make_trackers(loggers, run_dir, spec.to_json()) if loggers else []
    bar = ProgressBar(config.total_timesteps, seeds=spec.seeds, enabled=not args.no_progress)
    status = runs.RunStatus()
    t0 = time.perf_counter()
    stop = GracefulStop(say, checkpoint_every is not None, config.num_intervals)
    ticker = lambda: Ticker("compiling the training program (XLA)", enabled=not args.no_progress)  # noqa: E731
    try:
        with stop:
            metrics, _ = runs.train_run(
                run_dir, spec if (extending or not args.resume) else None, resume=bool(args.resume),
                checkpoint_every=checkpoint_every, on_interval=bar.update, on_checkpoint=stop.check,
                keep=args.keep_checkpoints, warn=lambda m: say(f"warning: {m}"),
                command=["dtrl", "train", *(args.argv or [])], trackers=trackers, status=status, compiling=ticker,
            )
    except (KeyboardInterrupt, Stopped) as exc:
        bar.close()
        if isinstance(exc, Stopped):
            say(f"stopped after interval {exc.interval} (checkpoint saved); continue with: dtrl train --resume {run_dir}")
        else:
            say(f"interrupted; `dtrl train --resume {run_dir}` continues from the last checkpoint, if any")
        return 130
    finally:
        for t in trackers:
            t.close()
    bar.close()
    if status.already_complete:
        say(f"{run_dir} is already complete ({_plural(status.num_intervals, 'logging interval')}, "
            f"{config.total_timesteps:,} physical steps); nothing to do. To train on, extend it: "
            f"dtrl train --resume {run_dir} --total-timesteps {2 * config.total_timesteps}")
    else:
        say(final_line(metrics, time.perf_counter() - t0, status.compile_s))
    print(f"{run_dir}")
    extra = ", tb/" if "tensorboard" in loggers else ""
    say(f"files: {run_dir}/config.json, metrics.csv, curves.png, checkpoints/{extra}")
    return 0


def _last_finite(values):
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    return np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan for row in arr])


def final_line(metrics, seconds: float, compile_s: float) -> str:
    """The last line of ``dtrl train``: time, compile time, episodes, final epsilon, updates, and the
    last greedy return (or the training return when the run did not evaluate)."""
    import numpy as np

    fmt = lambda xs: ", ".join(f"{x:.4g}" for x in xs)  # noqa: E731
    parts = [f"done in {seconds:.1f} s (compile {compile_s:.1f} s)",
             f"{int(np.mean(metrics['physical_episodes'][:, -1])):,} physical episodes"]
    if "epsilon" in metrics:
        parts.append(f"final epsilon {float(np.mean(metrics['epsilon'][:, -1])):.3g}")
    if "updates" in metrics:
        parts.append(f"{int(np.mean(metrics['updates'][:, -1])):,} updates")
    greedy = _last_finite(metrics["eval_return"]) if "eval_return" in metrics else None
    if greedy is not None and np.isfinite(greedy).any():
        parts.append(f"last greedy return {np.nanmean(greedy):.4g} (per seed: {fmt(greedy)})")
    else:
        train = _last_finite(metrics["episode_return"])
        parts.append(f"last training return {np.nanmean(train):.4g} (per seed: {fmt(train)}; exploration "
                     "included, add --eval-episodes N for the greedy return)")
    return ": ".join(parts[:1]) + ": " + ", ".join(parts[1:])


def cmd_eval(args) -> int:
    import jax
    import numpy as np

    from dtrl_jax.experiment import render

    if args.episodes < 1:
        raise UsageError(f"--episodes={args.episodes}: expected >= 1")
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"--max-steps={args.max_steps}: expected >= 1")
    saved = render.load_agent(args.run_dir, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    want_render = args.render or args.gif
    env_id = saved.spec.env_id
    if want_render and env_id not in render.RENDERABLE:
        raise UsageError(f"--render draws {', '.join(render.RENDERABLE)} episodes; this run is {env_id}")
    if args.gif and env_id not in render.UAV_ENVS:
        raise UsageError(f"--gif animates {' / '.join(render.UAV_ENVS)} episodes; use --render for {env_id}")
    key = jax.random.key(args.seed)
    returns, finished = render.greedy_returns(saved, args.episodes, key, args.max_steps)
    steps = saved.interval * saved.spec.config.log_every
    print(f"{saved.spec.env_id}: greedy return over {args.episodes} episode(s) per seed, agent after {steps:,} physical steps")
    for s, (r, f) in enumerate(zip(returns, finished)):
        note = "" if f.all() else f"  ({int((~f).sum())} cut at --max-steps)"
        print(f"  seed {s}: {r.mean():.4g} +- {r.std():.3g}{note}")
    print(f"  all seeds: {returns.mean():.4g} +- {returns.mean(axis=1).std():.3g} (std over seed means)")
    doc = {"episodes": args.episodes, "eval_seed": args.seed, "physical_steps": steps,
           "returns": returns.tolist(), "finished": finished.tolist(),
           "mean": float(returns.mean()), "per_seed_mean": returns.mean(axis=1).tolist()}
    run_dir = Path(args.run_dir)
    (run_dir / "eval.json").write_text(json.dumps(doc, indent=2) + "\n")
    if want_render and env_id in render.AP_ENVS:
        ep = render.ap_episode(saved, jax.random.fold_in(key, 1))
        png = render.draw_ap_episode(ep, run_dir / "episode.png")
        print(f"episode picture: {png} ({np.mean(ep['success']):.0%} of tasks delivered in time)")
    elif want_render and env_id in render.EDGE_ENVS:
        sched = render.schedule(saved, jax.random.fold_in(key, 1))
        png = render.draw_schedule(sched, run_dir / "schedule.png")
        print(f"schedule (Gantt chart): {png} (cost {sched['cost']:.4g} s)")
    elif want_render:
        ep = render.uav_episode(saved, jax.random.fold_in(key, 1))
        png = render.draw_uav_episode(ep, run_dir / "episode.png")
        print(f"episode picture: {png} (mean user rate {np.mean(ep['reward']):.3g} Mbps)")
        if args.gif:
            print(f"episode animation: {render.animate_uav_episode(ep, run_dir / 'episode.gif')}")
    return 0


def cmd_plot(args) -> int:
    from dtrl_jax.experiment.plotting import plot_results, plot_runs

    if args.label and len(args.label) != len(args.run_dirs):
        raise UsageError(f"got {len(args.label)} --label for {len(args.run_dirs)} run folders")
    try:
        if len(args.run_dirs) == 1 and str(args.run_dirs[0]).endswith(".json"):  # a benchmark results file
            plot_results(args.run_dirs[0], args.out, title=args.title)
        else:
            plot_runs(args.run_dirs, args.out, x=args.x, y=args.metric, labels=args.label, title=args.title)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(args.out)
    return 0


def _bench_root() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "benchmarks" / "__init__.py").is_file():
            return base
    return None


def bench_args(args: list[str], cwd: Path) -> list[str]:
    """A benchmark's arguments with ``--out`` made absolute against ``cwd`` (the caller's directory),
    and ``--out cwd`` added when not given, so that a run never overwrites the committed
    ``benchmarks/results/`` unless asked to (``--out benchmarks/results``)."""
    out, i, seen = [], 0, False
    while i < len(args):
        arg = args[i]
        if arg == "--out" and i + 1 < len(args):
            out += ["--out", str((cwd / args[i + 1]).resolve())]
            i, seen = i + 2, True
            continue
        if arg.startswith("--out="):
            out.append("--out=" + str((cwd / arg.split("=", 1)[1]).resolve()))
            seen = True
        else:
            out.append(arg)
        i += 1
    if not seen and not {"-h", "--help"} & set(args):
        out += ["--out", str(cwd.resolve())]
    return out


def cmd_bench(args) -> int:
    root = _bench_root()
    if root is None:
        raise UsageError("no benchmarks/ folder here or next to the dtrl_jax package (run from the repository)")
    names = sorted(p.stem for p in (root / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
    if not args.name:
        print("benchmarks (run `dtrl bench NAME --help` for each one's flags; results go to the current "
              "directory unless --out DIR):")
        for n in names:
            print(f"  {n}")
        return 0
    if args.name not in names:
        raise UsageError(f"unknown benchmark {args.name!r}{did_you_mean(args.name, names)}; "
                         f"available: {', '.join(names) or 'none'}")
    argv = bench_args(list(args.args), Path.cwd())
    return subprocess.call([sys.executable, "-m", f"benchmarks.{args.name}", *argv], cwd=root)


def trainable_gymnax_envs() -> list[str]:
    """gymnax ids (not ours) with a Discrete action space: the ones `dtrl train` accepts."""
    import gymnax
    from gymnax.environments import spaces

    from dtrl_jax.envs import registered_envs

    ours = set(registered_envs())
    out = []
    for env_id in sorted(gymnax.registered_envs):
        if env_id in ours:
            continue
        try:
            env, params = gymnax.make(env_id)
            if isinstance(env.action_space(params), spaces.Discrete):
                out.append(env_id)
        except Exception:  # noqa: BLE001 - an env that cannot even be built is not trainable
            continue
    return out


def cmd_envs(args) -> int:
    from dtrl_jax.envs import registered_envs

    envs = registered_envs()
    width = max(map(len, envs))
    for env_id, desc in envs.items():
        print(f"{env_id:<{width}}  {desc}")
    if args.gymnax:
        print("\ngymnax environments with discrete actions (accepted by `dtrl train`):")
        print("  " + ", ".join(trainable_gymnax_envs()))
    else:
        print("\nAny gymnax id with discrete actions (e.g. CartPole-v1) works too; `dtrl envs --gymnax` lists them. "
              "Your own: `dtrl train package.module:Factory`.")
    return 0


# ----------------------------------------------------------------------------------------- parser
_EPILOG = """examples:
  dtrl envs
  dtrl train AccessPointSelection-v0 --total-timesteps 30000 --log-every 1000 --seeds 4 --eval-episodes 8 \\
      --out runs/physical
  dtrl train AccessPointSelection-v0 --total-timesteps 30000 --log-every 1000 --seeds 4 --eval-episodes 8 \\
      --num-domains 5 --action-trials 5 --out runs/twin --log tensorboard
  dtrl plot runs/physical runs/twin --out compare.png
  dtrl train --config runs/twin/config.json --learning-rate 0.2 --out runs/twin-lr
  dtrl train --resume runs/twin --total-timesteps 60000          # extend a finished run
  dtrl train MultiUAV-v0 --agent dqn --lookahead 4 --num-domains 4 --env-param num_uavs=2 --out runs/uav
  dtrl train mypackage.envs:MyEnv --total-timesteps 20000        # your own gymnax environment
  dtrl eval runs/uav --episodes 10 --render --gif
"""


def build_parser(config_flags: bool = True) -> argparse.ArgumentParser:
    """The ``dtrl`` parser; ``config_flags=False`` leaves out the ~60 generated config flags of
    ``train`` (they need the configs, hence JAX: ``main`` adds them only for ``dtrl train``)."""
    parser = _Parser(
        prog="dtrl",
        description="Digital-twin-enhanced reinforcement learning (Cheng et al., IEEE Network 2024) in JAX. "
        "Train an agent with or without a digital twin, evaluate it, and plot learning curves against "
        "physical episodes.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from dtrl_jax import __version__

    parser.add_argument("--version", action="version", version=f"dtrl-jax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "train", help="train an agent (optionally with a digital twin) into a run folder",
        description="Train a Q-learning or DQN agent on an environment, with the digital twin on or off; "
        "N seeds run as one vmap. Writes RUN_DIR/config.json, metrics.csv, curves.png and checkpoints/. "
        "Every config field is a flag (below). Progress goes to stderr; the run folder is printed on stdout.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_options(p, _TRAIN_OPTIONS)
    if config_flags:
        add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="greedy returns of a trained agent (and a picture of a UAV episode)",
                       description="Play E greedy episodes per seed with the agent saved in RUN_DIR; writes RUN_DIR/eval.json.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--episodes", type=_typed("episodes", parse_int), default=10, metavar="E",
                   help="episodes per seed [default: 10]")
    p.add_argument("--seed", type=_typed("seed", parse_int), default=0, help="evaluation seed [default: 0]")
    p.add_argument("--max-steps", type=_typed("max_steps", parse_int), default=None, metavar="T",
                   help="step limit per episode [default: the env's max_steps_in_episode]")
    p.add_argument("--render", action="store_true",
                   help="picture one greedy episode: MultiUAV trajectories (RUN_DIR/episode.png), AP selection "
                   "along the road (episode.png) or the edge-scheduling Gantt chart (schedule.png)")
    p.add_argument("--gif", action="store_true", help="MultiUAV: also save RUN_DIR/episode.gif (implies --render)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="learning curves of one or more run folders, overlaid",
                       description="Mean over seeds with a +-1 std band, against physical episodes (or steps). "
                       "One benchmark results file (RESULTS.json, schema dtrl-bench/1) draws its curve panels.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="curves.png", metavar="PNG", help="output image [default: curves.png]")
    p.add_argument("--x", choices=("episodes", "steps"), default="episodes",
                   help="x-axis: physical episodes or physical steps [default: episodes]")
    p.add_argument("--metric", default=None,
                   help="y-axis metric (a metrics.csv column, e.g. episode_return, loss, violations) [default: the "
                   "greedy return eval_return solid with the training return dashed; episode_return for runs "
                   "without evaluation]")
    p.add_argument("--label", action="append", help="legend label per run folder, in order (repeat)")
    p.add_argument("--title", help="plot title [default: the env ids]")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("bench", help="run a benchmark script: python -m benchmarks.NAME [ARGS]",
                       description="Run benchmarks/NAME.py; without NAME, list the benchmarks.")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="passed to the benchmark")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("envs", help="list the environments", description="List the registered environments.")
    p.add_argument("--gymnax", action="store_true",
                   help="also list the gymnax ids that `dtrl train` accepts (discrete actions)")
    p.set_defaults(func=cmd_envs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dtrl`` script; returns the exit status (0 ok, 1 run error, 2 usage)."""
    from dtrl_jax.experiment.runs import RunError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(config_flags=bool(argv) and argv[0] == "train")
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        args.argv = argv[1:] if args.command == "train" else None
        return int(args.func(args) or 0)
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as err:
        print(f"dtrl: error: {err}", file=sys.stderr)
        return 2
    except RunError as err:
        print(f"dtrl: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dtrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

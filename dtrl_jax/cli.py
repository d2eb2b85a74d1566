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
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any

from dtrl_jax.config import DQNConfig, QLearningConfig, TwinConfig, field_docs

_AGENT_CLASSES = {"ql": QLearningConfig, "dqn": DQNConfig}
_AGENT_TITLES = {"ql": "tabular Q-learning", "dqn": "DQN"}


class UsageError(Exception):
    """A bad flag or value: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (no usage dump, no traceback)."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


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


def _parser_for(hint) -> tuple[Any, str]:
    """``(parse function, metavar)`` for a config field's type hint."""
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


def _config_fields(cls) -> list[tuple[str, Any, Any, str]]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    return [(f.name, hints[f.name], f.default, docs[f.name]) for f in dataclasses.fields(cls) if f.name != "twin"]


def _add_field(group, name: str, hint, default_text: str, doc: str, dest: str) -> None:
    flag = "--" + name.replace("_", "-")
    help_text = f"{doc} [default: {default_text}]".replace("%", "%%")
    if hint is bool:
        group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_text)
        return
    parse, meta = _parser_for(hint)
    group.add_argument(flag, dest=dest, type=_typed(name, parse), default=argparse.SUPPRESS, metavar=meta,
                       help=help_text)


def _fmt_default(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per field of QLearningConfig, DQNConfig and TwinConfig (dests ``agent:``/``twin:``)."""
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
            _add_field(common, name, hint, text, doc, f"agent:{name}")
        else:
            owner = "ql" if name in ql else "dqn"
            hint, d, doc = (ql if owner == "ql" else dqn)[name]
            _add_field(only[owner], name, hint, _fmt_default(d), doc, f"agent:{name}")
    twin = parser.add_argument_group(
        "digital twin (TwinConfig): --twin, or any of these flags, switches the twin on; without them "
        "the run is plain physical RL"
    )
    twin.add_argument("--twin", action="store_true", default=False,
                      help="use a digital twin (TwinConfig defaults, changed by the flags below)")
    for name, hint, d, doc in _config_fields(TwinConfig):
        if name in ql or name in dqn or name == "twin":
            raise RuntimeError(f"TwinConfig.{name} clashes with an agent config field; the CLI needs unique names")
        _add_field(twin, name, hint, _fmt_default(d), doc, f"twin:{name}")


def _given(args, prefix: str) -> dict[str, Any]:
    return {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith(prefix)}


def build_config(agent: str, args):
    """The agent config from parsed flags; raises UsageError with the config's own message."""
    fields = _given(args, "agent:")
    cls = _AGENT_CLASSES[agent]
    allowed = {f.name for f in dataclasses.fields(cls)}
    wrong = sorted(set(fields) - allowed)
    if wrong:
        other = "dqn" if agent == "ql" else "ql"
        flags = ", ".join("--" + w.replace("_", "-") for w in wrong)
        raise UsageError(f"{flags} only apply to --agent {other} ({_AGENT_TITLES[other]}), not --agent {agent}")
    twin_fields = _given(args, "twin:")
    try:
        twin = TwinConfig(**twin_fields) if (twin_fields or args.twin) else None
        return cls(**fields, twin=twin)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def parse_env_params(env_id: str, items: list[str]) -> dict[str, Any]:
    """``["name=value", ...]`` -> typed overrides, typed by the env's default ``EnvParams``."""
    from dtrl_jax.runs import default_env_params

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

    from dtrl_jax.runs import make_env

    env, params = make_env(env_id, env_params)
    return "ql" if isinstance(env.observation_space(params), spaces.Discrete) else "dqn"


def _twin_summary(config) -> str:
    twin = config.twin
    if twin is None:
        return "no twin (physical RL)"
    on = [f"{n}={getattr(twin, n)}" for n, _, d, _ in _config_fields(TwinConfig) if getattr(twin, n) != d]
    return "twin " + (", ".join(on) if on else "(defaults)")


def cmd_train(args) -> int:
    import jax

    from dtrl_jax import runs
    from dtrl_jax.progress import GracefulStop, ProgressBar, Stopped
    from dtrl_jax.memory import check_fits, describe, estimate_memory
    from dtrl_jax.train import make_train

    if args.keep_checkpoints < 1:
        raise UsageError(f"--keep-checkpoints={args.keep_checkpoints}: expected >= 1 (2 keeps a fallback)")
    if args.checkpoint_every is not None and args.checkpoint_every <= 0:
        raise UsageError(f"--checkpoint-every={args.checkpoint_every}: expected a positive number of physical steps")
    if args.resume:
        extra = sorted(_given(args, "agent:")) + sorted(_given(args, "twin:"))
        extra += [f for f, bad in (("env", args.env), ("env-param", args.env_param), ("seeds", args.seeds),
                                   ("seed", args.seed), ("out", args.out), ("twin", args.twin),
                                   ("agent", args.agent != "auto")) if bad]
        if extra:
            flags = ", ".join("--" + e.replace("_", "-") if e != "env" else "ENV" for e in extra)
            raise UsageError(f"--resume takes the config from {args.resume}/config.json; drop {flags}")
        spec, doc = runs.load_run(args.resume)
        run_dir = Path(args.resume)
        checkpoint_every = args.checkpoint_every or doc.get("checkpoint_every")
    else:
        if not args.env:
            raise UsageError("give an environment id, e.g. `dtrl train AccessPointSelection-v0` (list: `dtrl envs`)")
        env_params = parse_env_params(args.env, args.env_param or [])
        try:
            agent = args.agent if args.agent != "auto" else _auto_agent(args.env, env_params)
        except ValueError as err:
            raise UsageError(str(err)) from None
        config = build_config(agent, args)
        seeds = 1 if args.seeds is None else args.seeds
        seed = 0 if args.seed is None else args.seed
        if seeds < 1 or seed < 0:
            raise UsageError(f"--seeds={seeds} / --seed={seed}: expected seeds >= 1 and seed >= 0")
        spec = runs.RunSpec(args.env, config, env_params, seed=seed, seeds=seeds)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out or f"runs/{args.env}-{agent}-{stamp}")
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
        f"{config.total_timesteps:,} physical steps x {spec.seeds} seed(s) (one vmap) on {dev.platform}")
    say(describe(estimate))
    say(f"run folder: {run_dir}" + (" (resuming)" if args.resume else ""))
    bar = ProgressBar(config.total_timesteps, seeds=spec.seeds, enabled=not args.no_progress)
    t0 = time.perf_counter()
    stop = GracefulStop(say, checkpoint_every is not None, config.num_intervals)
    try:
        with stop:
            metrics, _ = runs.train_run(
                run_dir, None if args.resume else spec, resume=bool(args.resume), checkpoint_every=checkpoint_every,
                on_interval=None if args.no_progress else bar.update, on_checkpoint=stop.check,
                keep=args.keep_checkpoints, warn=lambda m: say(f"warning: {m}"),
                command=["dtrl", "train", *(args.argv or [])],
            )
    except (KeyboardInterrupt, Stopped) as exc:
        bar.close()
        if isinstance(exc, Stopped):
            say(f"stopped after interval {exc.interval} (checkpoint saved); continue with: dtrl train --resume {run_dir}")
        else:
            say(f"interrupted; `dtrl train --resume {run_dir}` continues from the last checkpoint, if any")
        return 130
    bar.close()
    import numpy as np

    last = np.asarray(metrics["episode_return"], dtype=np.float64)
    finite = [row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan for row in last]
    say(f"done in {time.perf_counter() - t0:.1f} s: {int(np.mean(metrics['physical_episodes'][:, -1])):,} physical "
        f"episodes, last mean return {np.nanmean(finite):.4g} (per seed: {', '.join(f'{x:.4g}' for x in finite)})")
    print(f"{run_dir}")
    say(f"files: {run_dir}/config.json, metrics.csv, curves.png, checkpoints/")
    return 0


def cmd_eval(args) -> int:
    import jax
    import numpy as np

    from dtrl_jax import render

    if args.episodes < 1:
        raise UsageError(f"--episodes={args.episodes}: expected >= 1")
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"--max-steps={args.max_steps}: expected >= 1")
    saved = render.load_agent(args.run_dir, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    want_render = args.render or args.gif
    if want_render and saved.spec.env_id not in render.UAV_ENVS:
        raise UsageError(f"--render/--gif draw {' / '.join(render.UAV_ENVS)} episodes; this run is {saved.spec.env_id}")
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
    if want_render:
        ep = render.uav_episode(saved, jax.random.fold_in(key, 1))
        png = render.draw_uav_episode(ep, run_dir / "episode.png")
        print(f"episode picture: {png} (mean user rate {np.mean(ep['reward']):.3g} Mbps)")
        if args.gif:
            print(f"episode animation: {render.animate_uav_episode(ep, run_dir / 'episode.gif')}")
    return 0


def cmd_plot(args) -> int:
    from dtrl_jax.plotting import plot_runs

    if args.label and len(args.label) != len(args.run_dirs):
        raise UsageError(f"got {len(args.label)} --label for {len(args.run_dirs)} run folders")
    try:
        plot_runs(args.run_dirs, args.out, x=args.x, y=args.metric, labels=args.label, title=args.title)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(args.out)
    return 0


def _bench_root() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / "benchmarks" / "__init__.py").is_file():
            return base
    return None


def cmd_bench(args) -> int:
    root = _bench_root()
    if root is None:
        raise UsageError("no benchmarks/ folder here or next to the dtrl_jax package (run from the repository)")
    names = sorted(p.stem for p in (root / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
    if not args.name:
        print("benchmarks (run `dtrl bench NAME --help` for each one's flags):")
        for n in names:
            print(f"  {n}")
        return 0
    if args.name not in names:
        raise UsageError(f"unknown benchmark {args.name!r}; available: {', '.join(names) or 'none'}")
    return subprocess.call([sys.executable, "-m", f"benchmarks.{args.name}", *args.args], cwd=root)


def cmd_envs(args) -> int:
    from dtrl_jax.envs import registered_envs

    envs = registered_envs()
    width = max(map(len, envs))
    for env_id, desc in envs.items():
        print(f"{env_id:<{width}}  {desc}")
    if args.gymnax:
        import gymnax

        print("\ngymnax environments (also accepted by `dtrl train`):")
        print("  " + ", ".join(sorted(gymnax.registered_envs)))
    else:
        print("\nAny gymnax id (e.g. CartPole-v1) works too; `dtrl envs --gymnax` lists them.")
    return 0


# ----------------------------------------------------------------------------------------- parser
_EPILOG = """examples:
  dtrl envs
  dtrl train AccessPointSelection-v0 --total-timesteps 30000 --log-every 1000 --seeds 4 --out runs/physical
  dtrl train AccessPointSelection-v0 --total-timesteps 30000 --log-every 1000 --seeds 4 \\
      --num-domains 5 --action-trials 5 --out runs/twin
  dtrl plot runs/physical runs/twin --out compare.png
  dtrl train MultiUAV-v0 --agent dqn --lookahead 4 --num-domains 4 --env-param num_uavs=2 --out runs/uav
  dtrl eval runs/uav --episodes 10 --render --gif
"""


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("env", nargs="?", help="environment id (see `dtrl envs`), e.g. AccessPointSelection-v0")
    p.add_argument("--agent", choices=("auto", "ql", "dqn"), default="auto",
                   help="ql = tabular Q-learning (discrete observations), dqn = deep Q-network; auto picks ql "
                   "for a discrete observation space, else dqn [default: auto]")
    p.add_argument("--seeds", type=_typed("seeds", parse_int), default=None, metavar="N",
                   help="number of seeds, run in parallel as one vmap [default: 1]")
    p.add_argument("--seed", type=_typed("seed", parse_int), default=None, metavar="S",
                   help="base seed: the keys are jax.random.split(jax.random.key(S), N) [default: 0]")
    p.add_argument("--out", metavar="DIR", help="run folder [default: runs/ENV-AGENT-TIMESTAMP]")
    p.add_argument("--env-param", action="append", metavar="NAME=VALUE",
                   help="override an environment parameter (repeatable), e.g. --env-param num_uavs=2")
    p.add_argument("--checkpoint-every", type=_typed("checkpoint_every", parse_int), metavar="STEPS",
                   help="save a checkpoint every STEPS physical steps (a multiple of --log-every) "
                   "[default: only at the end]")
    p.add_argument("--keep-checkpoints", type=_typed("keep_checkpoints", parse_int), default=2, metavar="K",
                   help="keep the K newest checkpoints (>= 2 leaves a fallback) [default: 2]")
    p.add_argument("--resume", metavar="DIR",
                   help="continue an interrupted run from its last good checkpoint (config from DIR/config.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
                   help="MultiUAV envs: save RUN_DIR/episode.png with UAV trajectories and users of one greedy episode")
    p.add_argument("--gif", action="store_true", help="also save RUN_DIR/episode.gif (implies --render)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="learning curves of one or more run folders, overlaid",
                       description="Mean over seeds with a +-1 std band, against physical episodes (or steps).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="curves.png", metavar="PNG", help="output image [default: curves.png]")
    p.add_argument("--x", choices=("episodes", "steps"), default="episodes",
                   help="x-axis: physical episodes or physical steps [default: episodes]")
    p.add_argument("--metric", default="episode_return",
                   help="y-axis metric (a metrics.csv column, e.g. loss, violations) [default: episode_return]")
    p.add_argument("--label", action="append", help="legend label per run folder, in order (repeat)")
    p.add_argument("--title", help="plot title [default: the env ids]")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("bench", help="run a benchmark script: python -m benchmarks.NAME [ARGS]",
                       description="Run benchmarks/NAME.py; without NAME, list the benchmarks.")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="passed to the benchmark")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("envs", help="list the environments", description="List the registered environments.")
    p.add_argument("--gymnax", action="store_true", help="also list the gymnax ids")
    p.set_defaults(func=cmd_envs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dtrl`` script; returns the exit status (0 ok, 1 run error, 2 usage)."""
    from dtrl_jax.runs import RunError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
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

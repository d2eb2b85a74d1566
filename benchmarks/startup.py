"""Start-up time of the ``dtrl`` command (issue 21, point 9): wall time of fresh processes.

    python -m benchmarks.startup [--repeats 5] [--out DIR] [--compare OTHER_CHECKOUT]

Runs ``python -m dtrl_jax.experiment.cli`` with ``--help``, ``envs``, ``plot`` (on a small synthetic run folder)
and ``train --help`` (which needs the configs, hence JAX) ``--repeats`` times each in new processes
and writes ``startup.json`` in the harness schema ``dtrl-bench/1`` (``summary[checkout][command]``: median,
min, max seconds and whether JAX was imported; panel ``wall_s``: each run's seconds against the run
number, one series per checkout and command).
``--compare DIR`` times another checkout of the repository too, interleaved run by run with this
one so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness

ROOT = Path(__file__).resolve().parent.parent


def _once(argv: list[str], root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dtrl_jax.experiment.cli", *argv], check=False, cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode not in (0, 2):
        raise RuntimeError(f"{argv}: exit {proc.returncode}: {proc.stderr[-500:]}")
    return time.perf_counter() - t0


def _imports_jax(argv: list[str], root: Path) -> bool:
    probe = ("import sys, io, contextlib; from dtrl_jax.experiment.cli import main\n"
             f"with contextlib.redirect_stdout(io.StringIO()): main({argv!r})\n"
             "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], check=False, cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)})
    return out.stdout.strip().endswith("True")


def _commit(root: Path) -> str | None:
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                         text=True)
    return out.stdout.strip() or None


def _summary(times: list[float], argv, jax_loaded: bool) -> dict:
    return {"argv": argv, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": len(times), "imports_jax": jax_loaded}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="results folder [default: benchmarks/results]")
    parser.add_argument("--compare", metavar="DIR", help="another checkout to time the same way (e.g. an older commit)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats}: expected an int >= 1")
    roots = {"this": ROOT} | ({"compare": Path(args.compare).resolve()} if args.compare else {})
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        rows = ["seed,interval,physical_steps,physical_episodes,episode_return"]
        rows += [f"0,{i},{10 * (i + 1)},{i + 1},{float(i)}" for i in range(20)]
        (run / "metrics.csv").write_text("\n".join(rows) + "\n")
        commands = {"--help": ["--help"], "envs": ["envs"],
                    "plot": ["plot", str(run), "--out", str(Path(tmp) / "c.png")], "train --help": ["train", "--help"]}
        times = {(who, name): [] for who in roots for name in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                for who, root in roots.items():
                    times[who, name].append(_once(cmd, root))
        results = {who: {name: _summary(times[who, name], cmd, _imports_jax(cmd, root))
                         for name, cmd in commands.items()} for who, root in roots.items()}
    config = {"python": sys.version.split()[0], "repeats": args.repeats,
              "roots": {who: {"path": str(root), "commit": _commit(root)} for who, root in roots.items()},
              "commands": {name: cmd for name, cmd in commands.items() if name != "plot"} | {
                  "plot": ["plot", "RUN_DIR (20 synthetic intervals)", "--out", "PNG"]},
              "load_note": "wall times of fresh processes on a shared machine; compare runs interleaved"}
    for per_command in results.values():
        for r in per_command.values():
            r.pop("argv")
    series = {f"{who}: dtrl {name}": {"x": list(range(1, args.repeats + 1)), "mean": times[who, name],
                                      "std": [0.0] * args.repeats, "seeds": 1}
              for who in roots for name in commands}
    curves = {"wall_s": {"x": "run", "y": "wall_s", "xlabel": "run (interleaved over commands and checkouts)",
                         "ylabel": "wall seconds of a fresh process", "series": series}}
    doc = {"config": config, "summary": results, "curves": curves}
    harness.write("startup", mode="default", **doc, out=args.out)
    for who, rows in results.items():
        for name, r in rows.items():
            print(f"{who:8s} dtrl {name:13s} median {r['median_s']:.2f} s (min {r['min_s']:.2f}, "
                  f"max {r['max_s']:.2f}, {r['repeats']} runs), imports JAX: {r['imports_jax']}")
    return doc


if __name__ == "__main__":
    main()

"""Start-up time of the ``dtrl`` command (issue 21, point 9): wall time of fresh processes.

    python -m benchmarks.startup [--repeats 5] [--out DIR]

Runs ``python -m dtrl_jax.cli`` with ``--help``, ``envs``, ``plot`` (on a small synthetic run folder)
and ``train --help`` (which needs the configs, hence JAX) ``--repeats`` times each in new processes
and writes ``startup.json`` (median, min, max seconds per command, and whether JAX was imported).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(argv: list[str], repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "dtrl_jax.cli", *argv], check=False, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 2):
            raise RuntimeError(f"{argv}: exit {proc.returncode}: {proc.stderr[-500:]}")
    probe = ("import sys, io, contextlib; from dtrl_jax.cli import main\n"
             f"with contextlib.redirect_stdout(io.StringIO()): main({argv!r})\n"
             "print('jax' in sys.modules)")
    jax_loaded = subprocess.run([sys.executable, "-c", probe], check=False, cwd=ROOT, capture_output=True,
                                text=True).stdout.strip().endswith("True")
    return {"argv": argv, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats, "imports_jax": jax_loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        rows = ["seed,interval,physical_steps,physical_episodes,episode_return"]
        rows += [f"0,{i},{10 * (i + 1)},{i + 1},{float(i)}" for i in range(20)]
        (run / "metrics.csv").write_text("\n".join(rows) + "\n")
        commands = {"--help": ["--help"], "envs": ["envs"],
                    "plot": ["plot", str(run), "--out", str(Path(tmp) / "c.png")], "train --help": ["train", "--help"]}
        results = {name: _time(argv, args.repeats) for name, argv in commands.items()}
    doc = {"benchmark": "startup", "python": sys.version.split()[0], "machine_note": "see README: 2-core shared CPU",
           "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps(doc, indent=2) + "\n")
    for name, r in results.items():
        print(f"dtrl {name:13s} median {r['median_s']:.2f} s (min {r['min_s']:.2f}, max {r['max_s']:.2f}, "
              f"{r['repeats']} runs), imports JAX: {r['imports_jax']}")


if __name__ == "__main__":
    main()

"""Time of ``render.animate_uav_episode`` (issue 21: GIFs redrew every frame) on a synthetic episode.

    python -m benchmarks.render_gif [--steps 100] [--every 2] [--out DIR]

Draws a 4-UAV, 10-user random-walk episode of ``--steps`` steps as a GIF twice: blitted (the current
method: static background rendered once) and with a full redraw per frame (the previous method, kept here only
as the baseline), and writes ``render_gif.json`` (harness schema ``dtrl-bench/1``: ``summary`` the seconds
of both methods and the speed-up; panel ``seconds``: one point per method against the frame count).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import harness
from dtrl_jax.experiment import render


def synthetic_episode(steps: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    walk = lambda n: np.clip(250 + np.cumsum(rng.normal(0, 8, (steps + 1, n, 2)), axis=0), 0, 500)  # noqa: E731
    return {"uav": walk(4), "users": walk(10), "reward": rng.uniform(2, 4, steps), "area": 500.0,
            "hangar": np.array([0.0, 0.0])}


def redraw_every_frame(ep, out, fps=10, every=2):
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.2, 5), layout="constrained")
    ax = fig.add_subplot()
    frames = list(range(0, len(ep["reward"]) + 1, every))
    FuncAnimation(fig, lambda t: render._draw(ax, ep, upto=t), frames=frames).save(
        out, writer=PillowWriter(fps=fps), dpi=80)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--out", default=None, help="results folder [default: benchmarks/results]")
    args = parser.parse_args(argv)
    ep = synthetic_episode(args.steps)
    frames = len(range(0, args.steps + 1, args.every))
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("blitted", render.animate_uav_episode), ("redraw_every_frame", redraw_every_frame)):
            t0 = time.perf_counter()
            fn(ep, Path(tmp) / f"{name}.gif", every=args.every)
            times[name] = time.perf_counter() - t0
    summary = {"seconds": times, "speedup": times["redraw_every_frame"] / times["blitted"]}
    curves = {"seconds": {"x": "frames", "y": "seconds", "xlabel": "GIF frames", "ylabel": "wall seconds to write the GIF",
                          "series": {name: {"x": [float(frames)], "mean": [t], "std": [0.0], "seeds": 1}
                                     for name, t in times.items()}}}
    doc = {"config": {"steps": args.steps, "every": args.every, "frames": frames, "uavs": 4, "users": 10},
           "summary": summary, "curves": curves}
    harness.write("render_gif", mode="default", **doc, out=args.out)
    print(json.dumps(summary))
    return doc

if __name__ == "__main__":
    main()

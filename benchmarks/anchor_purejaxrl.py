"""Speed against the real anchor: PureJaxRL's ``dqn.py`` and dtrl-jax, one process per measurement.

``python -m benchmarks.anchor_purejaxrl --purejaxrl PATH/dqn.py [--rounds 3] [--out DIR]``

PureJaxRL is not our code and is never committed here. To measure against it, put its source in a
scratch folder outside the repository (e.g. ``fetch`` luchris429/purejaxrl, commit 31756b1), apply
the edits current packages need, and point this script at the edited ``dqn.py`` with
``--purejaxrl`` or the ``DTRL_PUREJAXRL_DQN`` environment variable. The edits (``EDITS``, recorded in
the JSON's ``config``): gymnax 1.x's six-value ``step`` unpacked with ``done = terminated | truncated`` (twice),
``jax.tree_map`` -> ``jax.tree.map``, and the ``wandb`` import and ``wandb.init`` dropped; it needs
``flashbax`` installed. Without it the script says so and measures our own PureJaxRL-style
``benchmarks._reference_dqn`` instead (``config.anchor: "reference_dqn"`` in the JSON).

Writes ``anchor_purejaxrl.json`` in the harness schema ``dtrl-bench/1``: ``summary[form]`` the medians
(``ours_steps_per_s``, ``<anchor>_steps_per_s``, ``ratio``, compile seconds), ``measurements`` every
process's row, panel ``steps_per_s`` each implementation and form against the round.

Method (the same for both sides): CartPole-v1 with PureJaxRL's own settings (10 envs, buffer 10,000,
batch 128, lr 2.5e-4, learning starts 10,000, one update per 10 env steps, target copy every 500,
epsilon 1 -> 0.05 over 250,000 steps, MLP 120-84, MSE loss, no gradient clipping: ours with
``max_grad_norm=None``). Each measurement is a fresh Python process (no shared caches or warm allocator), compiled ahead
of time, then timed for one call; rounds interleave the implementations (anchor, ours, ours, anchor,
...) so both see the same background load; the figure is the median over rounds. Forms:

* ``single``: ``jax.jit(train)(key)``, one seed.
* ``vmap``: ``jax.jit(jax.vmap(train))(keys)``, the form the README teaches.
* ``vmap_run`` (ours only): ``jax.vmap(train.run, in_axes=(0, None))`` after ``vmap(train.init)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAME = "anchor_purejaxrl"
ENV_VAR = "DTRL_PUREJAXRL_DQN"
EDITS = (
    "env.step returns 6 values in gymnax 1.x: unpack (obs, state, reward, terminated, truncated, info) and "
    "set done = terminated | truncated (buffer init and the training step)",
    "jax.tree_map -> jax.tree.map",
    "import wandb and the wandb.init call in main() removed (logging off)",
)
PUREJAXRL_COMMIT = "31756b1"

SETTINGS = dict(num_envs=10, buffer_size=10_000, batch_size=128, learning_rate=2.5e-4, learning_starts=10_000,
                train_every=10, target_update_every=500, epsilon_start=1.0, epsilon_end=0.05,
                epsilon_decay_steps=250_000, hidden_sizes=(120, 84), gamma=0.99, tau=1.0)


def purejaxrl_config(total_steps: int) -> dict[str, Any]:
    s = SETTINGS
    return {"NUM_ENVS": s["num_envs"], "BUFFER_SIZE": s["buffer_size"], "BUFFER_BATCH_SIZE": s["batch_size"],
            "TOTAL_TIMESTEPS": total_steps, "EPSILON_START": s["epsilon_start"], "EPSILON_FINISH": s["epsilon_end"],
            "EPSILON_ANNEAL_TIME": s["epsilon_decay_steps"], "TARGET_UPDATE_INTERVAL": s["target_update_every"],
            "LR": s["learning_rate"], "LEARNING_STARTS": s["learning_starts"], "TRAINING_INTERVAL": s["train_every"],
            "LR_LINEAR_DECAY": False, "GAMMA": s["gamma"], "TAU": s["tau"], "ENV_NAME": "CartPole-v1", "SEED": 0,
            "NUM_SEEDS": 1, "WANDB_MODE": "disabled"}


def our_config(total_steps: int):
    import dtrl_jax as dt

    log_every = min(10_000, total_steps)
    return dt.DQNConfig(total_timesteps=total_steps, log_every=log_every, loss="mse", max_grad_norm=None, **SETTINGS)


def _load_module(path: str):
    spec = importlib.util.spec_from_file_location("purejaxrl_dqn_scratch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(impl: str, form: str, steps: int, seeds: int, path: str | None) -> dict[str, Any]:
    """One measurement in this process: compile, then time one call."""
    import gymnax
    import jax
    import jax.numpy as jnp
    import numpy as np

    keys = jax.random.split(jax.random.key(0), seeds)
    if impl == "purejaxrl":
        train = _load_module(path).make_train(purejaxrl_config(steps))
        keys = jax.random.split(jax.random.PRNGKey(0), seeds)

        def final(out):
            ret = np.asarray(out["metrics"]["returns"], np.float64)
            return float(ret[..., -max(1, ret.shape[-1] // 10):].mean())
    elif impl == "reference_dqn":
        from benchmarks import _reference_dqn as reference_dqn

        env, params = gymnax.make("CartPole-v1")
        train = reference_dqn.make_train(reference_dqn.config_from_dqn(our_config(steps)), env, params)

        def final(out):
            return reference_dqn.final_return(out[1])
    else:
        import dtrl_jax as dt

        env, params = gymnax.make("CartPole-v1")
        cfg = our_config(steps)
        train = dt.make_train(cfg, env, params)

        def final(out):
            m = out.metrics
            ret = np.asarray(m["episode_return"], np.float64)
            return float(np.nanmean(ret[..., -max(1, ret.shape[-1] // 10):]))

    if form == "single":
        fn, args = jax.jit(train), (keys[0],)
    elif form == "vmap":
        fn, args = jax.jit(jax.vmap(train)), (keys,)
    elif form == "vmap_run" and impl == "ours":
        def both(ks):
            runner, _ = jax.vmap(train.init)(ks)
            return dt.TrainResult(*jax.vmap(train.run, in_axes=(0, None))(
                runner, jnp.arange(cfg.num_intervals, dtype=jnp.int32)))
        fn, args = jax.jit(both), (keys,)
    else:
        raise ValueError(f"form {form!r} is not measured for {impl!r}")
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    t1 = time.perf_counter()
    cpu0 = time.process_time()
    out = jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    total = steps * (seeds if form != "single" else 1)
    return {"impl": impl, "form": form, "steps": steps, "seeds": seeds if form != "single" else 1,
            "compile_s": t1 - t0, "run_s": t2 - t1, "cpu_s": cpu, "steps_per_s": total / (t2 - t1),
            "final_return": final(out)}


def measure(impl: str, form: str, steps: int, seeds: int, path: str | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.anchor_purejaxrl", "--worker", impl, form, str(steps), str(seeds)]
    if path:
        cmd += ["--purejaxrl", path]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        raise RuntimeError(f"measurement {impl}/{form} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purejaxrl", default=os.environ.get(ENV_VAR), metavar="PATH",
                        help=f"the edited PureJaxRL dqn.py (default: ${ENV_VAR})")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement (median)")
    parser.add_argument("--single-steps", type=int, default=500_000, help="physical steps of the 1-seed runs")
    parser.add_argument("--seed-steps", type=int, default=100_000, help="physical steps per seed of the vmapped runs")
    parser.add_argument("--seeds", type=int, default=8, help="seeds of the vmapped runs")
    parser.add_argument("--out", default=None, metavar="DIR", help="directory for the JSON/PNG (default benchmarks/results)")
    parser.add_argument("--rows", default=None, metavar="JSON",
                        help="summarise the per-process rows ('measurements') of an earlier result file instead of "
                             "measuring (e.g. a run written in an older layout); its commit and time go in the config")
    parser.add_argument("--worker", nargs=4, metavar=("IMPL", "FORM", "STEPS", "SEEDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        impl, form, steps, seeds = args.worker
        print(json.dumps(worker(impl, form, int(steps), int(seeds), args.purejaxrl)))
        return {}
    for name in ("rounds", "single_steps", "seed_steps", "seeds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)}: expected >= 1")

    from benchmarks import _common, harness

    anchor = "purejaxrl"
    if not args.purejaxrl or not Path(args.purejaxrl).is_file():
        _common.log(f"PureJaxRL's dqn.py not given (--purejaxrl or ${ENV_VAR}): measuring our PureJaxRL-style "
                    "benchmarks/_reference_dqn.py instead; see this module's docstring for how to get the real one")
        anchor = "reference_dqn"
    plan = [("single", args.single_steps, 1), ("vmap", args.seed_steps, args.seeds)]
    rows: list[dict[str, Any]] = []
    rows_from = None
    if args.rows:
        earlier = json.loads(Path(args.rows).read_text())
        rows = list(earlier["measurements"])
        prov = earlier.get("provenance", {})
        rows_from = {"file": str(args.rows), "timestamp_utc": earlier.get("timestamp_utc"),
                     "commit": prov.get("commit"), "dirty": prov.get("dirty"),
                     "command": prov.get("command"), "environment": earlier.get("environment")}
        anchor = earlier.get("config", earlier).get("anchor", anchor)
        first = {r["form"]: r for r in rows}
        args.rounds = 1 + max(r["round"] for r in rows)
        args.single_steps, args.seed_steps = first["single"]["steps"], first["vmap"]["steps"]
        args.seeds = first["vmap"]["seeds"]
    for r in range(0 if rows_from else args.rounds):
        for form, steps, seeds in plan:
            order = [anchor, "ours"] if r % 2 == 0 else ["ours", anchor]
            for impl in order:
                rows.append(measure(impl, form, steps, seeds, args.purejaxrl) | {"round": r})
                _common.log(f"round {r} {form:6s} {impl:13s} {rows[-1]['steps_per_s']:10,.0f} steps/s "
                            f"(compile {rows[-1]['compile_s']:.1f} s, return {rows[-1]['final_return']:.1f})")
        rows.append(measure("ours", "vmap_run", args.seed_steps, args.seeds, None) | {"round": r})
        _common.log(f"round {r} vmap_run ours          {rows[-1]['steps_per_s']:10,.0f} steps/s")

    def med(impl, form, key="steps_per_s"):
        vals = [x[key] for x in rows if x["impl"] == impl and x["form"] == form]
        return statistics.median(vals) if vals else None

    summary = {}
    for form in ("single", "vmap", "vmap_run"):
        ours, ref = med("ours", form), med(anchor, form if form != "vmap_run" else "vmap")
        summary[form] = {"ours_steps_per_s": ours, f"{anchor}_steps_per_s": ref, "ratio": ours / ref if ref else None,
                         "ours_compile_s": med("ours", form, "compile_s"),
                         f"{anchor}_compile_s": med(anchor, form if form != "vmap_run" else "vmap", "compile_s")}
    config = {"anchor": anchor, "purejaxrl_commit": PUREJAXRL_COMMIT if anchor == "purejaxrl" else None,
              "edits": list(EDITS) if anchor == "purejaxrl" else [], "settings": {**SETTINGS, "env": "CartPole-v1"},
              "method": "one process per measurement, interleaved rounds, median over rounds, one timed call after "
                        "ahead-of-time compilation",
              "rounds": args.rounds, "single_steps": args.single_steps, "seed_steps": args.seed_steps,
              "seeds": args.seeds, "load_average_at_end": _common.load_average(),
              "rows_from": rows_from}
    # one series per implementation and form: its steps/s in each round (the summary holds the medians)
    curves = {"steps_per_s": harness.points_panel(
        rows, x="round", y="steps_per_s", series_of=lambda r: f"{r['impl']} {r['form']}",
        seeds=lambda r: 1 if r["form"] == "single" else args.seeds, xlabel="round (implementations interleaved)",
        ylabel="physical steps/s, all seeds (one fresh process per point)")}
    doc = {"config": config, "summary": summary, "curves": curves}
    harness.write(NAME, mode="default", **doc, out=args.out, extra={"measurements": rows})
    doc["measurements"] = rows
    for form, s in summary.items():
        if s["ratio"] is not None:
            _common.log(f"{form:8s}: ours/{anchor} = {s['ratio']:.2f}")
    return doc


if __name__ == "__main__":
    main()

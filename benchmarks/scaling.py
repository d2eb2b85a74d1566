"""Throughput of the DT-enhanced loop as the digital-domain axis is sharded over 1, 2, 4, 8 devices.

``python -m benchmarks.scaling [--quick] [--device cpu|gpu]``

On CPU the devices are *simulated* (``--xla_force_host_platform_device_count``: one process, the
same cores), so the point there is correctness and the overhead of sharding, not speed-up: each
device count runs in its own subprocess, because JAX fixes the device count at start-up. With
``--device gpu`` the real devices of the machine are used (counts up to ``len(jax.devices())``).
Writes ``results/scaling.json`` (harness schema ``dtrl-bench/1``: ``summary["rows"]`` per device count and
``*_by_devices``; panels ``physical_steps_per_s`` and ``twin_transitions_per_s`` against devices) and
``results/scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import harness
from benchmarks._common import add_common_args, log, run_mode


def worker(devices: int, steps: int, domains: int, device: str) -> dict:
    """Time one sharded run on ``devices`` devices (runs inside the subprocess)."""
    import gymnax
    import jax

    import dtrl_jax as dt
    from dtrl_jax import distributed

    devs = jax.devices("gpu" if device == "gpu" else "cpu")[:devices]
    env, params = gymnax.make("CartPole-v1")
    # log_every must hold whole vectorised steps (8 envs) and divide the run.
    log_every = max(8, (steps // 4) // 8 * 8)
    steps = max(log_every, steps // log_every * log_every)
    cfg = dt.DQNConfig(
        total_timesteps=steps, num_envs=8, log_every=log_every, learning_starts=steps // 10,
        buffer_size=10_000, train_every=8, hidden_sizes=(64, 64),
        twin=dt.TwinConfig(num_domains=domains, action_trials=2, lookahead=4, lookahead_rollouts=domains),
    )
    mesh = distributed.make_mesh(domains=devices, seeds=1, devices=devs)
    train = jax.jit(dt.make_train(cfg, env, params, mesh=mesh))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = train.lower(key).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(key))
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(key))
    run_s = time.perf_counter() - t0
    twin = float(out.metrics["twin_transitions"][-1])
    return dict(
        devices=devices, domains=domains, physical_steps=steps, compile_s=compile_s, run_s=run_s,
        physical_steps_per_s=steps / run_s, twin_transitions_per_s=twin / run_s,
        final_loss=float(out.metrics["loss"][-1]),
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help="physical steps per run")
    parser.add_argument("--domains", type=int, default=None, help="digital domains (multiple of 8)")
    parser.add_argument("--counts", default="1,2,4,8", help="comma-separated device counts")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    steps = args.steps or {"quick": 4_000, "default": 20_000, "full": 200_000}[mode]
    domains = args.domains or {"quick": 8, "default": 32, "full": 1024}[mode]
    if args.worker is not None:
        print("WORKER " + json.dumps(worker(args.worker, steps, domains, args.device)), flush=True)
        return {}
    counts = [int(c) for c in args.counts.split(",")]
    if any(domains % c for c in counts):
        parser.error(f"--domains={domains} must be divisible by every device count in {counts}")
    rows = []
    for count in counts:
        env = dict(os.environ)
        if args.device == "cpu":
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
            env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--worker", str(count), "--steps", str(steps),
               "--domains", str(domains), "--device", args.device]
        log(f"scaling: {count} device(s), {domains} domains, {steps} physical steps")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3_000)
        if proc.returncode:
            raise RuntimeError(f"worker for {count} devices failed:\n{proc.stderr[-3000:]}")
        row = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("WORKER ")][-1][7:])
        log(f"  {row['physical_steps_per_s']:,.0f} physical steps/s, "
            f"{row['twin_transitions_per_s']:,.0f} twin transitions/s, compile {row['compile_s']:.1f} s")
        rows.append(row)
    config = dict(env="CartPole-v1", agent="DQN", num_envs=8, domains=domains, action_trials=2, lookahead=4,
                  lookahead_rollouts=domains, physical_steps=steps, counts=counts, device=args.device,
                  simulated_devices=args.device == "cpu",
                  note=("simulated CPU devices share the same cores: this measures sharding overhead and "
                        "correctness, not speed-up") if args.device == "cpu" else "real devices")
    summary = {"rows": rows, **{f"{k}_by_devices": {str(r["devices"]): r[k] for r in rows}
                                for k in ("physical_steps_per_s", "twin_transitions_per_s", "compile_s")}}
    curves = {k: harness.points_panel(rows, x="devices", y=k, series_of=lambda r: f"{r['domains']} domains",
                                      xlabel="devices on the 'domains' mesh axis", ylabel=k.replace("_", " "))
              for k in ("physical_steps_per_s", "twin_transitions_per_s")}
    doc = {"config": config, "summary": summary, "curves": curves}
    harness.write("scaling", mode=mode, **doc, out=args.out, plot=lambda png: _plot(rows, args, png))
    return doc


def _plot(rows, args, png) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    counts = [r["devices"] for r in rows]
    ax.plot(counts, [r["twin_transitions_per_s"] for r in rows], "o-", label="twin transitions/s")
    ax.plot(counts, [r["physical_steps_per_s"] for r in rows], "s-", label="physical steps/s")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("devices on the 'domains' mesh axis")
    ax.set_ylabel("per second")
    kind = "simulated CPU devices (same cores)" if args.device == "cpu" else "GPUs"
    ax.set_title(f"DT-DQN on CartPole, {rows[0]['domains']} domains sharded over {kind}", fontsize=9)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""A one-minute demo: physical Q-learning vs DT-enhanced Q-learning on the default environment.

Run ``python -m dtrl_jax.demo``. It trains tabular Q-learning on ``AccessPointSelection-v0`` with
the twin off and with 5 simultaneous action trials (a full sweep of the 5 access points), 4 seeds
each as one ``vmap``, and prints the mean physical return against physical episodes.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import dtrl_jax as dt


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000, help="physical steps per run")
    parser.add_argument("--seeds", type=int, default=4, help="seeds run as one vmap")
    args = parser.parse_args(argv)
    if args.steps < 6_000 or args.steps % 6_000:
        parser.error(f"--steps={args.steps}: expected a positive multiple of 6000")
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds}: expected >= 1")

    env, params = dt.make("AccessPointSelection-v0")
    base = dt.QLearningConfig(total_timesteps=args.steps, log_every=args.steps // 6, learning_rate=0.1,
                              gamma=0.9, epsilon_decay_steps=args.steps // 2)
    variants = {
        "physical QL": base,
        "DT-enhanced QL (n=5 trials)": base.replace(twin=dt.TwinConfig(num_domains=5, action_trials=5)),
    }
    keys = jax.random.split(jax.random.key(0), args.seeds)
    results = {}
    print(f"{env.name}: {args.steps} physical steps, {args.seeds} seeds (one vmap), device {jax.devices()[0]}")
    for name, cfg in variants.items():
        t0 = time.perf_counter()
        out = jax.jit(jax.vmap(dt.make_train(cfg, env, params)))(keys)
        ret = np.asarray(jax.block_until_ready(out.metrics["episode_return"]))
        eps = np.asarray(out.metrics["physical_episodes"]).mean(axis=0)
        wall = time.perf_counter() - t0
        results[name] = dict(episodes=eps.tolist(), mean_return=np.nanmean(ret, axis=0).tolist())
        curve = "  ".join(f"{e:6.0f}:{r:6.1f}" for e, r in zip(eps, np.nanmean(ret, axis=0)))
        print(f"{name:30s} ({wall:5.1f} s incl. compile)  episodes:return  {curve}")
    return results


if __name__ == "__main__":
    main()

"""A one-minute demo: physical Q-learning vs DT-enhanced Q-learning on the default environment.

Run ``python -m dtrl_jax.experiment.demo``. It trains tabular Q-learning on ``AccessPointSelection-v0`` with
the twin off and with 5 simultaneous action trials (a full sweep of the 5 access points), 4 seeds
each as one ``vmap``, and prints the **greedy** return (``eval_return``: 16 greedy episodes per seed
on fresh physical envs at each logging point, mean +- std over seeds) against physical episodes,
with the epsilon-greedy training return beside it for comparison.
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
                              gamma=0.9, eval_episodes=16)
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
        m = jax.tree.map(np.asarray, jax.block_until_ready(out.metrics))
        wall = time.perf_counter() - t0
        eps = m["physical_episodes"].mean(axis=0)
        greedy, spread = m["eval_return"].mean(axis=0), m["eval_return"].std(axis=0)
        train_ret = np.nanmean(m["episode_return"], axis=0)
        results[name] = dict(episodes=eps.tolist(), greedy_return=greedy.tolist(), greedy_std=spread.tolist(),
                             training_return=train_ret.tolist(), epsilon=m["epsilon"][0].tolist())
        print(f"{name} ({wall:.1f} s incl. compile)")
        print("   episodes " + " ".join(f"{e:9.0f}" for e in eps))
        print("   greedy   " + " ".join(f"{g:5.1f}+-{s:<3.1f}" for g, s in zip(greedy, spread)))
        print("   training " + " ".join(f"{r:9.1f}" for r in train_ret) + "   (epsilon-greedy)")
    return results


if __name__ == "__main__":
    main()

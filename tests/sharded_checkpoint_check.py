"""Run in a subprocess with 8 simulated CPU devices (see tests/test_checkpoints.py).

Saves a runner state whose every leaf is sharded over 8 devices (the seeds axis) with
``runs.save_checkpoint`` (orbax: shard by shard, nothing gathered), restores it onto the same
sharding and onto one device, and reports whether both equal the original bit for bit.
"""

import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import dtrl_jax as dt
from dtrl_jax.experiment import runs


def main():
    assert len(jax.devices()) == 8, jax.devices()
    cfg = dt.DQNConfig(total_timesteps=40, num_envs=2, log_every=20, learning_starts=10, buffer_size=64,
                       batch_size=8, hidden_sizes=(8,), twin=dt.TwinConfig(num_domains=2, action_trials=2))
    spec = runs.RunSpec("CartPole-v1", cfg, seeds=8)
    env, params = spec.make_env()
    runner, intervals = jax.jit(jax.vmap(dt.make_train(cfg, env, params).init))(spec.keys())
    runner, _ = jax.jit(jax.vmap(dt.make_train(cfg, env, params).run, in_axes=(0, None)))(runner, intervals[0, :1])
    mesh = Mesh(np.array(jax.devices()), ("seeds",))
    sharded = jax.device_put(runner, NamedSharding(mesh, PartitionSpec("seeds")))
    report = {"leaf_devices": min(len(x.sharding.device_set) for x in jax.tree.leaves(sharded))}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        runs.create_run(run_dir, spec)
        metrics = {"episode_return": np.arange(8.0).reshape(8, 1)}
        runs.save_checkpoint(run_dir, spec, 1, sharded, metrics)
        interval, back, back_metrics = runs.read_checkpoint(runs.checkpoint_path(run_dir, 1), spec, sharded)
        same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(jax.random.key_data(a) if runs._is_key(a) else a),
                                                             np.asarray(jax.random.key_data(b) if runs._is_key(b) else b))),
                            runner, back)
        report["interval"] = interval
        report["bit_for_bit"] = all(jax.tree.leaves(same))
        report["restored_sharded"] = all(
            len(x.sharding.device_set) == 8 for x in jax.tree.leaves(back) if not runs._is_key(x))
        report["metrics"] = bool(np.array_equal(back_metrics["episode_return"], metrics["episode_return"]))
        one = jax.tree.map(lambda x: jax.device_put(x, jax.devices()[0]), runner)
        _, single, _ = runs.read_checkpoint(runs.checkpoint_path(run_dir, 1), spec, one)
        report["single_device_equal"] = all(jax.tree.leaves(jax.tree.map(
            lambda a, b: bool(np.array_equal(np.asarray(runs._stored(a)), np.asarray(runs._stored(b)))), runner, single)))
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())

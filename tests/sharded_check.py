"""Run in a subprocess with 8 simulated CPU devices (see tests/test_distributed.py)."""

import json
import sys

import gymnax
import jax
import numpy as np

import dtrl_jax as dt
from dtrl_jax import distributed


def main():
    assert len(jax.devices()) == 8, jax.devices()
    env, params = gymnax.make("CartPole-v1")
    cfg = dt.DQNConfig(total_timesteps=400, num_envs=2, log_every=200, learning_starts=100, buffer_size=400,
                       batch_size=16, train_every=2, target_update_every=50, hidden_sizes=(16,),
                       twin=dt.TwinConfig(num_domains=8, action_trials=2, lookahead=2, lookahead_rollouts=4,
                                          sync_every=3))
    keys = jax.random.split(jax.random.key(0), 4)
    report = {}

    plain = jax.jit(jax.vmap(dt.make_train(cfg, env, params)))(keys)
    mesh = distributed.make_mesh(domains=4, seeds=2)
    sharded_train = dt.make_train(cfg, env, params, mesh=mesh)
    sharded = distributed.shard_seeds(sharded_train, mesh)(keys)
    for name in ("loss", "episode_return", "physical_episodes", "twin_transitions"):
        a, b = np.asarray(plain.metrics[name]), np.asarray(sharded.metrics[name])
        report[name] = bool(np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True))
    report["loss_max_abs_diff"] = float(np.nanmax(np.abs(np.asarray(plain.metrics["loss"]) -
                                                         np.asarray(sharded.metrics["loss"]))))
    ret = sharded.metrics["episode_return"]
    report["metrics_sharding"] = str(ret.sharding.spec)
    report["metrics_devices"] = len(ret.sharding.device_set)

    # domains only: the domain states inside the result are sharded over the domains axis
    mesh_d = distributed.make_mesh(domains=8)
    single = jax.jit(dt.make_train(cfg, env, params, mesh=mesh_d))(keys[0])
    # the reference is seed 0 of the unsharded vmapped run (vmap over seeds equals single runs,
    # tests/test_train.py), which saves compiling a fourth program
    report["domains_only_close"] = bool(np.allclose(np.asarray(single.metrics["loss"]),
                                                    np.asarray(plain.metrics["loss"][0]), rtol=1e-4, atol=1e-5))
    x = single.runner_state.domains.states.x
    report["domain_state_spec"] = str(x.sharding.spec) if hasattr(x.sharding, "spec") else str(x.sharding)
    report["domain_state_shards"] = len({str(s.index) for s in x.addressable_shards})
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())

"""A plain single-file DQN in the style of PureJaxRL: the speed and return reference for ``throughput``.

Our own code, written the way PureJaxRL writes DQN (``purejaxrl/dqn.py``): the whole run is ONE
``jax.lax.scan`` over vectorised environment steps inside one ``jax.jit``; the replay memory is a
ring buffer of ``(obs, action, reward, discount, next_obs)`` arrays in the scan carry; the gradient
step sits behind a ``lax.cond`` that fires once per ``train_every`` environment steps after
``learning_starts``; the target network is copied (``tau = 1``) every ``target_update_every``
environment steps. Nothing here imports ``dtrl_jax``: it is the yard-stick, not the thing measured.

The hyper-parameters are those of ``dtrl_jax.DQNConfig`` (read by :func:`config_from_dqn`, so the
two programs cannot drift apart): 10 environments, buffer 10,000, batch 64, one update per 10
environment steps, learning starts at 10,000 steps, target copy every 500, Adam 2.5e-4 after global
norm clipping at 10, linear epsilon 1.0 -> 0.05 over ``epsilon_decay_steps``, gamma 0.99, MSE loss
``0.5 (q - target)^2``, MLP ``(120, 84)`` with ReLU (flax ``Dense`` default initialisation).

Two documented choices where PureJaxRL differs from itself across versions:
  * bootstrapping uses gymnax's pre-reset ``info["final_observation"]`` and masks only on
    ``terminated`` (so a CartPole truncation at 500 steps bootstraps), exactly as dtrl-jax does;
  * greedy actions are a plain ``argmax`` (no random tie-breaking: a network's Q-values tie with
    probability 0).

Usage::

    python -m benchmarks._reference_dqn [--steps 500000] [--seeds 1]

prints steps/s and the final return; ``benchmarks.throughput`` times it next to dtrl-jax.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

#: PureJaxRL-style config dict (keys are ours; values = dtrl_jax.DQNConfig defaults, CartPole).
DEFAULT_CONFIG: dict[str, Any] = {
    "total_timesteps": 500_000,
    "num_envs": 10,
    "buffer_size": 10_000,
    "batch_size": 64,
    "learning_starts": 10_000,
    "train_every": 10,
    "target_update_every": 500,
    "tau": 1.0,
    "learning_rate": 2.5e-4,
    "max_grad_norm": 10.0,
    "gamma": 0.99,
    "epsilon_start": 1.0,
    "epsilon_end": 0.05,
    "epsilon_decay_steps": 50_000,
    "hidden_sizes": (120, 84),
}


def config_from_dqn(cfg: Any) -> dict[str, Any]:
    """The reference config with every hyper-parameter read from a ``dtrl_jax.DQNConfig`` (duck-typed)."""
    out = {k: getattr(cfg, k) for k in DEFAULT_CONFIG}
    out["epsilon_decay_steps"] = getattr(cfg, "decay_steps", out["epsilon_decay_steps"])  # None = fraction of the run
    for k in ("learning_rate", "max_grad_norm", "gamma", "epsilon_start", "epsilon_end", "epsilon_decay_steps", "tau"):
        out[k] = None if out[k] is None and k == "max_grad_norm" else float(out[k])  # None: no clipping
    out["hidden_sizes"] = tuple(out["hidden_sizes"])
    return out


class QNetwork(nn.Module):
    hidden_sizes: Sequence[int]
    num_actions: int

    @nn.compact
    def __call__(self, x):
        x = jnp.reshape(x, (*x.shape[:-1], -1)).astype(jnp.float32)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)


class Buffer(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    next_obs: jax.Array
    pos: jax.Array
    size: jax.Array


class Runner(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    buffer: Buffer
    env_state: Any
    obs: jax.Array
    ep_return: jax.Array
    steps: jax.Array
    updates: jax.Array


def make_train(config: dict[str, Any], env, env_params):
    """``train(key) -> (runner, metrics)``: one ``jit``-able function, one ``lax.scan``.

    Metrics, one row per vectorised step: finished-episode return sum, finished-episode count, loss
    (0 when no update). ``train.init(key) -> (runner, step_keys)`` and ``train.run(runner, step_keys)
    -> (runner, metrics)`` split it: running ``step_keys[:i]`` then ``step_keys[i:]`` is the same run
    (the benchmark times it in interleaved chunks).
    """
    c = dict(DEFAULT_CONFIG, **config)
    n_envs, cap, batch = c["num_envs"], c["buffer_size"], c["batch_size"]
    if cap % n_envs:
        raise ValueError("reference DQN: buffer_size must be a multiple of num_envs (contiguous ring writes)")
    if c["total_timesteps"] % n_envs:
        raise ValueError("reference DQN: total_timesteps must be a multiple of num_envs")
    num_actions = env.action_space(env_params).n
    net = QNetwork(tuple(c["hidden_sizes"]), num_actions)
    tx = (optax.adam(c["learning_rate"]) if c["max_grad_norm"] is None  # as DQNConfig(max_grad_norm=None)
          else optax.chain(optax.clip_by_global_norm(c["max_grad_norm"]), optax.adam(c["learning_rate"])))
    gamma = c["gamma"]
    n_iter = c["total_timesteps"] // n_envs

    def init(key):
        k_net, k_reset, k_loop = jax.random.split(key, 3)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, n_envs), env_params)
        params = net.init(k_net, obs[0])
        zeros = lambda shape, dt: jnp.zeros((cap, *shape), dt)  # noqa: E731
        buffer = Buffer(
            obs=zeros(obs.shape[1:], obs.dtype), action=zeros((), jnp.int32), reward=zeros((), jnp.float32),
            discount=zeros((), jnp.float32), next_obs=zeros(obs.shape[1:], obs.dtype),
            pos=jnp.int32(0), size=jnp.int32(0),
        )
        runner = Runner(params, params, tx.init(params), buffer, env_state, obs,
                        jnp.zeros((n_envs,), jnp.float32), jnp.int32(0), jnp.int32(0))
        return runner, jax.random.split(k_loop, n_iter)

    def run(runner: Runner, step_keys):
        def loss_fn(p, target_p, b):
            q = net.apply(p, b.obs)
            q_a = jnp.take_along_axis(q, b.action[:, None], axis=1)[:, 0]
            target = b.reward + b.discount * jnp.max(net.apply(target_p, b.next_obs), axis=-1)
            return jnp.mean(0.5 * jnp.square(q_a - jax.lax.stop_gradient(target)))

        def learn(train_state, buffer: Buffer, target_params, k):
            # As in PureJaxRL, only the train state is an operand of the cond that calls this; the
            # replay buffer and target parameters are closed over (read-only inside the branch).
            params, opt_state, updates = train_state
            idx = jax.random.randint(k, (batch,), 0, buffer.size)
            b = jax.tree.map(lambda x: x[idx], buffer._replace(pos=None, size=None))
            loss, grads = jax.value_and_grad(loss_fn)(params, target_params, b)
            upd, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state, updates + 1), loss

        def step(r: Runner, k):
            k_eps, k_rand, k_env, k_learn = jax.random.split(k, 4)
            frac = jnp.clip(r.steps.astype(jnp.float32) / c["epsilon_decay_steps"], 0.0, 1.0)
            eps = c["epsilon_start"] + frac * (c["epsilon_end"] - c["epsilon_start"])
            greedy = jnp.argmax(net.apply(r.params, r.obs), axis=-1)
            rand = jax.random.randint(k_rand, (n_envs,), 0, num_actions)
            action = jnp.where(jax.random.uniform(k_eps, (n_envs,)) < eps, rand, greedy).astype(jnp.int32)
            next_obs, env_state, reward, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_env, n_envs), r.env_state, action, env_params)
            b = r.buffer
            put = lambda store, new: jax.lax.dynamic_update_slice_in_dim(store, new.astype(store.dtype), b.pos, 0)  # noqa: E731
            buffer = Buffer(
                obs=put(b.obs, r.obs), action=put(b.action, action), reward=put(b.reward, reward),
                discount=put(b.discount, gamma * (1.0 - term.astype(jnp.float32))),
                next_obs=put(b.next_obs, info["final_observation"]),
                pos=(b.pos + n_envs) % cap, size=jnp.minimum(b.size + n_envs, cap),
            )
            steps = r.steps + n_envs
            done = jnp.logical_or(term, trunc)
            ep_return = r.ep_return + reward
            r = r._replace(buffer=buffer, env_state=env_state, obs=next_obs, steps=steps,
                           ep_return=jnp.where(done, 0.0, ep_return))
            due = (steps % c["train_every"] == 0) & (steps >= c["learning_starts"])
            train_state, loss = jax.lax.cond(
                due,
                lambda ts, k: learn(ts, buffer, r.target_params, k),
                lambda ts, k: (ts, jnp.float32(0.0)),
                (r.params, r.opt_state, r.updates), k_learn,
            )
            r = r._replace(params=train_state[0], opt_state=train_state[1], updates=train_state[2])
            sync = steps % c["target_update_every"] == 0
            target = optax.incremental_update(r.params, r.target_params, c["tau"])
            r = r._replace(target_params=jax.tree.map(lambda a, b_: jnp.where(sync, a, b_), target, r.target_params))
            metrics = (jnp.sum(jnp.where(done, ep_return, 0.0)), jnp.sum(done.astype(jnp.int32)), loss)
            return r, metrics

        return jax.lax.scan(step, runner, step_keys)

    def train(key):
        return run(*init(key))

    train.init = init
    train.run = run
    return train


def final_return(metrics, fraction: float = 0.1) -> float:
    """Mean return of the episodes finished in the last ``fraction`` of the run (over every seed)."""
    ret_sum, finished = np.asarray(metrics[0]), np.asarray(metrics[1])
    n = ret_sum.shape[-1]
    tail = slice(n - max(1, int(round(n * fraction))), n)
    count = finished[..., tail].sum()
    return float(ret_sum[..., tail].sum() / count) if count else float("nan")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import gymnax

    p = argparse.ArgumentParser(prog="python -m benchmarks._reference_dqn", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=DEFAULT_CONFIG["total_timesteps"])
    p.add_argument("--seeds", type=int, default=1)
    args = p.parse_args(argv)
    env, env_params = gymnax.make("CartPole-v1")
    train = make_train({"total_timesteps": args.steps}, env, env_params)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    t1 = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()
    out = {"compile_s": t1 - t0, "run_s": t2 - t1, "steps_per_s": args.steps * args.seeds / (t2 - t1),
           "final_return": final_return(metrics)}
    print(out)
    return out


if __name__ == "__main__":
    main()

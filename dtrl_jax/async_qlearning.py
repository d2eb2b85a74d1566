"""DT-assisted asynchronous Q-learning: phi twin agents whose Q-tables are averaged every delta steps.

The companion paper (X. Wang et al., "Digital Twin-Assisted Efficient Reinforcement Learning for Edge
Task Scheduling", VTC2022-Spring) runs ``phi`` twin agents, each in its own digital domain with its own
Q-table; every ``delta`` steps the Q-tables are averaged and the average is written back to every agent
(and is what the physical agent acts with). This module builds that algorithm *on top of*
:func:`dtrl_jax.make_train`, never underneath it: each agent is exactly the loop ``make_train(config,
env, env_params)`` builds (plain tabular Q-learning when ``config.twin is None``), split at interval
boundaries with ``train.init`` / ``train.run``::

    train(key)
      agents = vmap(base.init)(split(key, phi))                 # phi independent runner states
      scan over rounds (total_timesteps / delta of them):
        agents, metrics = vmap(base.run)(agents, this round's interval keys)   # delta steps each
        q_mean = mean over agents of agents.agent_state.q
        every agent's Q-table <- q_mean

Everything is one pure function of the key: ``jax.jit(train)`` compiles one XLA program and
``jax.vmap(train)`` over keys runs seeds in parallel. Counters in the metrics (``physical_steps``,
``physical_episodes``, ...) are per agent: in the companion paper's terms a step of an agent is one
*iteration* of every twin agent at once, so ``metrics["physical_steps"][i]`` is the iteration count.

With ``num_agents = 1`` the averaging is the identity and the result equals ``make_train``'s run from
``jax.random.split(key, 1)[0]``, bit for bit.

Example::

    import jax, dtrl_jax as dt
    from dtrl_jax.async_qlearning import AsyncQLearningConfig, make_async_train
    env, params = dt.make("EdgeTaskScheduling-v0", num_tasks=6)
    cfg = dt.QLearningConfig(total_timesteps=2048, log_every=512, gamma=0.0)
    train = make_async_train(cfg, AsyncQLearningConfig(num_agents=50, average_every=512), env, params)
    out = jax.jit(train)(jax.random.key(0))       # out.q_mean: the averaged Q-table, [1, 720]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from dtrl_jax._checks import check_positive_int
from dtrl_jax.config import QLearningConfig
from dtrl_jax.train import RunnerState, make_train

__all__ = ["AsyncQLearningConfig", "AsyncTrainResult", "make_async_train"]


@struct.dataclass
class AsyncQLearningConfig:
    """The asynchronous part of DT-assisted asynchronous Q-learning (both fields static).

    Attributes:
      num_agents: number phi of twin agents, each with its own Q-table and its own environment
        (digital domain); >= 1.
      average_every: number delta of steps every agent takes between two averagings of the Q-tables
        (one *round*); >= 1. It must be a multiple of the base config's ``log_every`` and divide its
        ``total_timesteps`` (checked by :func:`make_async_train`).
    """

    num_agents: int = struct.field(pytree_node=False, default=1)
    average_every: int = struct.field(pytree_node=False, default=512)

    def __post_init__(self):
        check_positive_int("AsyncQLearningConfig", "num_agents", self.num_agents)
        check_positive_int("AsyncQLearningConfig", "average_every", self.average_every)


@struct.dataclass
class AsyncTrainResult:
    """Output of the asynchronous ``train(key)``.

    Attributes:
      runner_state: the agents' final ``RunnerState``, every leaf with a leading ``[num_agents]``
        axis; after the last round every agent's ``agent_state.q`` equals ``q_mean``.
      metrics: ``make_train``'s metrics per agent: dict of arrays ``[num_agents, num_intervals]``
        (one column per ``log_every`` steps of each agent; counters are per agent).
      q_mean: the averaged Q-table after the last round, ``[num_states, num_actions]``.
      round_outputs: the stacked outputs of ``round_fn(q_mean)`` after every round (leading axis
        ``[num_rounds]``), or None when no ``round_fn`` was given.
    """

    runner_state: RunnerState
    metrics: dict[str, jax.Array]
    q_mean: jax.Array
    round_outputs: Any


def make_async_train(
    config: QLearningConfig,
    async_config: AsyncQLearningConfig,
    env,
    env_params,
    *,
    twin_params=None,
    round_fn: Callable[[jax.Array], Any] | None = None,
) -> Callable[[jax.Array], AsyncTrainResult]:
    """Build the pure DT-assisted asynchronous Q-learning function ``train(key) -> AsyncTrainResult``.

    Args:
      config: the ``QLearningConfig`` of every agent (``total_timesteps`` is per agent). With
        ``config.twin`` set, each agent also has its own digital space (trials, look-ahead, ...).
      async_config: ``AsyncQLearningConfig`` (phi agents, averaging period delta).
      env, env_params: the environment each agent runs in (its own domain: own state, own keys).
      twin_params: passed to :func:`dtrl_jax.make_train` (only with ``config.twin``).
      round_fn: optional pure function of the averaged Q-table ``[S, A]`` evaluated after every
        round (e.g. the greedy action's gap to the optimum); its outputs are stacked in
        ``AsyncTrainResult.round_outputs``.
    Returns:
      ``train(key) -> AsyncTrainResult``, pure and jittable as one program; ``jax.vmap(train)``
      over keys runs seeds in parallel. ``train.base`` is the per-agent ``make_train`` function,
      ``train.num_rounds`` the number of averaging rounds.
    Raises:
      TypeError: ``config`` is not a ``QLearningConfig`` (averaging needs Q-tables) or
        ``async_config`` is not an ``AsyncQLearningConfig``.
      ValueError: ``average_every`` is not a multiple of ``config.log_every`` or does not divide
        ``config.total_timesteps``; plus whatever ``make_train`` raises for ``config``.
    """
    if not isinstance(config, QLearningConfig):
        raise TypeError(
            f"config must be a QLearningConfig (asynchronous averaging needs Q-tables), got "
            f"{type(config).__name__}"
        )
    if not isinstance(async_config, AsyncQLearningConfig):
        raise TypeError(f"async_config must be an AsyncQLearningConfig, got {type(async_config).__name__}")
    delta = async_config.average_every
    if delta % config.log_every:
        raise ValueError(
            f"AsyncQLearningConfig.average_every={delta} is not a multiple of QLearningConfig.log_every="
            f"{config.log_every}; every averaging round must hold whole logging intervals "
            f"(e.g. log_every={delta} or a divisor of it)"
        )
    if config.total_timesteps % delta:
        raise ValueError(
            f"AsyncQLearningConfig.average_every={delta} does not divide QLearningConfig.total_timesteps="
            f"{config.total_timesteps}; expected total_timesteps to be a whole number of rounds, e.g. "
            f"{max(1, config.total_timesteps // delta) * delta}"
        )
    base = make_train(config, env, env_params, twin_params=twin_params)
    phi = async_config.num_agents
    num_rounds = config.total_timesteps // delta
    per_round = delta // config.log_every

    def average(runner: RunnerState) -> tuple[RunnerState, jax.Array]:
        q = runner.agent_state.q  # [phi, S, A]
        q_mean = jnp.mean(q, axis=0)
        shared = jnp.broadcast_to(q_mean, q.shape)
        return runner.replace(agent_state=runner.agent_state.replace(q=shared)), q_mean

    def one_round(runner: RunnerState, round_keys: jax.Array):
        runner, metrics = jax.vmap(base.run)(runner, round_keys)  # delta steps of every agent
        runner, q_mean = average(runner)
        out = None if round_fn is None else round_fn(q_mean)
        return runner, (metrics, out)

    def train(key: jax.Array) -> AsyncTrainResult:
        runner, interval_keys = jax.vmap(base.init)(jax.random.split(key, phi))
        # [phi, num_intervals] keys -> [num_rounds, phi, per_round]: round r runs intervals
        # r * per_round ... (r + 1) * per_round - 1 of every agent, the same split as one full run.
        keys = jnp.swapaxes(interval_keys.reshape(phi, num_rounds, per_round), 0, 1)
        runner, (metrics, outputs) = jax.lax.scan(one_round, runner, keys)
        # metrics leaves: [num_rounds, phi, per_round] -> [phi, num_intervals]
        metrics = jax.tree.map(
            lambda x: jnp.swapaxes(x, 0, 1).reshape(phi, num_rounds * per_round, *x.shape[3:]), metrics
        )
        q_mean = runner.agent_state.q[0]
        return AsyncTrainResult(
            runner_state=runner, metrics=metrics, q_mean=q_mean, round_outputs=outputs
        )

    train.base = base
    train.num_rounds = num_rounds
    train.config = config
    train.async_config = async_config
    return train

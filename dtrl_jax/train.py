"""The loop: environment + digital twin + agent + storage composed into one pure ``train(key)``.

``make_train(config, env, env_params)`` validates everything it can before tracing and returns
``train``, a pure function ``key -> TrainResult`` that compiles to one XLA program. Read top to
bottom, the program is::

    train(key)
      reset num_envs physical environments; init agent and storage
      scan over logging intervals:                      (metrics: one row per interval)
        scan over vectorised physical steps:
          epsilon-greedy physical action a_t from the agent's Q(s_t)
          physical step -> (s_{t+1}, r_t, terminated, truncated, info)
          twin, if on:  trials of n - 1 other actions from s_t in n - 1 domains
                        M look-ahead rollouts of k - 1 steps from s_{t+1}  -> averaged k-step target
          agent.learn(physical transitions, twin transitions)   (tabular update or replay + SGD)
          episode bookkeeping (returns, violations)

With ``twin=None`` (or every twin feature off) the same program is plain physical RL. Twin agents
act with ``agent_state`` itself, the physical agent's current parameters: parameter sync is
structural, there is no copy that can go stale.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from dtrl_jax.agents.dqn import DQNAgent
from dtrl_jax.agents.exploration import epsilon_greedy, greedy_action, linear_epsilon
from dtrl_jax.agents.tabular import TabularQAgent
from dtrl_jax.config import DQNConfig, QLearningConfig
from dtrl_jax.transition import Transition, one_step_transition
from dtrl_jax.twin.lookahead import lookahead_transition
from dtrl_jax.twin.trials import run_action_trials

METRIC_NAMES = (
    "physical_steps",
    "physical_episodes",
    "episode_return",
    "episodes_finished",
    "twin_transitions",
    "loss",
    "updates",
    "epsilon",
    "violations",
)


@struct.dataclass
class RunnerState:
    """Everything the loop carries from one physical step to the next.

    Attributes:
      env_state, obs: the ``num_envs`` physical environments (leading axis ``[num_envs]``).
      agent_state: Q-table or network parameters, target parameters and optimiser state.
      storage: the storage space (replay), or None for tabular Q-learning.
      episode_return: float32 ``[num_envs]`` return of the running episodes.
      steps, episodes, violations: int32 cumulative physical counters.
      twin_transitions: float32 cumulative number of twin env steps (float: it can pass 2**31).
      updates: int32 cumulative gradient/table updates.
    """

    env_state: Any
    obs: Any
    agent_state: Any
    storage: Any
    episode_return: jax.Array
    steps: jax.Array
    episodes: jax.Array
    violations: jax.Array
    twin_transitions: jax.Array
    updates: jax.Array


@struct.dataclass
class TrainResult:
    """Output of ``train(key)``.

    Attributes:
      runner_state: the final ``RunnerState`` (agent parameters / Q-table, optimiser, replay).
      metrics: dict of arrays with one row per logging interval (``log_every`` physical steps):
        ``physical_steps`` and ``physical_episodes`` (cumulative), ``episode_return`` (mean return
        of the physical episodes finished in the interval; NaN when none finished, see
        ``episodes_finished``), ``twin_transitions`` (cumulative twin env steps), ``loss`` (mean TD
        loss of the interval's updates, 0 without updates), ``updates`` (cumulative), ``epsilon``
        (at the interval's end), ``violations`` (cumulative physical ``info["violation"]``; 0 when
        the env defines none).
    """

    runner_state: RunnerState
    metrics: dict[str, jax.Array]


@struct.dataclass
class EnvSpec:
    """What the loop needs to know about an environment, read once before tracing."""

    num_actions: int = struct.field(pytree_node=False)
    num_states: int | None = struct.field(pytree_node=False)
    obs_shape: tuple = struct.field(pytree_node=False)
    obs_dtype: Any = struct.field(pytree_node=False)
    has_violation: bool = struct.field(pytree_node=False)
    name: str = struct.field(pytree_node=False)

    def obs_example(self):
        return jnp.zeros(self.obs_shape, self.obs_dtype)


def inspect_env(env, env_params) -> EnvSpec:
    """Read spaces and the ``info`` keys of ``env`` (abstractly, without running it)."""
    name = getattr(env, "name", type(env).__name__)
    action_space = env.action_space(env_params)
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(
            f"env {name!r} has action space {action_space!r}; Q-learning and DQN need a "
            "gymnax spaces.Discrete action space"
        )
    obs_space = env.observation_space(env_params)
    num_states = int(obs_space.n) if isinstance(obs_space, spaces.Discrete) else None
    key = jax.random.key(0)
    obs, state = jax.eval_shape(env.reset, key, env_params)
    out = jax.eval_shape(env.step, key, state, jnp.int32(0), env_params)
    info = out[5]
    return EnvSpec(
        num_actions=int(action_space.n),
        num_states=num_states,
        obs_shape=tuple(obs.shape),
        obs_dtype=obs.dtype,
        has_violation="violation" in info,
        name=str(name),
    )


def _validate(config, spec: EnvSpec) -> None:
    o = type(config).__name__
    if isinstance(config, QLearningConfig) and spec.num_states is None:
        raise ValueError(
            f"{o} needs a Discrete observation space (a state index), but env {spec.name!r} gives "
            f"array observations of shape {spec.obs_shape}; use DQNConfig, or an observation mode "
            "that yields a discrete index (e.g. dt.make('AccessPointSelection-v0'))"
        )
    twin = config.twin
    if twin is not None and twin.action_trials > spec.num_actions:
        raise ValueError(
            f"TwinConfig.action_trials={twin.action_trials} exceeds the {spec.num_actions} actions "
            f"of env {spec.name!r}; expected action_trials <= {spec.num_actions} "
            "(= number of actions is a full sweep)"
        )


def build_agent(config, spec: EnvSpec):
    """The agent object for ``config`` (one loop serves every agent through ``agents.base.Agent``)."""
    if isinstance(config, QLearningConfig):
        return TabularQAgent(spec.num_states, spec.num_actions, config)
    if isinstance(config, DQNConfig):
        return DQNAgent(spec.num_actions, spec.obs_example(), spec.num_states, config)
    raise TypeError(f"config must be a QLearningConfig or DQNConfig, got {type(config).__name__}")


def make_train(config, env, env_params):
    """Build the pure training function for ``config`` on ``env`` (any gymnax-1.x environment).

    Args:
      config: ``QLearningConfig`` or ``DQNConfig`` (with ``twin=None`` or a ``TwinConfig``).
      env: a gymnax ``Environment`` with a ``Discrete`` action space.
      env_params: its ``EnvParams`` (also used by the digital domains: a perfect twin).
    Returns:
      ``train(key) -> TrainResult``, pure and jittable; ``jax.vmap(train)`` runs seeds in parallel.
    Raises:
      ValueError/TypeError: before any tracing, for a config the environment cannot support.
    """
    if not isinstance(config, (QLearningConfig, DQNConfig)):
        raise TypeError(f"config must be a QLearningConfig or DQNConfig, got {type(config).__name__}")
    spec = inspect_env(env, env_params)
    _validate(config, spec)
    agent = build_agent(config, spec)
    twin = config.twin
    use_trials = twin is not None and twin.uses_trials
    use_lookahead = twin is not None and twin.uses_lookahead
    num_envs = config.num_envs
    gamma = config.gamma

    def twin_policy(agent_state, epsilon):
        """The twin agent: the physical agent's current parameters, greedy or epsilon-greedy."""

        def policy(key, obs):
            q = agent.q_values(agent_state, obs)
            if twin.lookahead_policy == "epsilon":
                return epsilon_greedy(key, q, epsilon)
            return greedy_action(key, q)

        return policy

    def physical_transitions(runner, key, actions, step_out, epsilon) -> Transition:
        next_obs, next_state, reward, terminated, truncated, info = step_out
        final_obs = info["final_observation"]
        if not use_lookahead:
            return jax.vmap(one_step_transition, in_axes=(0, 0, 0, 0, 0, None))(
                runner.obs, actions, reward, terminated, final_obs, gamma
            )
        policy = twin_policy(runner.agent_state, epsilon)

        def one(k, o, a, r, te, tr, fo, no, ns):
            return lookahead_transition(
                env, policy, k, o, a, r, te, tr, fo, no, ns, env_params,
                lookahead=twin.lookahead, rollouts=twin.lookahead_rollouts, gamma=gamma,
            )

        return jax.vmap(one)(
            jax.random.split(key, num_envs), runner.obs, actions, reward, terminated, truncated,
            final_obs, next_obs, next_state,
        )

    def twin_trial_transitions(runner, key, actions):
        if not use_trials:
            return None
        trials, _ = jax.vmap(
            lambda k, o, s, a: run_action_trials(
                env, k, o, s, a, env_params,
                num_actions=spec.num_actions, num_trials=twin.action_trials, gamma=gamma,
            )
        )(jax.random.split(key, num_envs), runner.obs, runner.env_state, actions)
        # [num_envs, domains, ...] -> [domains, num_envs, ...]: storage is per domain.
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), trials)

    twin_steps_per_iteration = num_envs * (
        (twin.action_trials - 1 if use_trials else 0)
        + (twin.lookahead_rollouts * (twin.lookahead - 1) if use_lookahead else 0)
    )

    def iteration(carry, key):
        runner, acc = carry
        k_act, k_env, k_trial, k_look, k_learn = jax.random.split(key, 5)
        epsilon = linear_epsilon(
            runner.steps, config.epsilon_start, config.epsilon_end, config.epsilon_decay_steps
        )
        q = jax.vmap(agent.q_values, in_axes=(None, 0))(runner.agent_state, runner.obs)
        actions = jax.vmap(epsilon_greedy, in_axes=(0, 0, None))(jax.random.split(k_act, num_envs), q, epsilon)
        step_out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, num_envs), runner.env_state, actions, env_params
        )
        next_obs, next_state, reward, terminated, truncated, info = step_out

        physical = physical_transitions(runner, k_look, actions, step_out, epsilon)
        trials = twin_trial_transitions(runner, k_trial, actions)

        steps_after = runner.steps + num_envs
        agent_state, storage, stats = agent.learn(
            runner.agent_state, runner.storage, physical, trials, runner.steps, steps_after, k_learn
        )

        done = jnp.logical_or(terminated, truncated)
        ep_return = runner.episode_return + reward.astype(jnp.float32)
        violation = (
            jnp.sum(info["violation"].astype(jnp.int32)) if spec.has_violation else jnp.int32(0)
        )
        finished = jnp.sum(done.astype(jnp.int32))
        runner = runner.replace(
            env_state=next_state,
            obs=next_obs,
            agent_state=agent_state,
            storage=storage,
            episode_return=jnp.where(done, 0.0, ep_return),
            steps=steps_after,
            episodes=runner.episodes + finished,
            violations=runner.violations + violation,
            twin_transitions=runner.twin_transitions + jnp.float32(twin_steps_per_iteration),
            updates=runner.updates + stats.updates,
        )
        acc = dict(
            return_sum=acc["return_sum"] + jnp.sum(jnp.where(done, ep_return, 0.0)),
            finished=acc["finished"] + finished,
            loss_sum=acc["loss_sum"] + stats.loss_sum,
            updates=acc["updates"] + stats.updates,
            epsilon=epsilon,
        )
        return (runner, acc), None

    def interval(runner, key):
        acc = dict(
            return_sum=jnp.float32(0.0),
            finished=jnp.int32(0),
            loss_sum=jnp.float32(0.0),
            updates=jnp.int32(0),
            epsilon=jnp.float32(0.0),
        )
        keys = jax.random.split(key, config.iterations_per_interval)
        (runner, acc), _ = jax.lax.scan(iteration, (runner, acc), keys)
        metrics = dict(
            physical_steps=runner.steps,
            physical_episodes=runner.episodes,
            episode_return=jnp.where(
                acc["finished"] > 0, acc["return_sum"] / jnp.maximum(acc["finished"], 1), jnp.nan
            ),
            episodes_finished=acc["finished"],
            twin_transitions=runner.twin_transitions,
            loss=acc["loss_sum"] / jnp.maximum(acc["updates"], 1).astype(jnp.float32),
            updates=runner.updates,
            epsilon=acc["epsilon"],
            violations=runner.violations,
        )
        return runner, metrics

    def train(key: jax.Array) -> TrainResult:
        k_init, k_reset, k_loop = jax.random.split(key, 3)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), env_params)
        agent_state = agent.init(k_init)
        example = one_step_transition(spec.obs_example(), 0, 0.0, False, spec.obs_example(), gamma)
        physical_example = example
        if use_lookahead:
            physical_example = jax.tree.map(
                lambda x: jnp.repeat(x, twin.lookahead_rollouts, axis=0), example
            ).replace(obs=example.obs, action=example.action)
        storage = agent.init_storage(physical_example, example if use_trials else None)
        runner = RunnerState(
            env_state=env_state,
            obs=obs,
            agent_state=agent_state,
            storage=storage,
            episode_return=jnp.zeros((num_envs,), jnp.float32),
            steps=jnp.int32(0),
            episodes=jnp.int32(0),
            violations=jnp.int32(0),
            twin_transitions=jnp.float32(0.0),
            updates=jnp.int32(0),
        )
        runner, metrics = jax.lax.scan(interval, runner, jax.random.split(k_loop, config.num_intervals))
        return TrainResult(runner_state=runner, metrics=metrics)

    return train

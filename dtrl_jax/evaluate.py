"""Greedy evaluation and acting: the one rule every part of dtrl-jax uses to judge an agent.

Training returns are measured under epsilon-greedy exploration, so early in a run they mostly show
the exploration schedule. Every learning claim in this project is therefore judged on *greedy*
episodes played on fresh physical environment instances with the agent's current parameters:

* **The greedy rule**: ``argmax_a Q(obs, a)`` with ties broken **uniformly at random** (one random
  word per decision, :func:`dtrl_jax.agents.exploration.greedy_from_bits`). Random ties matter for
  tabular agents whose unvisited states still hold ``q_init`` for every action: a plain argmax would
  always answer action 0 there and score a policy nobody learned. With ``epsilon > 0`` the policy is
  epsilon-greedy on top of the same rule (a uniform action with probability epsilon).
* **An episode** starts from ``env.reset`` with its own key and runs until ``terminated or
  truncated`` or ``max_steps`` steps (default: the env's ``max_steps_in_episode``); an episode still
  running at the bound counts with its partial return and ``finished = False``. Returns are
  undiscounted sums of the env's rewards, in the env's units.

The same functions serve the training loop (``eval_episodes`` in every agent config: metrics
``eval_return``/``eval_length`` at the end of each logging interval, inside the compiled program),
``dtrl eval``, populations and the benchmarks. Everything here is pure and jittable; it composes with
``jax.vmap`` over seeds, agents and traced hyper-parameters.

For people who embed a trained agent::

    policy = dt.make_policy(train.agent, out.runner_state.agent_state)
    action = policy(key, obs)                                  # one observation -> int32 action
    actions = dt.act(train.agent, agent_state, obs_batch, key)   # a batch [B] -> int32 [B]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from dtrl_jax.agents.exploration import explore_flags_from_bits

Policy = Callable[[jax.Array, Any], jax.Array]


@struct.dataclass
class EvalResult:
    """Outcome of ``num_episodes`` evaluation episodes (leading axis ``[E]`` on every field).

    Attributes:
      returns: float32 undiscounted episode returns (partial when not ``finished``).
      lengths: int32 steps played in each episode.
      violations: int32 steps with ``info["violation"]`` (0 when the env defines none).
      finished: bool, True when the episode ended (terminated or truncated) within ``max_steps``.
    """

    returns: jax.Array
    lengths: jax.Array
    violations: jax.Array
    finished: jax.Array


def episode_limit(env, env_params, max_steps: int | None = None) -> int:
    """The step bound of one evaluation episode: ``max_steps``, else ``env_params.max_steps_in_episode``.

    Raises:
      ValueError: when neither is available (naming both), or ``max_steps`` is not a positive int.
    """
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"evaluate: max_steps={max_steps!r}; expected an int >= 1 or None")
        return max_steps
    params, limit = env_params, None
    while params is not None and limit is None:  # wrappers keep the env's params as ``.inner``
        limit = getattr(params, "max_steps_in_episode", None)
        params = getattr(params, "inner", None)
    if limit is None:
        name = getattr(env, "name", type(env).__name__)
        raise ValueError(
            f"evaluation needs a step bound: env {name!r} has no params.max_steps_in_episode; set "
            "eval_max_steps in the agent config (or max_steps=...)"
        )
    try:
        return int(limit)
    except (TypeError, jax.errors.ConcretizationTypeError) as err:
        raise ValueError(
            "evaluation needs a concrete params.max_steps_in_episode (it bounds a loop); it is traced "
            "here: set eval_max_steps in the agent config (or max_steps=...)"
        ) from err


def policy_action(agent, agent_state, bits: jax.Array, obs, epsilon=0.0) -> jax.Array:
    """The evaluation policy's action for ONE observation, driven by three random uint32 ``bits``."""
    q = agent.q_values(agent_state, obs)
    return explore_flags_from_bits(bits, q, jnp.asarray(epsilon, jnp.float32))[0]


def make_policy(agent, agent_state, epsilon=0.0) -> Policy:
    """``policy(key, obs) -> action`` for one observation: greedy (random ties), or epsilon-greedy.

    Args:
      agent: the agent object (``train.agent``, or ``dtrl_jax.train.build_agent(config, spec)``).
      agent_state: its state (``result.runner_state.agent_state``; one seed, no batch axis).
      epsilon: exploration rate, 0 = greedy.
    """

    def policy(key: jax.Array, obs) -> jax.Array:
        return policy_action(agent, agent_state, jax.random.bits(key, (3,), jnp.uint32), obs, epsilon)

    return policy


def act(agent, agent_state, obs, key: jax.Array | None = None, epsilon=0.0) -> jax.Array:
    """Actions for a batch of observations (leading axis ``[B]``) with the greedy rule.

    ``key`` drives tie-breaking (and exploration when ``epsilon > 0``); without a key ties go to a
    fixed but arbitrary choice (``jax.random.key(0)``): fine for acting, but evaluation should pass
    its own key. Jittable; returns int32 ``[B]``.
    """
    key = jax.random.key(0) if key is None else key
    batch = jax.tree.leaves(obs)[0].shape[0]
    bits = jax.random.bits(key, (batch, 3), jnp.uint32)
    return jax.vmap(lambda b, o: policy_action(agent, agent_state, b, o, epsilon))(bits, obs)


def evaluate(
    key: jax.Array,
    agent,
    agent_state,
    env,
    env_params,
    num_episodes: int,
    *,
    epsilon=0.0,
    max_steps: int | None = None,
) -> EvalResult:
    """Play ``num_episodes`` evaluation episodes of ``agent`` on ``env`` (vmapped over episodes).

    One ``lax.while_loop`` steps all episodes together and stops as soon as every episode has
    ended or ``max_steps`` steps were played, so short episodes cost little.

    Args:
      key: this evaluation's key (episode resets, env randomness, tie-breaking); not reused.
      agent, agent_state: as for :func:`make_policy`.
      env, env_params: a gymnax-1.x environment and its params (the physical env).
      num_episodes: E >= 1 (static).
      epsilon: exploration rate of the evaluated policy (traced; 0 = greedy).
      max_steps: step bound (static); None = ``env_params.max_steps_in_episode``.
    Returns:
      :class:`EvalResult` with ``[E]`` fields.
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"evaluate: num_episodes={num_episodes!r}; expected an int >= 1")
    limit = episode_limit(env, env_params, max_steps)
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_episodes), env_params)
    zeros_i = jnp.zeros((num_episodes,), jnp.int32)
    carry = (jnp.int32(0), obs, state, jnp.zeros((num_episodes,), jnp.float32), zeros_i, zeros_i,
             jnp.ones((num_episodes,), bool))

    def cond(c):
        t, *_, alive = c
        return (t < limit) & jnp.any(alive)

    def body(c):
        t, obs, state, ret, length, viol, alive = c
        k_act, k_env = jax.random.split(jax.random.fold_in(k_run, t))
        bits = jax.random.bits(k_act, (num_episodes, 3), jnp.uint32)
        actions = jax.vmap(lambda b, o: policy_action(agent, agent_state, b, o, epsilon))(bits, obs)
        obs, state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, num_episodes), state, actions, env_params
        )
        ret = ret + jnp.where(alive, reward.astype(jnp.float32), 0.0)
        length = length + alive.astype(jnp.int32)
        if isinstance(info, dict) and "violation" in info:
            viol = viol + (alive & info["violation"].astype(bool)).astype(jnp.int32)
        alive = alive & ~(terminated | truncated)
        return t + 1, obs, state, ret, length, viol, alive

    _, _, _, ret, length, viol, alive = jax.lax.while_loop(cond, body, carry)
    return EvalResult(returns=ret, lengths=length, violations=viol, finished=~alive)

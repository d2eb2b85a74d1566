"""Greedy evaluation of population members (the one rule of ``dtrl_jax.evaluate``) and selection of
the best."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from dtrl_jax.evaluate import episode_limit
from dtrl_jax.evaluate import evaluate as play
from dtrl_jax.population.members import (
    Member,
)
from dtrl_jax.population.training import PopulationResult
from dtrl_jax.train import build_agent, inspect_env


@dataclasses.dataclass(frozen=True)
class Student:
    """A distilled agent: an MLP ``Member`` (twin off) and its ``DQNState``; ``losses`` per step."""

    member: Member
    agent_state: Any
    losses: np.ndarray


def greedy_returns(member: Member, agent_states, env, env_params, episodes: int, key: jax.Array,
                   max_steps: int | None = None) -> jax.Array:
    """Greedy physical returns ``[P, episodes]`` of ``P`` stacked agent states of one architecture.

    The one greedy rule of :mod:`dtrl_jax.evaluate` (argmax Q, random ties), jitted and vmapped over
    agents; every agent plays the same episode keys (common random numbers). ``max_steps`` defaults
    to the env's ``max_steps_in_episode``.
    """
    wenv, wparams = member.acting_env(env, env_params)
    agent = build_agent(member.config, inspect_env(wenv, wparams))
    limit = episode_limit(wenv, wparams, max_steps)

    def agent_returns(agent_state):
        return play(key, agent, agent_state, wenv, wparams, int(episodes), max_steps=limit).returns

    return jax.jit(jax.vmap(agent_returns))(agent_states)


def evaluate(members, env, env_params, episodes: int = 10, *, key: jax.Array | None = None,
             max_steps: int | None = None) -> np.ndarray:
    """Mean greedy physical return per member, in population order (float64 ``[P]``).

    ``members``: a :class:`PopulationResult` or a :class:`Student` (then ``[1]``). Every member
    plays the same ``episodes`` episode keys (common random numbers), on the physical ``env`` with
    ``env_params`` seen through the member's observation view.
    """
    if not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"evaluate: episodes={episodes!r}; expected an int >= 1")
    key = jax.random.key(0) if key is None else key
    if isinstance(members, Student):
        states = jax.tree.map(lambda x: x[None], members.agent_state)
        return np.asarray(greedy_returns(members.member, states, env, env_params, episodes, key, max_steps)
                          ).mean(axis=1).astype(np.float64)
    if not isinstance(members, PopulationResult):
        raise TypeError(f"evaluate needs a PopulationResult or Student, got {type(members).__name__}")
    out = np.zeros(len(members.population.members))
    for g, idx in enumerate(members.population.groups):
        m = members.population.members[idx[0]]
        rets = greedy_returns(m, members.results[g].runner_state.agent_state, env, env_params, episodes,
                              key, max_steps)
        for j, i in enumerate(idx):  # same key for every group: common random numbers
            out[i] = float(np.mean(np.asarray(rets[j])))
    return out


@dataclasses.dataclass(frozen=True)
class Selection:
    """The best member: population ``index``, ``name``, ``score``, its ``Member`` and ``agent_state``."""

    index: int
    name: str
    score: float
    member: Member
    agent_state: Any


def select_best(result: PopulationResult, scores: Sequence[float]) -> Selection:
    """The member with the highest finite score (e.g. from :func:`evaluate`)."""
    scores = np.asarray(scores, np.float64)
    n = len(result.population.members)
    if scores.shape != (n,):
        raise ValueError(f"select_best: scores has shape {scores.shape}; expected ({n},), one per member")
    if not np.any(np.isfinite(scores)):
        raise ValueError("select_best: no member has a finite score")
    i = int(np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf)))
    m = result.population.members[i]
    return Selection(index=i, name=m.name, score=float(scores[i]), member=m, agent_state=result.agent_state(i))

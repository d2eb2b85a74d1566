"""The contract every agent offers to the training loop, so one loop serves all of them.

An agent is a plain (static, hashable-by-identity) Python object whose methods are pure functions
of pytrees. The loop never looks inside ``agent_state`` or ``storage``.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
from flax import struct

from dtrl_jax.transition import Transition


@struct.dataclass
class LearnStats:
    """What one call of ``Agent.learn`` reports: summed loss and number of gradient/table updates."""

    loss_sum: jax.Array
    updates: jax.Array


@struct.dataclass
class Experience:
    """One vectorised step's experience, as the loop hands it to ``Agent.learn``.

    Attributes:
      physical: transitions with a leading ``[num_envs]`` axis.
      twin: twin transitions with leading ``[domains, num_envs]`` axes (the trial domains, then the
        shield's vetoed transitions as the last domain when the shield is on), or None.
      twin_mask: which twin transitions are real: a bool scalar, ``[num_envs]`` or
        ``[domains, num_envs]``; where False they must be ignored exactly, so that the agent learns
        as plain physical RL while the twin is not ready or not healthy.
      steps_before, steps_after: the physical step counter before / after this vectorised step.
      rewards: the physical envs' 1-step rewards ``[num_envs]`` (with a look-ahead twin the
        physical transitions' returns are k-step sums), or None.
    """

    physical: Transition
    twin: Transition | None
    twin_mask: Any
    steps_before: jax.Array
    steps_after: jax.Array
    rewards: jax.Array | None = None


class Agent(Protocol):
    num_actions: int

    def init(self, key: jax.Array) -> Any:
        """Initial agent state (parameters, Q-table, optimiser state)."""

    def q_values(self, agent_state: Any, obs: Any) -> jax.Array:
        """Online action values ``[A]`` for ONE observation (vmapped by the caller)."""

    def init_storage(self, example: Transition, twin_example: Transition | None) -> Any:
        """Initial storage space (replay) for transitions shaped like the examples (no batch axes)."""

    def learn(self, agent_state: Any, storage: Any, experience: Experience, key: jax.Array) -> tuple[Any, Any, LearnStats]:
        """Consume one vectorised step of experience (see :class:`Experience`); returns the new agent
        state, the new storage and what the step did."""

"""What learns: tabular Q-learning and DQN, their action selection and TD targets."""

from dtrl_jax.agents.dqn import DQNAgent
from dtrl_jax.agents.tabular import TabularQAgent

__all__ = ["DQNAgent", "TabularQAgent"]

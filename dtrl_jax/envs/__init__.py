"""Physical space: pure gymnax-1.x environments, channel models and the registry behind ``make``."""

from dtrl_jax.envs import channel
from dtrl_jax.envs.registry import make, register, registered_envs

# Importing each environment module registers its ids.
from dtrl_jax.envs import access_point  # noqa: E402,F401
from dtrl_jax.envs import multi_uav  # noqa: E402,F401
from dtrl_jax.envs import edge_scheduling  # noqa: E402,F401
from dtrl_jax.envs.edge_scheduling import brute_force_optimum  # noqa: E402,F401

__all__ = ["channel", "make", "register", "registered_envs", "brute_force_optimum"]

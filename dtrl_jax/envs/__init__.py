"""Physical space: pure gymnax-1.x environments, channel models and the registry behind ``make``.

The environment modules are imported on first use (``make(id)`` or attribute access such as
``dtrl_jax.envs.access_point``), so listing ids (``registered_envs``) does not import JAX.
"""

import importlib

from dtrl_jax.envs.registry import make, register, registered_envs, unregister

_SUBMODULES = ("access_point", "channel", "edge_scheduling", "multi_uav", "registry", "wrappers")
_LAZY = {"brute_force_optimum": "edge_scheduling"}

__all__ = ["channel", "make", "register", "registered_envs", "unregister", "brute_force_optimum"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"dtrl_jax.envs.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"dtrl_jax.envs.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dtrl_jax.envs' has no attribute {name!r}")

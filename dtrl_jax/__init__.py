"""dtrl-jax: digital-twin-enhanced reinforcement learning for network resource management in JAX.

    import jax, dtrl_jax as dt
    env, params = dt.make("AccessPointSelection-v0")
    cfg = dt.QLearningConfig(total_timesteps=50_000, twin=dt.TwinConfig(num_domains=5, action_trials=5))
    out = jax.jit(dt.make_train(cfg, env, params))(jax.random.key(0))

Names are imported on first access (PEP 562), so ``import dtrl_jax`` and the ``dtrl`` command's
``--help``/``envs``/``plot`` start without importing JAX.
"""

import importlib
import sys
import types

# Cheap (no JAX): lists our env ids and registers them with gymnax once gymnax is imported.
from dtrl_jax.envs import registry as _registry  # noqa: F401

__version__ = "0.1.0"

_EXPORTS = {
    "DQNConfig": "dtrl_jax.config",
    "QLearningConfig": "dtrl_jax.config",
    "TwinConfig": "dtrl_jax.config",
    "RunnerState": "dtrl_jax.train",
    "TrainResult": "dtrl_jax.train",
    "make_train": "dtrl_jax.train",
    "estimate_memory": "dtrl_jax.train",
    "Trainer": "dtrl_jax.train",
    "EvalResult": "dtrl_jax.evaluate",
    "act": "dtrl_jax.evaluate",
    "evaluate": "dtrl_jax.evaluate",
    "make_policy": "dtrl_jax.evaluate",
    "make": "dtrl_jax.envs.registry",
    "register": "dtrl_jax.envs.registry",
    "registered_envs": "dtrl_jax.envs.registry",
}

__all__ = [
    "DQNConfig",
    "EvalResult",
    "QLearningConfig",
    "RunnerState",
    "TrainResult",
    "Trainer",
    "TwinConfig",
    "__version__",
    "act",
    "estimate_memory",
    "evaluate",
    "make",
    "make_policy",
    "make_train",
    "register",
    "registered_envs",
]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    try:  # subpackages/modules: dt.envs, dt.plotting, ...
        return importlib.import_module(f"dtrl_jax.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"dtrl_jax.{name}":
            raise
        raise AttributeError(f"module 'dtrl_jax' has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``dt.evaluate`` is the function although ``dtrl_jax/evaluate.py`` is a module of the same name.

    Importing a submodule sets it as an attribute of its package, which would hide the function
    export; this keeps the function (``from dtrl_jax.evaluate import ...`` still finds the module
    through ``sys.modules``).
    """

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

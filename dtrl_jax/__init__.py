"""dtrl-jax: digital-twin-enhanced reinforcement learning for network resource management in JAX.

    import jax, dtrl_jax as dt
    env, params = dt.make("AccessPointSelection-v0")
    cfg = dt.QLearningConfig(total_timesteps=50_000, twin=dt.TwinConfig(num_domains=5, action_trials=5))
    out = jax.jit(dt.make_train(cfg, env, params))(jax.random.key(0))
"""

from dtrl_jax.config import DQNConfig, QLearningConfig, TwinConfig
from dtrl_jax.envs import make, registered_envs
from dtrl_jax.evaluate import EvalResult, act, evaluate, make_policy
from dtrl_jax.train import RunnerState, TrainResult, make_train

__version__ = "0.1.0"

__all__ = [
    "DQNConfig",
    "QLearningConfig",
    "TwinConfig",
    "EvalResult",
    "RunnerState",
    "TrainResult",
    "act",
    "evaluate",
    "make",
    "make_policy",
    "make_train",
    "registered_envs",
    "__version__",
]

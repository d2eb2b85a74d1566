import jax
import jax.numpy as jnp
import pytest

import dtrl_jax as dt
from dtrl_jax.config import field_docs

BAD = [
    (dt.TwinConfig, {"num_domains": 0}, "num_domains"),
    (dt.TwinConfig, {"num_domains": 2.5}, "num_domains"),
    (dt.TwinConfig, {"num_domains": 2, "action_trials": 3}, "action_trials"),
    (dt.TwinConfig, {"lookahead_rollouts": 0}, "lookahead_rollouts"),
    (dt.TwinConfig, {"num_domains": 2, "lookahead_rollouts": 3}, "lookahead_rollouts"),
    (dt.TwinConfig, {"lookahead": -1}, "lookahead"),
    (dt.TwinConfig, {"lookahead_policy": "random"}, "lookahead_policy"),
    (dt.TwinConfig, {"twin_data_fraction": 1.5}, "twin_data_fraction"),
    (dt.TwinConfig, {"twin_data_fraction": float("nan")}, "twin_data_fraction"),
    (dt.QLearningConfig, {"gamma": 1.5}, "gamma"),
    (dt.QLearningConfig, {"gamma": float("nan")}, "gamma"),
    (dt.QLearningConfig, {"learning_rate": 0.0}, "learning_rate"),
    (dt.QLearningConfig, {"learning_rate": 2.0}, "learning_rate"),
    (dt.QLearningConfig, {"epsilon_start": -0.1}, "epsilon_start"),
    (dt.QLearningConfig, {"epsilon_decay_steps": 0}, "epsilon_decay_steps"),
    (dt.QLearningConfig, {"total_timesteps": 0}, "total_timesteps"),
    (dt.QLearningConfig, {"total_timesteps": 1500, "log_every": 1000}, "total_timesteps"),
    (dt.QLearningConfig, {"num_envs": 3, "log_every": 1000}, "log_every"),
    (dt.QLearningConfig, {"twin": 3}, "twin"),
    (dt.DQNConfig, {"batch_size": 128, "buffer_size": 64}, "batch_size"),
    (dt.DQNConfig, {"tau": 0.0}, "tau"),
    (dt.DQNConfig, {"learning_starts": -1}, "learning_starts"),
    (dt.DQNConfig, {"train_every": 0}, "train_every"),
    (dt.DQNConfig, {"hidden_sizes": (64, 0)}, "hidden_sizes"),
    (dt.DQNConfig, {"hidden_sizes": [64]}, "hidden_sizes"),
    (dt.DQNConfig, {"network": "transformer"}, "network"),
    (dt.DQNConfig, {"loss": "l1"}, "loss"),
    (dt.DQNConfig, {"learning_rate": "fast"}, "learning_rate"),
    (dt.DQNConfig, {"double_q": 1}, "double_q"),
]


@pytest.mark.parametrize("cls,kwargs,field", BAD)
def test_bad_values_raise_naming_the_field(cls, kwargs, field):
    with pytest.raises((ValueError, TypeError), match=field):
        cls(**kwargs)


def test_replace_validates_too():
    cfg = dt.QLearningConfig()
    with pytest.raises(ValueError, match="gamma"):
        cfg.replace(gamma=-0.5)


def test_configs_are_frozen_pytrees_with_static_shape_fields():
    cfg = dt.DQNConfig(twin=dt.TwinConfig(num_domains=4, action_trials=2))
    with pytest.raises(Exception):
        cfg.gamma = 0.5  # frozen
    leaves = jax.tree.leaves(cfg)
    # traced leaves: learning_rate, gamma, eps start/end, exploration_fraction, eval_epsilon, tau,
    # max_grad_norm, reward_scale, reward_shift (epsilon_decay_steps=None is no leaf), and the twin's
    # state/obs noise, ready_after, build_steps, build_noise_std, health_window, health_threshold
    assert len(leaves) == 17
    # a traced field can be swept; validation skips tracers
    out = jax.vmap(lambda lr: cfg.replace(learning_rate=lr).learning_rate * 2)(jnp.array([1e-3, 1e-2]))
    assert out.shape == (2,)


def test_every_field_is_documented():
    for cls in (dt.TwinConfig, dt.QLearningConfig, dt.DQNConfig):
        docs = field_docs(cls)
        assert docs and all(docs.values()), cls

"""Imperfect twins: noise on synchronised states and on twin observations, and the build schedule.

A real twin is built from sensor data, so the copy of the physical state it receives at each
synchronisation is noisy (``state_noise_std``, added to every floating-point leaf of the state)
and so are the observations it produces (``obs_noise_std``). While the twin is still being built its
noise is larger: ``build_noise_std`` extra state noise that decays linearly to 0 over
``build_steps`` physical steps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def add_float_noise(key: jax.Array, tree: Any, std) -> Any:
    """Add ``N(0, std**2)`` to every floating-point leaf of ``tree``; integer leaves are unchanged."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    noisy = [
        x + jnp.asarray(std, x.dtype) * jax.random.normal(k, jnp.shape(x), x.dtype)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
        else x
        for k, x in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, noisy)


def state_noise_std(twin, steps) -> jax.Array:
    """Effective state-noise std after ``steps`` physical steps (the build schedule included)."""
    base = jnp.asarray(twin.state_noise_std, jnp.float32)
    build_steps = jnp.maximum(jnp.asarray(twin.build_steps, jnp.float32), 1.0)
    remaining = jnp.clip(1.0 - jnp.asarray(steps, jnp.float32) / build_steps, 0.0, 1.0)
    remaining = jnp.where(jnp.asarray(twin.build_steps) > 0, remaining, 0.0)
    return base + jnp.asarray(twin.build_noise_std, jnp.float32) * remaining

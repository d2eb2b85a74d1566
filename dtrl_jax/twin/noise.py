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
import numpy as np

from dtrl_jax._checks import is_concrete


def is_zero(std) -> bool:
    """True when ``std`` is known before tracing to be exactly 0, so the noise can be left out.

    Skipping matters for speed, not results (``x + 0 * N(0, 1)`` is ``x``): with many domains the
    normal draws of a noise-free twin were a large share of a step. A traced ``std`` (a swept
    hyper-parameter) is never skipped.
    """
    return is_concrete(std) and not np.any(np.asarray(std))


def state_noise_free(twin) -> bool:
    """Whether the twin's synchronised states are noise-free at every step (known before tracing)."""
    build_off = is_zero(twin.build_noise_std) or (is_concrete(twin.build_steps) and int(twin.build_steps) == 0)
    return is_zero(twin.state_noise_std) and build_off and all(is_zero(w[2]) for w in twin.burst_windows)


def add_float_noise(key: jax.Array, tree: Any, std) -> Any:
    """Add ``N(0, std**2)`` to every floating-point leaf of ``tree``; integer leaves are unchanged."""
    if is_zero(std):
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    noisy = [
        x + jnp.asarray(std, x.dtype) * jax.random.normal(k, jnp.shape(x), x.dtype)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
        else x
        for k, x in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, noisy)


def state_noise_std(twin, steps):
    """Effective state-noise std after ``steps`` physical steps (the build schedule included).

    A Python ``0.0`` when :func:`state_noise_free` (so :func:`add_float_noise` skips the draws).
    """
    if state_noise_free(twin):
        return 0.0
    base = jnp.asarray(twin.state_noise_std, jnp.float32)
    build_steps = jnp.maximum(jnp.asarray(twin.build_steps, jnp.float32), 1.0)
    remaining = jnp.clip(1.0 - jnp.asarray(steps, jnp.float32) / build_steps, 0.0, 1.0)
    remaining = jnp.where(jnp.asarray(twin.build_steps) > 0, remaining, 0.0)
    return base + jnp.asarray(twin.build_noise_std, jnp.float32) * remaining

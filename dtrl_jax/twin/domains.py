"""Digital domains: the environment's own ``step`` vmapped over a domain axis.

The twin knows environments only through the gymnax contract (``step``), and agents only through
a policy function it is handed, so any gymnax environment can be twinned unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def replicate(tree: Any, num: int) -> Any:
    """Copy a pytree (e.g. the physical state) into ``num`` domains: a new leading axis."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num, *jnp.shape(x))), tree)


def step_domains(env, keys: jax.Array, states: Any, actions: jax.Array, params: Any, params_axis=None):
    """``env.step`` over a leading domain axis of ``keys``, ``states`` and ``actions``.

    ``params_axis=None`` shares one ``EnvParams`` across domains; ``0`` takes a stack, one per domain.
    Returns gymnax's six values, each with the domain axis first.
    """
    return jax.vmap(env.step, in_axes=(0, 0, 0, params_axis))(keys, states, actions, params)

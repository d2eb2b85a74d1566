"""Mismatched twins: one ``EnvParams`` per digital domain, stacked for ``vmap``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


def stack_params(params_list: Sequence[Any]) -> Any:
    """Stack a list of ``EnvParams`` (same static fields) into one with a leading domain axis."""
    if not params_list:
        raise ValueError("stack_params needs at least one EnvParams")
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *params_list)


def perturb_params(key: jax.Array, params: Any, num_domains: int, relative_std: float,
                   fields: Sequence[str] | None = None, identical_first: bool = False,
                   min_scale: float = 0.1) -> Any:
    """A stack of ``num_domains`` copies of ``params`` whose float fields are scaled by ``1 + std * N(0, 1)``.

    Models a twin whose environment parameters (rates, speeds, powers, ...) are estimated with a
    relative error. ``fields`` limits the perturbation to the named fields (default: every float
    leaf). ``identical_first=True`` keeps domain 0 exact. The scale is floored at ``min_scale``
    (default 0.1: at least 10% of the true value, same sign): an unfloored Gaussian scale turns a
    bandwidth or a speed negative once in ~40 draws at std 0.5, an environment no twin could be.

    Returns:
      ``EnvParams`` whose traced leaves have a leading ``[num_domains]`` axis.
    """
    if relative_std < 0:
        raise ValueError(f"perturb_params: relative_std={relative_std} must be >= 0")
    if not 0.0 <= min_scale <= 1.0:
        raise ValueError(f"perturb_params: min_scale={min_scale} must be in [0, 1]")
    names = None if fields is None else set(fields)
    if names is not None:
        known = {f for f in params.__dataclass_fields__}
        unknown = sorted(names - known)
        if unknown:
            raise ValueError(f"perturb_params: unknown field(s) {unknown}; known: {sorted(known)}")
    out = {}
    keys = jax.random.split(key, len(params.__dataclass_fields__))
    for k, (name, f) in zip(keys, params.__dataclass_fields__.items()):
        value = getattr(params, name)
        if not f.metadata.get("pytree_node", True):
            continue
        arr = jnp.asarray(value)
        stacked = jnp.broadcast_to(arr, (num_domains, *arr.shape))
        if jnp.issubdtype(arr.dtype, jnp.floating) and (names is None or name in names):
            scale = jnp.maximum(1.0 + relative_std * jax.random.normal(k, stacked.shape, arr.dtype), min_scale)
            if identical_first:
                scale = scale.at[0].set(1.0)
            stacked = stacked * scale
        out[name] = stacked
    return params.replace(**out)

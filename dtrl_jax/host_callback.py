"""A host callback that fires once per call site execution, however many ``vmap``s wrap it.

``jax.debug.callback`` under ``vmap`` runs once per batch element: with 32 vmapped seeds a progress
bar would be fed 32 times per logging interval. ``once_per_batch(fn)`` returns a function that,
traced inside any number of nested ``vmap``s, calls ``fn`` exactly once per execution with the
whole batch (leaves carry the vmapped axes first, outermost first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def once_per_batch(fn: Callable[[Any], None]) -> Callable[[Any], jax.Array]:
    """Wrap ``fn(tree)`` as a traceable reporter; the returned function returns a dummy int32."""

    @jax.custom_batching.custom_vmap
    def report(tree):
        jax.debug.callback(fn, tree)
        return jnp.int32(0)

    @report.def_vmap
    def _batched(axis_size, in_batched, tree):
        del axis_size, in_batched
        # Re-entering ``report`` lets an outer vmap batch this call again, so the host sees the
        # full batch once instead of once per element.
        report(tree)
        return jnp.int32(0), False

    return report

"""Sharding of the digital-domain axis over a device mesh (used inside the jitted loop).

``make_train(..., mesh=mesh)`` with a ``"domains"`` mesh axis places sharding constraints on every
array that carries a domain axis: the domains' state estimates ``[num_envs, D, ...]``, the twin
trial transitions and per-domain storage ``[n - 1, ...]``, and the look-ahead branches
``[num_envs, M, ...]``. XLA's SPMD partitioner then runs each device's domains locally and inserts
the reductions (the gradient over twin samples, the mean over rollouts) across the axis. Arrays
whose domain count is not divisible by the axis size stay replicated (``num_domains`` itself must
be divisible; that is checked in ``make_train``).
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DOMAINS = "domains"
SEEDS = "seeds"


def validate_mesh(mesh: Any, twin) -> None:
    """Raise ``TypeError``/``ValueError`` for a mesh ``make_train`` cannot use."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh={mesh!r}: expected a jax.sharding.Mesh (see dtrl_jax.distributed.make_mesh)")
    check_mesh_axes(dict(mesh.shape), twin)


def check_mesh_axes(axis_sizes: dict[str, int], twin) -> None:
    """The checks of ``validate_mesh`` on a ``{axis name: size}`` mapping."""
    names = tuple(axis_sizes)
    if DOMAINS not in names and SEEDS not in names:
        raise ValueError(
            f"mesh has axes {names}; expected a {DOMAINS!r} axis (shards the digital domains) and/or a "
            f"{SEEDS!r} axis (shards vmapped seeds)"
        )
    if DOMAINS in names:
        size = axis_sizes[DOMAINS]
        if twin is None or not twin.uses_domains:
            raise ValueError(
                f"mesh has a {DOMAINS!r} axis but config.twin runs no domains (twin=None or no "
                "action_trials/lookahead/shield); drop the axis or enable a twin feature"
            )
        if twin.num_domains % size:
            raise ValueError(
                f"TwinConfig.num_domains={twin.num_domains} is not divisible by the mesh's {DOMAINS!r} "
                f"axis of size {size}; expected a multiple of {size}"
            )


class DomainSharding:
    """Applies ``with_sharding_constraint`` along a domain axis; a no-op without a domain mesh axis."""

    def __init__(self, mesh: Mesh | None):
        self.mesh = mesh
        self.size = mesh.shape[DOMAINS] if mesh is not None and DOMAINS in mesh.axis_names else 0

    def constrain(self, tree: Any, axis: int) -> Any:
        """Shard dimension ``axis`` of every leaf over ``"domains"`` (when its size divides evenly)."""
        if not self.size:
            return tree

        def one(x):
            if x.ndim <= axis or x.shape[axis] % self.size:
                return x
            spec = PartitionSpec(*([None] * axis), DOMAINS)
            return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

        return jax.tree.map(one, tree)

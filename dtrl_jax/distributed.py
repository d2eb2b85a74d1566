"""Scale out: meshes over the devices of one or many hosts, sharded seeds, multi-host start-up.

Built on JAX's own machinery (``jax.sharding.Mesh``/``NamedSharding`` and ``jax.distributed``), never
``pmap`` or a home-made scheduler::

    import dtrl_jax as dt
    from dtrl_jax import distributed

    mesh = distributed.make_mesh(domains=4, seeds=2)            # 8 devices
    train = dt.make_train(cfg, env, params, mesh=mesh)          # domain axis sharded over 4 devices
    run = distributed.shard_seeds(train, mesh)                  # seeds sharded over 2
    out = run(jax.random.split(jax.random.key(0), 8))

Multi-host (every process runs the same script; see the README for a Slurm/ssh recipe)::

    distributed.initialize()                                    # reads the launcher's environment
    key = distributed.process_key(jax.random.key(0))            # distinct per process, reproducible
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dtrl_jax.sharding import DOMAINS, SEEDS


def make_mesh(domains: int | None = None, seeds: int | None = None, devices=None) -> Mesh:
    """A ``Mesh`` with axes ``("seeds", "domains")`` over ``devices`` (default: all devices).

    Give one size and the other defaults to the remaining devices; give neither and every device goes
    to ``"domains"``. ``seeds * domains`` must equal the number of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if domains is None and seeds is None:
        domains, seeds = n, 1
    elif domains is None:
        domains = n // seeds if seeds and n % seeds == 0 else 0
    elif seeds is None:
        seeds = n // domains if domains and n % domains == 0 else 0
    if not domains or not seeds or domains * seeds != n or domains < 1 or seeds < 1:
        raise ValueError(
            f"make_mesh(domains={domains}, seeds={seeds}): the axis sizes must multiply to the {n} "
            "available devices"
        )
    grid = np.asarray(devices, dtype=object).reshape(seeds, domains)
    return Mesh(grid, (SEEDS, DOMAINS))


def shard_seeds(train: Callable, mesh: Mesh) -> Callable:
    """``jax.jit(jax.vmap(train))`` with the batch of keys (and every output) sharded over ``"seeds"``.

    The number of keys must be a multiple of the ``"seeds"`` axis size.
    """
    if SEEDS not in mesh.axis_names:
        raise ValueError(f"shard_seeds needs a mesh with a {SEEDS!r} axis; got axes {tuple(mesh.axis_names)}")
    size = mesh.shape[SEEDS]
    sharding = NamedSharding(mesh, PartitionSpec(SEEDS))
    jitted = jax.jit(jax.vmap(train), in_shardings=sharding, out_shardings=sharding)

    def run(keys):
        if keys.shape[0] % size:
            raise ValueError(
                f"shard_seeds: {keys.shape[0]} keys cannot be split over the {SEEDS!r} axis of size {size}; "
                f"expected a multiple of {size}"
            )
        return jitted(keys)

    return run


def initialize(**kwargs) -> None:
    """Start multi-host JAX (``jax.distributed.initialize``); a no-op for a single process.

    With no arguments JAX reads the cluster from the environment (Slurm, or
    ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID`` style settings passed as
    ``coordinator_address=``, ``num_processes=``, ``process_id=``).
    """
    if kwargs.get("num_processes", None) == 1:
        return
    jax.distributed.initialize(**kwargs)


def process_key(key: jax.Array) -> jax.Array:
    """Fold the process index into ``key``: every host gets its own stream, reproducibly."""
    return jax.random.fold_in(key, jax.process_index())

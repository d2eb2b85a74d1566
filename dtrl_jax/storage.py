"""Storage space: fixed-capacity ring buffers that live inside the jitted carry.

``ReplayBuffer`` holds any pytree of per-transition arrays with a leading capacity axis. Adding a
batch is one scatter, sampling is one ``randint`` plus a gather: both O(batch), never O(capacity).
``DomainStorage`` stacks one ring buffer per digital domain (a leading domain axis), so the
transitions of each domain stay apart and can be drawn on demand, as in the paper's storage space.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
    """A ring buffer.

    Attributes:
      data: pytree whose leaves have a leading ``[capacity]`` axis.
      position: int32 index where the next item goes.
      size: int32 number of valid items (saturates at capacity).
    """

    data: Any
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def buffer_init(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer for items shaped like ``example`` (one item, no batch axis)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data=data, position=jnp.int32(0), size=jnp.int32(0))


def buffer_add(buffer: ReplayBuffer, batch: Any, enabled=True) -> ReplayBuffer:
    """Insert a batch (leading axis B <= capacity), overwriting the oldest items when full.

    ``enabled`` (a traced bool) makes the add conditional without a ``lax.cond``: when False the
    B slots are rewritten with their own old contents and neither ``position`` nor ``size`` moves.
    A ``cond`` that returns either the updated or the untouched buffer makes XLA copy the whole
    buffer at every step; this form touches only the B slots, so the buffer is updated in place.
    A ``[B]`` bool ``enabled`` adds only the enabled items, packed in their order (a scatter whose
    disabled items are dropped), e.g. the twin transitions of the envs whose twin is healthy.
    """
    capacity = buffer.capacity
    b = jax.tree.leaves(batch)[0].shape[0]
    if b > capacity:
        raise ValueError(f"cannot add {b} items at once to a buffer of capacity {capacity}")
    jax.tree.map(lambda x, y: chex.assert_equal_shape([x[0], y[0]]), buffer.data, batch)
    always = isinstance(enabled, bool) and enabled
    per_item = not isinstance(enabled, bool) and jnp.ndim(enabled) == 1
    if per_item:
        keep = jnp.asarray(enabled, bool)
        chex.assert_shape(keep, (b,))
        offset = jnp.cumsum(keep.astype(jnp.int32)) - 1
        idx = jnp.where(keep, (buffer.position + offset) % capacity, capacity)  # capacity: dropped
        added = jnp.sum(keep.astype(jnp.int32))
    else:
        idx = (buffer.position + jnp.arange(b, dtype=jnp.int32)) % capacity
        added = b if always else jnp.where(enabled, b, 0)

    def write(store, new):
        new = new.astype(store.dtype)
        if per_item:
            return store.at[idx].set(new, mode="drop")
        if not always:
            new = jnp.where(enabled, new, store[idx])
        return store.at[idx].set(new)

    data = jax.tree.map(write, buffer.data, batch)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + added) % capacity,
        size=jnp.minimum(buffer.size + added, capacity),
    )


def buffer_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """Uniform sample with replacement of ``batch_size`` valid items (undefined if empty)."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda x: x[idx], buffer.data)


@struct.dataclass
class DomainStorage:
    """One ring buffer per digital domain: ``buffers.data`` leaves are ``[domains, capacity, ...]``."""

    buffers: ReplayBuffer

    @property
    def num_domains(self) -> int:
        return jax.tree.leaves(self.buffers.data)[0].shape[0]


def domain_storage_init(example: Any, num_domains: int, capacity_per_domain: int) -> DomainStorage:
    one = buffer_init(example, capacity_per_domain)
    return DomainStorage(jax.tree.map(lambda x: jnp.broadcast_to(x, (num_domains, *x.shape)), one))


def domain_storage_add(storage: DomainStorage, batch: Any, enabled=True) -> DomainStorage:
    """Add ``batch`` with leaves ``[domains, B, ...]``: domain d's items go to domain d's buffer.

    ``enabled``: as in :func:`buffer_add`: one (traced) flag for every domain, or per-item flags
    ``[B]`` (shared by the domains) or ``[domains, B]``.
    """
    if isinstance(enabled, bool) or jnp.ndim(enabled) == 0:
        return DomainStorage(jax.vmap(buffer_add, in_axes=(0, 0, None))(storage.buffers, batch, enabled))
    flags = jnp.broadcast_to(jnp.asarray(enabled, bool), (storage.num_domains, jnp.shape(enabled)[-1]))
    return DomainStorage(jax.vmap(buffer_add)(storage.buffers, batch, flags))


def domain_storage_size(storage: DomainStorage) -> jax.Array:
    """Total number of valid items over all domains."""
    return jnp.sum(storage.buffers.size)


def domain_storage_sample(storage: DomainStorage, key: jax.Array, batch_size: int) -> Any:
    """Uniform sample over all valid items of all domains (domains filled at equal rates)."""
    k_dom, k_item = jax.random.split(key)
    dom = jax.random.randint(k_dom, (batch_size,), 0, storage.num_domains)
    size = jnp.maximum(storage.buffers.size[dom], 1)
    item = jnp.floor(jax.random.uniform(k_item, (batch_size,)) * size).astype(jnp.int32)
    item = jnp.minimum(item, size - 1)
    return jax.tree.map(lambda x: x[dom, item], storage.buffers.data)


def twin_capacity_per_domain(buffer_size: int, twin_buffer_size: int | None, twin_domains: int, num_envs: int) -> int:
    """Capacity of each trial domain's ring buffer (``TwinConfig.twin_buffer_size``).

    Default (``twin_buffer_size=None``): ``buffer_size`` per domain. Every trial domain receives one
    transition per env and step, as the physical buffer does, so each twin buffer then spans the same
    last ``buffer_size / num_envs`` steps as the physical one: a batch's twin share is neither staler
    nor fresher than its physical share, and "twin data helps" is not confounded with a different
    replay window (the cost: ``twin_domains`` times the physical buffer's memory). An explicit
    ``twin_buffer_size`` is the total over the domains, split evenly (a window ``twin_domains`` times
    shorter at the same total), never less than ``num_envs`` per domain.
    """
    if twin_buffer_size is None:
        return int(buffer_size)
    return max(int(num_envs), int(twin_buffer_size) // max(int(twin_domains), 1))

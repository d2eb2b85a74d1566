import jax
import jax.numpy as jnp
import numpy as np

from dtrl_jax import storage
from dtrl_jax.storage import (
    buffer_add,
    buffer_init,
    buffer_sample,
    domain_storage_add,
    domain_storage_init,
    domain_storage_sample,
    domain_storage_size,
)


def test_ring_buffer_wraps_and_samples_only_valid_items():
    buf = buffer_init({"x": jnp.zeros(2), "a": jnp.int32(0)}, capacity=5)
    buf = buffer_add(buf, {"x": jnp.ones((3, 2)), "a": jnp.arange(1, 4)})
    assert int(buf.size) == 3 and int(buf.position) == 3
    s = buffer_sample(buf, jax.random.key(0), 200)
    assert set(np.asarray(s["a"]).tolist()) == {1, 2, 3}
    buf = buffer_add(buf, {"x": jnp.ones((4, 2)), "a": jnp.arange(4, 8)})
    assert int(buf.size) == 5 and int(buf.position) == 2
    np.testing.assert_array_equal(np.asarray(buf.data["a"]), [6, 7, 3, 4, 5])


def test_domain_storage_keeps_domains_apart():
    st = domain_storage_init({"a": jnp.int32(0)}, num_domains=3, capacity_per_domain=4)
    assert int(domain_storage_size(st)) == 0
    batch = {"a": jnp.array([[10, 11], [20, 21], [30, 31]])}
    st = domain_storage_add(st, batch)
    assert int(domain_storage_size(st)) == 6
    np.testing.assert_array_equal(np.asarray(st.buffers.data["a"])[:, :2], batch["a"])
    s = np.asarray(domain_storage_sample(st, jax.random.key(1), 500)["a"])
    assert set(s.tolist()) == {10, 11, 20, 21, 30, 31}


def test_disabled_add_leaves_a_full_buffer_untouched_under_jit():
    buf = buffer_init({"x": jnp.zeros(2), "a": jnp.int32(0)}, capacity=4)
    buf = buffer_add(buf, {"x": jnp.ones((5 - 1, 2)), "a": jnp.arange(1, 5)})  # full, position wrapped to 0
    add = jax.jit(buffer_add)
    batch = {"x": 9 * jnp.ones((3, 2)), "a": jnp.array([7, 8, 9])}
    same = add(buf, batch, jnp.asarray(False))
    for before, after in zip(jax.tree.leaves(buf), jax.tree.leaves(same)):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    moved = add(buf, batch, jnp.asarray(True))
    np.testing.assert_array_equal(np.asarray(moved.data["a"]), [7, 8, 9, 4])
    assert int(moved.position) == 3 and int(moved.size) == 4
    # per-domain storage with one flag for all domains
    st = domain_storage_init({"a": jnp.int32(0)}, num_domains=2, capacity_per_domain=3)
    st = jax.jit(domain_storage_add)(st, {"a": jnp.array([[1, 2], [3, 4]])}, jnp.asarray(False))
    assert int(domain_storage_size(st)) == 0 and not np.asarray(st.buffers.data["a"]).any()


def _numpy_ring(store, new, position, enabled=True):
    """The reference: item j of ``new`` goes to slot (position + j) % capacity."""
    out = np.array(store)
    if enabled:
        for j in range(new.shape[0]):
            out[(position + j) % store.shape[0]] = new[j]
    return out


def test_domain_storage_whole_batch_adds_wrap_like_one_buffer_per_domain():
    domains, capacity, b = 3, 5, 2
    st = storage.domain_storage_init({"x": jnp.zeros((2,))}, domains, capacity)
    ref = np.zeros((domains, capacity, 2), np.float32)
    add = jax.jit(storage.domain_storage_add)
    position = 0
    for step in range(7):  # wraps (5 is not a multiple of 2) and skips one disabled add
        enabled = step != 3
        batch = np.arange(domains * b * 2, dtype=np.float32).reshape(domains, b, 2) + 100 * step
        st = add(st, {"x": batch}, jnp.asarray(enabled))
        for d in range(domains):
            ref[d] = _numpy_ring(ref[d], batch[d], position, enabled)
        position = (position + (b if enabled else 0)) % capacity
        np.testing.assert_array_equal(np.asarray(st.buffers.data["x"]), ref)
        np.testing.assert_array_equal(np.asarray(st.buffers.position), [position] * domains)
    assert int(storage.domain_storage_size(st)) == domains * capacity

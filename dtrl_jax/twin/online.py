"""In-loop calibration: the twin's parameters fitted to recent physical transitions while it trains.

``TwinConfig(calibrate_every=N, calibrate_fields=(...), calibrate_buffer=B)`` makes the loop carry a
:class:`LoopCalibration`: a ring buffer of the last ``B`` physical transitions ``(s_t, a_t, o_{t+1},
r_t)`` (all environments together; ``s_t`` is the identical domain's copy of the physical state, the
state the twin itself holds) and the ``[num_domains]`` stack of ``EnvParams`` the digital domains
step with. Every time the physical step count (summed over environments) crosses a multiple of
``N``, a calibration phase (:func:`phase`, a ``lax.cond`` branch of the compiled program) runs
:func:`dtrl_jax.twin.calibration.calibrate` on the buffer and writes the result into the stack; the
domains use it from the next physical step on. The bounds of every fit are those of the *initial*
twin (the prior) so repeated phases cannot drift out of range; each phase starts from the current
parameters. ``calibrate_per_domain=False`` fits one parameter set (starting from domain 0's) and
writes its calibrated fields into every domain; ``True`` fits each domain from its own parameters
(``vmap`` over domains, ``num_domains`` times the work), e.g. for domains that twin different
scenarios.

:func:`buffer_twin_error` is the loop's ``twin_error`` metric: the mean over domains of
:func:`dtrl_jax.twin.calibration.twin_error` on the buffer, observable without the true parameters.
A buffer with ``calibrate_every=0`` only monitors the twin (the metric, no phase).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from dtrl_jax.twin.calibration import (
    CalibrationConfig,
    PhysicalBatch,
    calibrate,
    twin_error,
)
from dtrl_jax.twin.domains import replicate

__all__ = ["LoopCalibration", "buffer_twin_error", "init_calibration", "phase", "record"]


@struct.dataclass
class LoopCalibration:
    """What in-loop calibration carries from one physical step to the next.

    Attributes:
      buffer: :class:`PhysicalBatch` ring buffer, leaves ``[capacity, ...]``; ``weight`` 0 marks a
        slot not written yet.
      params: the digital domains' ``EnvParams``, leaves ``[num_domains, ...]``.
    """

    buffer: PhysicalBatch
    params: Any


def init_calibration(state_example, obs_example, params_stack, capacity: int) -> LoopCalibration:
    """An empty buffer of ``capacity`` transitions shaped like one env's state and observation."""
    def empty(x):
        return jnp.zeros((capacity, *jnp.shape(x)), jnp.result_type(x))

    buffer = PhysicalBatch(state=jax.tree.map(empty, state_example), action=jnp.zeros((capacity,), jnp.int32),
                           next_obs=jax.tree.map(empty, obs_example), reward=jnp.zeros((capacity,), jnp.float32),
                           weight=jnp.zeros((capacity,), jnp.float32))
    return LoopCalibration(buffer=buffer, params=params_stack)


def record(cal: LoopCalibration, steps, states, actions, next_obs, rewards) -> LoopCalibration:
    """Write the ``[num_envs]`` transitions of the vectorised step starting at physical step ``steps``.

    Slot of env ``i``: ``(steps + i) % capacity``, so the buffer holds the last ``capacity``
    physical transitions (``capacity >= num_envs``, checked by ``make_train``).
    """
    n = jnp.shape(actions)[0]
    capacity = jnp.shape(cal.buffer.weight)[0]
    idx = (jnp.asarray(steps, jnp.int32) + jnp.arange(n, dtype=jnp.int32)) % capacity

    def put(buf, x):
        return buf.at[idx].set(jnp.asarray(x, buf.dtype))

    b = cal.buffer
    buffer = b.replace(state=jax.tree.map(put, b.state, states), action=put(b.action, actions),
                       next_obs=jax.tree.map(put, b.next_obs, next_obs), reward=put(b.reward, rewards),
                       weight=b.weight.at[idx].set(1.0))
    return cal.replace(buffer=buffer)


def _take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def phase(env, cal: LoopCalibration, prior, key: jax.Array, config: CalibrationConfig,
          per_domain: bool) -> LoopCalibration:
    """One calibration phase on the buffer: ``cal`` with calibrated domain parameters.

    ``prior`` is the initial ``[num_domains]`` stack (it sets the bounds). ``calibrate`` keeps the
    start when no candidate beats it, so a phase never makes the fit on the buffer worse.
    """
    num_domains = jax.tree.leaves(cal.params)[0].shape[0]
    if per_domain:
        res = jax.vmap(lambda p, s, k: calibrate(env, p, cal.buffer, k, config, start=s))(
            prior, cal.params, jax.random.split(key, num_domains))
        return cal.replace(params=res.params)
    res = calibrate(env, _take(prior, 0), cal.buffer, key, config, start=_take(cal.params, 0))
    fitted = {f: replicate(getattr(res.params, f), num_domains) for f in config.fields}
    params = cal.params.replace(**fitted)
    if config.derive is not None:
        params = jax.vmap(config.derive)(params)
    return cal.replace(params=params)


def buffer_twin_error(env, cal: LoopCalibration, key: jax.Array, num_samples: int) -> jax.Array:
    """Mean over domains of ``twin_error`` on the buffer (float32 scalar; the same noise per domain)."""
    errors = jax.vmap(lambda p: twin_error(env, p, cal.buffer, key, num_samples))(cal.params)
    return jnp.mean(errors)

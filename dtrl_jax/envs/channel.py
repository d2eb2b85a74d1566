"""Channel models shared by the network environments.

Pure ``jax.numpy`` functions, jittable and broadcasting over arrays. Units are SI (W, Hz, m, bit/s)
unless a name says otherwise (``_dbm``, ``_db``).
"""

from __future__ import annotations

import jax.numpy as jnp

SPEED_OF_LIGHT_MPS = 299_792_458.0


def dbm_to_watt(p_dbm):
    """Power in dBm to watts: ``10 ** ((p_dbm - 30) / 10)``."""
    return 10.0 ** ((jnp.asarray(p_dbm, jnp.float32) - 30.0) / 10.0)


def watt_to_dbm(p_w):
    """Power in watts to dBm: ``10 log10(p_w) + 30``."""
    return 10.0 * jnp.log10(jnp.asarray(p_w, jnp.float32)) + 30.0


def db_to_linear(x_db):
    """A ratio in dB to a linear ratio."""
    return 10.0 ** (jnp.asarray(x_db, jnp.float32) / 10.0)


def linear_to_db(x):
    """A linear ratio to dB."""
    return 10.0 * jnp.log10(jnp.asarray(x, jnp.float32))


def free_space_path_gain(distance_m, carrier_hz, *, min_distance_m: float = 1.0):
    """Friis free-space power gain ``(c / (4 pi f d))**2`` (isotropic antennas, unit gains).

    Distances below ``min_distance_m`` are clamped to it: Friis' law holds in the far field only, and
    the clamp keeps the gain finite at ``d = 0`` (a user directly under a UAV at zero height).
    """
    d = jnp.maximum(jnp.asarray(distance_m, jnp.float32), min_distance_m)
    wavelength = SPEED_OF_LIGHT_MPS / jnp.asarray(carrier_hz, jnp.float32)
    return (wavelength / (4.0 * jnp.pi * d)) ** 2


def shannon_rate(snr_linear, bandwidth_hz):
    """Shannon capacity ``B log2(1 + snr)`` in bit/s (``snr`` clipped at 0)."""
    snr = jnp.maximum(jnp.asarray(snr_linear, jnp.float32), 0.0)
    return jnp.asarray(bandwidth_hz, jnp.float32) * jnp.log2(1.0 + snr)


def noise_power_w(noise_psd_dbm_hz, bandwidth_hz):
    """Thermal noise power in watts over ``bandwidth_hz`` for a PSD in dBm/Hz."""
    return dbm_to_watt(noise_psd_dbm_hz) * jnp.asarray(bandwidth_hz, jnp.float32)


def free_space_rate(
    distance_m,
    *,
    tx_power_w,
    bandwidth_hz,
    carrier_hz,
    noise_psd_dbm_hz=-174.0,
    min_distance_m: float = 1.0,
):
    """Achievable rate (bit/s) of a free-space link: Shannon rate at the Friis received SNR.

    ``snr = tx_power_w * (c / (4 pi f d))**2 / (10**((noise_psd_dbm_hz - 30)/10) * bandwidth_hz)``
    and ``rate = bandwidth_hz * log2(1 + snr)``. Every argument broadcasts, so a ``[users, uavs]``
    distance matrix gives a ``[users, uavs]`` rate matrix. A zero bandwidth gives a zero rate.

    Args:
      distance_m: link distance(s) in metres (clamped below at ``min_distance_m``).
      tx_power_w: transmit power in watts.
      bandwidth_hz: bandwidth in Hz (per link, OFDM: no interference).
      carrier_hz: carrier frequency in Hz.
      noise_psd_dbm_hz: noise power spectral density in dBm/Hz (thermal: -174).
    """
    gain = free_space_path_gain(distance_m, carrier_hz, min_distance_m=min_distance_m)
    bw = jnp.asarray(bandwidth_hz, jnp.float32)
    noise = dbm_to_watt(noise_psd_dbm_hz) * bw
    # Guard the zero-bandwidth case: 0 * log2(1 + x/0) must be 0, not NaN.
    snr = jnp.asarray(tx_power_w, jnp.float32) * gain / jnp.where(noise > 0, noise, 1.0)
    return jnp.where(bw > 0, shannon_rate(snr, bw), 0.0)

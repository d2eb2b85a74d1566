"""How much memory a training run needs, known before anything is compiled or allocated.

``estimate_memory(config, env, env_params)`` builds the run's ``train.init`` and evaluates it with
``jax.eval_shape``: every array of the carried state (physical replay, twin replay, the digital
domains' states, agent parameters and optimiser state, physical environments) is known exactly by
shape and dtype, without a byte of it allocated and without compiling. To those it adds the logged
metrics and an estimate of one vectorised step's *twin work*, the temporaries that exist at once
while the domains run (the trial steps' outputs, the look-ahead rollouts' states, observations and
Q-values, the synchronised copies of the domains), also from ``jax.eval_shape`` of the env's
``step``. XLA may keep some more temporaries (fusion buffers, double-buffered loop carries); the
benchmark ``benchmarks/throughput.py`` records XLA's own ``memory_analysis()`` next to this estimate.

``check_fits(estimate, device=None, fraction=0.9)`` compares the total with the device's memory
(``memory_stats()['bytes_limit']`` on an accelerator; total RAM from ``/proc/meminfo`` or
``os.sysconf`` on CPU) and raises ``ValueError`` naming the numbers when it does not fit::

    from dtrl_jax.memory import check_fits, estimate_memory
    est = estimate_memory(cfg, env, params, num_seeds=32)
    check_fits(est)          # ValueError before a long compile of a run that could not fit
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["estimate_memory", "estimate_from_runner", "describe", "check_fits", "device_memory_limit", "tree_bytes", "format_bytes"]

#: Keys of the estimate that add up to ``total_bytes`` (per seed, then times ``num_seeds``).
PARTS: tuple[str, ...] = (
    "replay_physical_bytes",
    "replay_twin_bytes",
    "domain_states_bytes",
    "agent_bytes",
    "env_states_bytes",
    "metrics_bytes",
    "twin_step_bytes",
    "calibration_bytes",
)


def tree_bytes(tree: Any) -> int:
    """Bytes of every array leaf of ``tree`` (concrete arrays or ``jax.ShapeDtypeStruct``); None-safe."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = getattr(leaf, "shape", None)
        dtype = getattr(leaf, "dtype", None)
        if shape is None or dtype is None:
            continue
        total += int(math.prod(shape)) * _itemsize(dtype)
    return total


def _itemsize(dtype) -> int:
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        # A typed PRNG key array: its storage is the underlying uint32 data (2 words for threefry).
        return int(np.prod(jax.random.key_data(jax.random.key(0)).shape)) * 4
    return np.dtype(dtype).itemsize


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _twin_step_bytes(config, env, env_params, spec, runner) -> int:
    """Temporaries of one vectorised step's twin work (all ``num_envs`` environments).

    * trials: n - 1 env steps per environment, each producing the step's outputs (obs, state,
      reward, flags, info) and a 1-step transition;
    * look-ahead: M rollouts per environment, each carrying a state, an observation, a bootstrap
      observation and the twin agent's Q-values ``[num_actions]`` through its k - 1 steps;
    * the advance of the domains: a new copy of the domains' states (the old one is still live).
    """
    twin = config.twin
    if twin is None or not twin.uses_domains:
        return 0
    key = jax.random.key(0)
    obs, state = jax.eval_shape(env.reset, key, env_params)
    step_out = jax.eval_shape(env.step, key, state, jnp.int32(0), env_params)
    step_bytes = tree_bytes(step_out)
    obs_bytes = tree_bytes(obs)
    state_bytes = tree_bytes(state)
    n_envs = config.num_envs
    per_env = 0
    if twin.uses_trials:
        transition = 2 * obs_bytes + 4 * 5  # obs, next_obs, action, return, discount, weight, flags
        per_env += (twin.action_trials - 1) * (step_bytes + transition)
    if twin.uses_lookahead:
        per_rollout = step_bytes + state_bytes + 2 * obs_bytes + 4 * spec.num_actions + 4 * 4
        per_env += twin.lookahead_rollouts * per_rollout
    if twin.shield:
        per_env += step_bytes
    domains = tree_bytes(runner.domains) if runner.domains is not None else 0
    return n_envs * per_env + domains


def _calibration_bytes(config, env, env_params, runner) -> int:
    """In-loop calibration: its carried ring buffer and parameter stack, plus one phase's temporaries
    (every candidate's twin steps of the whole buffer at once: ``population`` candidates for CEM,
    ``2 D + 1`` central-difference points for the gradient, ``num_samples`` draws per transition)."""
    cal = getattr(runner, "calibration", None)
    if cal is None:
        return 0
    carried = tree_bytes(cal)
    twin = config.twin
    cfg = twin.calibration_config
    if cfg is None:
        return carried
    key = jax.random.key(0)
    _, state = jax.eval_shape(env.reset, key, env_params)
    step_bytes = tree_bytes(jax.eval_shape(env.step_env, key, state, jnp.int32(0), env_params))
    entries = sum(int(math.prod(jnp.shape(getattr(env_params, f)))) for f in cfg.fields)
    candidates = cfg.population if cfg.method == "cem" else 2 * entries + 1
    per_fit = candidates * twin.calibrate_buffer * cfg.num_samples * step_bytes
    return carried + per_fit * (twin.num_domains if twin.calibrate_per_domain else 1)


def estimate_memory(config, env, env_params, *, twin_params=None, num_seeds: int = 1) -> dict[str, Any]:
    """Bytes a run of ``config`` on ``env`` needs, from shapes alone (``jax.eval_shape``; nothing allocated).

    Args:
      config: a ``DQNConfig`` or ``QLearningConfig``.
      env, env_params: the physical environment (any gymnax environment) and its parameters.
      twin_params: the optional per-domain ``EnvParams`` stack given to ``make_train``.
      num_seeds: runs vmapped together (``jax.vmap(train)`` over that many keys); every part scales
        with it.
    Returns:
      A dict of ints (bytes), per seed unless named ``total``: ``replay_physical_bytes`` (physical
      replay storage), ``replay_twin_bytes`` (the twin's per-domain storage and the shield's vetoed transitions), ``domain_states_bytes``
      (the digital domains' states and observations), ``agent_bytes`` (parameters, target parameters,
      optimiser state or Q-table), ``env_states_bytes`` (physical environments and their
      observations), ``metrics_bytes`` (one row per logging interval), ``twin_step_bytes`` (one
      vectorised step's twin temporaries), ``calibration_bytes`` (in-loop calibration's buffer, parameter
      stack and one phase's temporaries; 0 without it), ``per_seed_bytes`` (their sum), ``num_seeds`` and
      ``total_bytes`` (``per_seed_bytes * num_seeds``), plus ``num_domains``, ``buffer_size`` and
      ``twin_buffer_size`` (transitions per domain) for the message of :func:`check_fits`.
    """
    from dtrl_jax.train import make_train

    if int(num_seeds) < 1:
        raise ValueError(f"estimate_memory: num_seeds={num_seeds} must be >= 1")
    train = make_train(config, env, env_params, twin_params=twin_params, check_memory=False)
    runner, _ = jax.eval_shape(train.init, jax.random.key(0))
    return estimate_from_runner(config, train.env, train.env_params, runner, num_seeds=num_seeds)


def estimate_from_runner(config, env, env_params, runner, *, spec=None, num_seeds: int = 1) -> dict[str, Any]:
    """:func:`estimate_memory` from a ``RunnerState`` whose leaves have shapes (arrays, tracers or
    ``jax.ShapeDtypeStruct``): what ``make_train``'s ``init`` calls while it is being traced, with
    the ``EnvSpec`` it read before tracing (``spec``; read here when None)."""
    from dtrl_jax.train import METRIC_NAMES, inspect_env

    spec = inspect_env(env, env_params) if spec is None else spec
    storage = runner.storage
    physical = getattr(storage, "physical", None) if storage is not None else None
    twin_storage = getattr(storage, "twin", None) if storage is not None else None
    out: dict[str, Any] = {
        "replay_physical_bytes": tree_bytes(physical) if physical is not None else tree_bytes(storage),
        # The shield's replay of vetoed transitions (DQN) is twin data too.
        "replay_twin_bytes": tree_bytes(twin_storage) + tree_bytes(getattr(storage, "vetoed", None)),
        "domain_states_bytes": tree_bytes(runner.domains),
        "agent_bytes": tree_bytes(runner.agent_state),
        "env_states_bytes": tree_bytes(runner.env_state) + tree_bytes(runner.obs),
        "metrics_bytes": config.num_intervals * len(METRIC_NAMES) * 4,
        "twin_step_bytes": _twin_step_bytes(config, env, env_params, spec, runner),
        "calibration_bytes": _calibration_bytes(config, env, env_params, runner),
    }
    per_seed = sum(out[k] for k in PARTS)
    out["per_seed_bytes"] = per_seed
    out["num_seeds"] = int(num_seeds)
    out["total_bytes"] = per_seed * int(num_seeds)
    twin = config.twin
    out["num_domains"] = twin.num_domains if twin is not None else 0
    out["buffer_size"] = getattr(config, "buffer_size", 0)
    out["twin_buffer_size"] = (
        int(jax.tree.leaves(twin_storage)[0].shape[1]) if twin_storage is not None else 0
    )
    return out


def describe(estimate: dict[str, Any]) -> str:
    """One line: the total and its non-zero parts, e.g. for a log or the CLI before compiling."""
    seeds = int(estimate.get("num_seeds", 1))
    parts = ", ".join(
        f"{k[:-6].replace('_', ' ')} {format_bytes(int(estimate[k]) * seeds)}" for k in PARTS if estimate.get(k)
    )
    per = f" ({seeds} seeds)" if seeds > 1 else ""
    return f"memory estimate{per}: {format_bytes(estimate['total_bytes'])} = {parts}"


def _cpu_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def device_memory_limit(device=None) -> tuple[int | None, str]:
    """``(bytes, source)``: the memory a run on ``device`` (default: JAX's first device) can use.

    Accelerators: ``device.memory_stats()['bytes_limit']``; CPU (or a backend without stats): total
    RAM from ``/proc/meminfo`` (``MemTotal``) or ``os.sysconf``. ``(None, reason)`` when unknown.
    """
    device = device if device is not None else jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # noqa: BLE001 - backends without stats
            stats = {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"{device.platform} memory_stats()['bytes_limit'] of {device}"
    total = _cpu_total_bytes()
    if total is None:
        return None, "unknown (no memory_stats, /proc/meminfo or sysconf)"
    return total, "host RAM (MemTotal)"


def check_fits(estimate: dict[str, Any], device=None, fraction: float = 0.9) -> dict[str, Any]:
    """Raise ``ValueError`` when ``estimate['total_bytes']`` exceeds ``fraction`` of the device's memory.

    Args:
      estimate: the dict of :func:`estimate_memory`.
      device: a ``jax.Device`` (default: ``jax.devices()[0]``).
      fraction: share of the device's memory the run may use, in (0, 1].
    Returns:
      ``{"total_bytes", "limit_bytes", "allowed_bytes", "fraction", "source", "fits"}`` when it fits
      (or when the limit is unknown: ``fits`` is then None).
    Raises:
      ValueError: naming the estimate, its largest parts and the limit.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"check_fits: fraction={fraction} must be in (0, 1]")
    total = int(estimate["total_bytes"])
    limit, source = device_memory_limit(device)
    info = {"total_bytes": total, "limit_bytes": limit, "fraction": float(fraction), "source": source}
    if limit is None:
        info.update(allowed_bytes=None, fits=None)
        return info
    allowed = int(limit * fraction)
    info.update(allowed_bytes=allowed, fits=total <= allowed)
    if total > allowed:
        seeds = estimate.get("num_seeds", 1)
        parts = sorted(((k, int(estimate.get(k, 0)) * seeds) for k in PARTS), key=lambda kv: -kv[1])
        listed = ", ".join(f"{k[:-6]}={v} B ({format_bytes(v)})" for k, v in parts[:3] if v)
        raise ValueError(
            f"the run needs an estimated {total} bytes ({format_bytes(total)}) but {fraction:.0%} of "
            f"{source} is {allowed} bytes ({format_bytes(allowed)}; limit {limit} bytes); largest parts: "
            f"{listed}; num_seeds={seeds}, buffer_size={estimate.get('buffer_size')}, "
            f"num_domains={estimate.get('num_domains')}, twin buffer per domain="
            f"{estimate.get('twin_buffer_size')}. Reduce buffer_size / twin_buffer_size, num_domains or "
            "the number of vmapped seeds"
        )
    return info

"""Calibrate the twin from physical data: fit continuous ``EnvParams`` fields to observed transitions.

The twin's environment is a pure JAX function, so its continuous parameters (rates, radii, speeds,
masses, ...) can be fitted to what the physical system did. Input is a batch of physical transitions
``(s_t, a_t, o_{t+1}, r_t)`` (:class:`PhysicalBatch`). Storing the *state* ``s_t`` is legitimate in
the DT loop: the identical digital domain mirrors the physical state every step, so the twin knows
``s_t``; only the parameters that map ``(s_t, a_t)`` to ``(o_{t+1}, r_t)`` are unknown.

**Loss** (:func:`twin_error`). For every transition the twin draws ``num_samples`` one-step
predictions ``env.step_env(k, s_t, a_t, twin_params)`` (no auto-reset; ``o_{t+1}`` is the observation
of the stepped state, gymnax's ``info["final_observation"]``). Each prediction's features are the
flattened observation and the reward. The loss is the mean over transitions and features of the
CRPS (continuous ranked probability score) of the sample against the observed feature,
``E|X - y| - E|X - X'| / 2``, divided by the feature's standard deviation over the batch (so metres,
Hz and rewards combine; a constant feature is scaled by ``max(|mean|, 1)``). The CRPS is a strictly
proper score: in expectation it is smallest when the twin's predictive distribution equals the
physical one, so noise scales (a user's random-walk speed) are identified as well as means, and for a
deterministic env it is the mean absolute error (0 for the exact parameters). For a stochastic env its
floor at the true parameters is half the twin's own spread, not 0. It needs no knowledge of the true
parameters, hence ``twin_error`` is the metric of a twin's quality on physical data.

The twin's noise is reparameterised the gymnax way: the step's randomness is a fixed key per
(transition, sample) for a whole calibration (common random numbers, a sample-average
approximation), so the loss is a deterministic function of the parameters and candidates are
compared on the same noise.

**Coordinates and bounds.** Every entry of every calibrated field gets a unit coordinate
``w in [0, 1]`` between per-field bounds ``(low, high)``. Positive bounds are log-spaced
(``value = exp(log low + w (log high - log low))``), so 1e6 Hz and 0.5 m get the same resolution;
negative bounds likewise on the magnitude; bounds containing 0 are linear. Default bounds
(``CalibrationConfig.bounds`` omitted for a field): a multiplicative range ``[v / range_factor,
v * range_factor]`` around the prior value ``v`` of each entry (``range_factor = 10``: covers every
``perturb_params`` draw up to std 0.5, whose floored scale lies in [0.1, ~2.5]). A prior entry equal
to 0 has no multiplicative range: give explicit bounds (checked when the prior is concrete; a traced
zero stays at 0).

**Two optimisers** (``CalibrationConfig.method``):

* ``"gradient"``: Adam (optax) on ``z = logit(w)``. The gradient is ``jax.grad`` of the loss when the
  env supports gymnax's ``with_transition_gradients()`` (Pendulum, MountainCarContinuous, ...).
  gymnax's CartPole and our three network envs wrap their next observation and state in
  ``stop_gradient``, so ``jax.grad`` through their step would return only the reward's share (zero for
  CartPole) - silently wrong. For them the gradient is a central difference in ``z`` of the same
  deterministic (fixed-noise) loss, one vmapped batch of ``2 D + 1`` loss evaluations per step
  (``D`` = number of calibrated entries): exact up to ``O(h^2)`` for smooth steps.
* ``"cem"``: the cross-entropy method, gradient-free, for steps that are not differentiable in the
  fields (a discrete index observation, success / failure thresholds): a diagonal Gaussian over ``w``;
  each generation ``population`` candidates (clipped to [0, 1]) are evaluated in one ``vmap``, the
  best ``elite_fraction`` refit the mean and standard deviation.

Both return the best candidate seen. Everything is pure and jittable (``lax.scan`` over iterations,
``vmap`` over samples, transitions and candidates); ``jax.vmap`` over keys calibrates several seeds
(or domains) in one program.

**Calibratable fields.** Any traced (``pytree_node=True``) floating-point field; static fields and
integer fields (``max_steps_in_episode``, ``user_seed``) are rejected with a ``ValueError`` listing
the calibratable ones. Which of them one-step data *identify*:

=========================  ==================================================================  ==========================
env                        identified by ``(s, a, o', r)``                                       not identified / confounded
=========================  ==================================================================  ==========================
AccessPointSelection-v0    ``ap_rate_mbps``, ``ap_cost`` (reward on success), small-cell         macro cell's position and
(index or features obs)    ``ap_position_m`` / ``ap_radius_m`` (coverage edges: waiting time,    radius (it covers the whole
                           failures), ``step_s`` (next position), reward weights; method: cem   road: edges unobservable);
                           (index obs and success thresholds are not differentiable)            ``task_size_mbit`` only as
                                                                                                size / rate; ``speed_*``
                                                                                                only act at reset / bins
MultiUAV-v0 / Partial      ``bandwidth_hz`` (rate scale and SNR), ``uav_speed_mps`` x             ``tx_power_w``,
                           ``slot_duration_s`` (UAV displacement), ``user_speed_std_mps``        ``carrier_hz``,
                           (spread of user steps, via the proper score), ``uav_height_m``,      ``noise_psd_dbm_hz``: only
                           ``area_size_m`` (observation scale, clipping); gradient or cem       ``p / (f^2 N0)`` enters the
                                                                                                SNR; ``hangar_*`` and
                                                                                                ``observe_radius_m`` (reset
                                                                                                / masks only)
EdgeTaskScheduling-v0      ``rate_mbps``, ``frequency_ghz`` (completion times, linear in        ``size_*``, ``complexity_*``,
                           1 / R and 1 / f), ``zeta`` (per missed deadline); the reward is       ``deadline_*`` and
                           the only signal (index obs); gradient for rate / frequency, cem      ``task_seed``: they only draw
                           with ``zeta``                                                         the task set at reset
CartPole-v1 (gymnax)       ``length``, ``masspole``, ``masscart``, ``force_mag``, ``gravity``    ``total_mass`` and
                           (with ``derive=cartpole_derive`` keeping ``total_mass`` and            ``polemass_length`` are
                           ``polemass_length`` consistent); gradient                           derived, not free
=========================  ==================================================================  ==========================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from dtrl_jax._checks import is_concrete

__all__ = [
    "CalibrationConfig",
    "CalibrationResult",
    "PhysicalBatch",
    "calibratable_fields",
    "calibrate",
    "cartpole_derive",
    "check_config",
    "collect_transitions",
    "param_error",
    "twin_error",
]

METHODS = ("gradient", "cem")


@struct.dataclass
class PhysicalBatch:
    """A batch of ``N`` physical transitions (every leaf has a leading ``[N]`` axis).

    Attributes:
      state: the env state ``s_t`` before the step (from the identical domain, see the module docstring).
      action: ``[N]`` actions ``a_t``.
      next_obs: observation ``o_{t+1}`` of the stepped state before any auto-reset.
      reward: ``[N]`` float rewards ``r_t``.
      weight: ``[N]`` float weights (1 = use, 0 = padding, e.g. an unfilled ring buffer slot).
      done: optional ``[N]`` bool, the step ended the episode (bookkeeping only; the loss compares the
        pre-reset observation either way).
    """

    state: Any
    action: jax.Array
    next_obs: Any
    reward: jax.Array
    weight: jax.Array
    done: Any = None


def _validate_range_factor(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 1):
        raise ValueError(f"CalibrationConfig.range_factor={value!r}: expected a finite number > 1")


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """What to calibrate and how (frozen, hashable: usable as a static argument).

    Attributes:
      fields: non-empty tuple of ``EnvParams`` field names to fit (traced float fields).
      bounds: ``{field: (low, high)}`` (or a tuple of ``(field, low, high)``) scalar bounds applied to
        every entry of the field, ``low < high``, finite; fields not listed get the default
        multiplicative range (module docstring).
      range_factor: default bounds ``[v / range_factor, v * range_factor]``; > 1. Default 10.
      method: ``"gradient"`` (Adam on logit coordinates; autodiff or central differences) or ``"cem"``.
      num_samples: twin samples per transition (>= 1); > 1 lets the score see stochastic steps. Default 4.
      steps: gradient steps (``"gradient"``) or generations (``"cem"``); >= 1.
      learning_rate: Adam step size on the logit coordinates (``"gradient"``); > 0.
      fd_step: central-difference step in logit coordinates (``"gradient"`` without autodiff); > 0.
      population: CEM candidates per generation; >= 2.
      elite_fraction: share of candidates that refit the CEM distribution; in (0, 1].
      init_std: initial CEM standard deviation of every unit coordinate; > 0.
      min_std: floor of the CEM standard deviation (keeps it from collapsing early); >= 0.
      derive: optional ``params -> params`` applied after the fields are set, to keep derived fields
        consistent (e.g. :func:`cartpole_derive`).
    """

    fields: tuple[str, ...]
    bounds: Any = ()
    range_factor: float = 10.0
    method: str = "gradient"
    num_samples: int = 4
    steps: int = 200
    learning_rate: float = 0.05
    fd_step: float = 1e-2
    population: int = 64
    elite_fraction: float = 0.125
    init_std: float = 0.3
    min_std: float = 0.01
    derive: Callable[[Any], Any] | None = None

    def __post_init__(self):
        fields = self.fields
        if isinstance(fields, str):
            fields = (fields,)
        if not isinstance(fields, Sequence) or not fields or not all(isinstance(f, str) for f in fields):
            raise ValueError(f"CalibrationConfig.fields={self.fields!r}: expected a non-empty tuple of field names")
        if len(set(fields)) != len(fields):
            raise ValueError(f"CalibrationConfig.fields={self.fields!r}: duplicate names")
        object.__setattr__(self, "fields", tuple(fields))
        bounds = self.bounds
        items = bounds.items() if isinstance(bounds, Mapping) else [(b[0], b[1:]) for b in bounds]
        norm = []
        for name, lh in items:
            if name not in self.fields:
                raise ValueError(f"CalibrationConfig.bounds: field {name!r} is not in fields={self.fields}")
            try:
                low, high = (float(x) for x in lh)
            except (TypeError, ValueError) as err:
                raise ValueError(f"CalibrationConfig.bounds[{name!r}]={lh!r}: expected (low, high) numbers") from err
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"CalibrationConfig.bounds[{name!r}]=({low}, {high}): expected finite low < high")
            norm.append((name, low, high))
        object.__setattr__(self, "bounds", tuple(sorted(norm)))
        _validate_range_factor(self.range_factor)
        if self.method not in METHODS:
            raise ValueError(f"CalibrationConfig.method={self.method!r}: expected one of {list(METHODS)}")
        for name, low in (("num_samples", 1), ("steps", 1), ("population", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"CalibrationConfig.{name}={v!r}: expected an int >= {low}")
        for name in ("learning_rate", "fd_step", "init_std"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"CalibrationConfig.{name}={v!r}: expected a finite number > 0")
        if not (isinstance(self.min_std, (int, float)) and 0 <= self.min_std < math.inf):
            raise ValueError(f"CalibrationConfig.min_std={self.min_std!r}: expected a finite number >= 0")
        if not (isinstance(self.elite_fraction, (int, float)) and 0 < self.elite_fraction <= 1):
            raise ValueError(f"CalibrationConfig.elite_fraction={self.elite_fraction!r}: expected a number in (0, 1]")
        if self.derive is not None and not callable(self.derive):
            raise ValueError(f"CalibrationConfig.derive={self.derive!r}: expected a callable or None")

    @property
    def num_elites(self) -> int:
        return max(1, int(round(self.elite_fraction * self.population)))


@struct.dataclass
class CalibrationResult:
    """Outcome of :func:`calibrate`.

    Attributes:
      params: the calibrated ``EnvParams`` (best loss seen).
      loss: float32 scalar, :func:`twin_error` of ``params`` on the batch (same noise as the fit).
      initial_loss: float32 scalar, the same at the starting params.
      history: ``[steps]`` best loss so far after each step / generation.
    """

    params: Any
    loss: jax.Array
    initial_loss: jax.Array
    history: jax.Array


def cartpole_derive(params):
    """gymnax CartPole: recompute the derived ``total_mass`` and ``polemass_length`` from their parts."""
    return params.replace(total_mass=params.masscart + params.masspole,
                          polemass_length=params.masspole * params.length)


def calibratable_fields(params) -> list[str]:
    """Names of the traced floating-point fields of ``params`` (those :func:`calibrate` accepts)."""
    out = []
    for name, f in params.__dataclass_fields__.items():
        if not f.metadata.get("pytree_node", True):
            continue
        value = getattr(params, name)
        if isinstance(value, (bool, np.bool_)):
            continue
        if jnp.issubdtype(jnp.result_type(value), jnp.floating):
            out.append(name)
    return sorted(out)


def _check_fields(params, fields: Sequence[str]) -> None:
    allowed = calibratable_fields(params)
    known = params.__dataclass_fields__
    for name in fields:
        if name in allowed:
            continue
        if name not in known:
            why = "is not a field of " + type(params).__name__
        elif not known[name].metadata.get("pytree_node", True):
            why = "is static (pytree_node=False)"
        else:
            why = f"is not a float field (dtype {jnp.result_type(getattr(params, name))})"
        raise ValueError(f"calibrate: field {name!r} {why}; calibratable fields: {allowed}")


def check_config(params, config: CalibrationConfig) -> None:
    """Raise ``ValueError`` if ``config`` cannot calibrate ``params`` (what :func:`calibrate` checks
    before tracing): an unknown, static or non-float field (the message lists the calibratable ones),
    or a zero prior entry without explicit bounds. ``params`` may be a ``[num_domains]`` stack."""
    _check_fields(params, config.fields)
    _coordinates(params, config)


# ----------------------------------------------------------------------------- coordinates


def _coordinates(params, config: CalibrationConfig, start=None):
    """Per field: (log, sign, a, b) arrays with value = sign*exp(a + w(b-a)) or a + w(b-a); and w0."""
    explicit = {name: (low, high) for name, low, high in config.bounds}
    spec, w0 = [], []
    start = params if start is None else start
    for name in config.fields:
        prior = jnp.asarray(getattr(params, name), jnp.float32)
        init = jnp.asarray(getattr(start, name), jnp.float32)
        if name in explicit:
            low, high = explicit[name]
            if low > 0 or high < 0:
                sign = 1.0 if low > 0 else -1.0
                a, b = math.log(min(abs(low), abs(high))), math.log(max(abs(low), abs(high)))
                a, b = jnp.full(prior.shape, a), jnp.full(prior.shape, b)
                sign = jnp.full(prior.shape, sign)
                log = True
            else:
                a, b, sign, log = jnp.full(prior.shape, low), jnp.full(prior.shape, high), None, False
        else:
            if is_concrete(getattr(params, name)) and np.any(np.asarray(getattr(params, name)) == 0):
                raise ValueError(f"calibrate: field {name!r} has a zero entry in the prior params, so it has no "
                                 f"multiplicative default range; give CalibrationConfig.bounds[{name!r}]=(low, high)")
            mag = jnp.where(prior == 0, 1.0, jnp.abs(prior))
            f = math.log(config.range_factor)
            a, b, sign, log = jnp.log(mag) - f, jnp.log(mag) + f, jnp.sign(prior), True
        if log:
            lm = jnp.log(jnp.where(init == 0, 1.0, jnp.abs(init)))
            w = (lm - a) / (b - a)
        else:
            w = (init - a) / (b - a)
        spec.append((name, log, sign, a, b, prior.shape))
        w0.append(jnp.clip(w, 0.0, 1.0).reshape(-1))
    return spec, jnp.concatenate(w0)


def _apply(params, spec, w, derive):
    """``params`` with the calibrated fields set from the flat unit coordinates ``w``."""
    out, i = {}, 0
    for name, log, sign, a, b, shape in spec:
        n = int(np.prod(shape))
        wi = w[i:i + n].reshape(shape)
        i += n
        u = a + wi * (b - a)
        value = sign * jnp.exp(u) if log else u
        old = getattr(params, name)
        out[name] = value.astype(jnp.result_type(old)) if hasattr(old, "dtype") else value
    params = params.replace(**out)
    return params if derive is None else derive(params)


# ------------------------------------------------------------------------------------- loss


def _features(obs, reward) -> jax.Array:
    """``[..., F]`` float32 features: flattened observation leaves and the reward (leading axes kept)."""
    lead = jnp.shape(reward)
    leaves = [jnp.asarray(x, jnp.float32).reshape(*lead, -1) for x in jax.tree.leaves(obs)]
    return jnp.concatenate([*leaves, jnp.asarray(reward, jnp.float32).reshape(*lead, 1)], axis=-1)


def _scale(y: jax.Array, weight: jax.Array) -> jax.Array:
    """Per-feature weighted standard deviation over the batch; ``max(|mean|, 1)`` where it is 0."""
    wsum = jnp.maximum(jnp.sum(weight), 1e-12)
    mean = jnp.sum(weight[:, None] * y, 0) / wsum
    std = jnp.sqrt(jnp.sum(weight[:, None] * (y - mean) ** 2, 0) / wsum)
    return jnp.where(std > 1e-6 * jnp.maximum(jnp.abs(mean), 1.0), std, jnp.maximum(jnp.abs(mean), 1.0))


def _sample_keys(key: jax.Array, n: int, k: int) -> jax.Array:
    return jax.random.split(key, n * k).reshape(n, k, *jax.random.split(key, 1).shape[1:])


def _score(env, params, batch: PhysicalBatch, keys: jax.Array) -> jax.Array:
    """Weighted mean over transitions and features of the scaled CRPS of the twin's samples."""
    def one(k, s, a):
        obs, _, r, _, _ = env.step_env(k, s, a, params)
        return _features(obs, r)

    pred = jax.vmap(lambda ks, s, a: jax.vmap(lambda k: one(k, s, a))(ks))(keys, batch.state, batch.action)  # [N,K,F]
    y = _features(batch.next_obs, batch.reward)  # [N, F]
    scale = _scale(y, batch.weight)
    k = pred.shape[1]
    term1 = jnp.mean(jnp.abs(pred - y[:, None, :]), axis=1)
    if k > 1:
        spread = jnp.abs(pred[:, :, None, :] - pred[:, None, :, :])
        term2 = jnp.sum(spread, axis=(1, 2)) / (k * (k - 1))
    else:
        term2 = jnp.zeros_like(term1)
    crps = jnp.mean((term1 - 0.5 * term2) / scale, axis=-1)  # [N]
    wsum = jnp.maximum(jnp.sum(batch.weight), 1e-12)
    return (jnp.sum(batch.weight * crps) / wsum).astype(jnp.float32)


def _check_batch(batch) -> None:
    if not isinstance(batch, PhysicalBatch):
        raise TypeError(f"expected a PhysicalBatch, got {type(batch).__name__}")


def twin_error(env, params, batch: PhysicalBatch, key: jax.Array, num_samples: int = 4) -> jax.Array:
    """Mean one-step prediction error of the twin ``(env, params)`` on physical transitions.

    The scaled CRPS of the module docstring (mean absolute error in units of each feature's batch
    standard deviation for a deterministic env), float32 scalar. Observable without the true
    parameters. ``num_samples`` twin samples per transition, noise drawn from ``key``.
    """
    _check_batch(batch)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"twin_error: num_samples={num_samples!r}; expected an int >= 1")
    n = jnp.shape(batch.reward)[0]
    return _score(env, params, batch, _sample_keys(key, n, num_samples))


def param_error(params, true_params, fields: Sequence[str]) -> jax.Array:
    """Mean absolute log-ratio ``|log(twin / true)|`` over every entry of ``fields`` (0 = exact)."""
    errs = [jnp.abs(jnp.log(jnp.abs(jnp.asarray(getattr(params, f), jnp.float32))
                            / jnp.abs(jnp.asarray(getattr(true_params, f), jnp.float32)))).reshape(-1)
            for f in fields]
    return jnp.mean(jnp.concatenate(errs))


# ------------------------------------------------------------------------------- optimisers


def calibrate(env, params, batch: PhysicalBatch, key: jax.Array, config: CalibrationConfig,
              start=None) -> CalibrationResult:
    """Fit ``config.fields`` of the twin's ``params`` to the physical ``batch``.

    Args:
      env: the twin's gymnax environment (the physical one's code).
      params: the prior twin ``EnvParams`` (default bounds are a range around its values).
      batch: the physical transitions.
      key: PRNG key of the twin's sample noise and of CEM's candidates (not consumed: pass a fresh
        one per call).
      config: :class:`CalibrationConfig`.
      start: optional params to start from (default ``params``), e.g. the last calibration's result.

    Returns:
      :class:`CalibrationResult`. Pure and jittable; ``jax.vmap`` over ``key`` (or ``params``) works.

    Raises:
      ValueError: a field that is unknown, static or not floating point (the message lists the
        calibratable fields), or a zero prior entry without explicit bounds.
    """
    _check_batch(batch)
    if not isinstance(config, CalibrationConfig):
        raise TypeError(f"calibrate: config must be a CalibrationConfig, got {type(config).__name__}")
    _check_fields(params, config.fields)
    spec, w0 = _coordinates(params, config, start)
    n = jnp.shape(batch.reward)[0]
    k_noise, k_cem = jax.random.split(key)
    keys = _sample_keys(k_noise, n, config.num_samples)
    base = params if start is None else start

    autodiff = config.method == "gradient" and getattr(env, "supports_transition_gradients", False)
    step_env = env.with_transition_gradients() if autodiff else env

    def loss_w(w):
        return _score(step_env, _apply(base, spec, w, config.derive), batch, keys)

    initial = loss_w(w0)
    if config.method == "gradient":
        w_best, best, hist = _fit_gradient(loss_w, w0, config, autodiff)
    else:
        w_best, best, hist = _fit_cem(loss_w, w0, initial, config, k_cem)
    take = best < initial
    w_final = jnp.where(take, w_best, w0)
    return CalibrationResult(params=_apply(base, spec, w_final, config.derive), loss=jnp.minimum(best, initial),
                             initial_loss=initial, history=hist)


def _fit_gradient(loss_w, w0, config: CalibrationConfig, autodiff: bool):
    eps = 1e-4
    z0 = jnp.log(jnp.clip(w0, eps, 1 - eps)) - jnp.log1p(-jnp.clip(w0, eps, 1 - eps))

    def loss_z(z):
        return loss_w(jax.nn.sigmoid(z))

    d = z0.shape[0]
    h = config.fd_step

    def value_and_grad(z):
        if autodiff:
            return jax.value_and_grad(loss_z)(z)
        # Central differences of the fixed-noise loss: 2 D + 1 evaluations in one vmap.
        dirs = jnp.concatenate([jnp.zeros((1, d)), h * jnp.eye(d), -h * jnp.eye(d)])
        vals = jax.vmap(lambda dz: loss_z(z + dz))(dirs)
        return vals[0], (vals[1:d + 1] - vals[d + 1:]) / (2 * h)

    opt = optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps))
    state0 = (z0, opt.init(z0), z0, jnp.asarray(jnp.inf, jnp.float32))

    def body(carry, _):
        z, ost, zb, lb = carry
        val, g = value_and_grad(z)
        better = val < lb
        zb, lb = jnp.where(better, z, zb), jnp.where(better, val, lb)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        upd, ost = opt.update(g, ost, z)
        return (optax.apply_updates(z, upd), ost, zb, lb), lb

    (z, _, zb, lb), hist = jax.lax.scan(body, state0, None, length=config.steps)
    last = loss_z(z)
    zb, lb = jnp.where(last < lb, z, zb), jnp.minimum(last, lb)
    return jax.nn.sigmoid(zb), lb, hist


def _fit_cem(loss_w, w0, initial, config: CalibrationConfig, key):
    d = w0.shape[0]
    p, e = config.population, config.num_elites
    state0 = (w0, jnp.full((d,), config.init_std, jnp.float32), w0, initial)

    def body(carry, k):
        mu, sd, wb, lb = carry
        cand = jnp.clip(mu + sd * jax.random.normal(k, (p, d)), 0.0, 1.0)
        cand = cand.at[0].set(mu)
        losses = jax.vmap(loss_w)(cand)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        _, idx = jax.lax.top_k(-losses, e)
        elite = cand[idx]
        mu = jnp.mean(elite, 0)
        sd = jnp.maximum(jnp.std(elite, 0), config.min_std)
        i = idx[0]
        better = losses[i] < lb
        wb, lb = jnp.where(better, cand[i], wb), jnp.where(better, losses[i], lb)
        return (mu, sd, wb, lb), lb

    (_, _, wb, lb), hist = jax.lax.scan(body, state0, jax.random.split(key, config.steps))
    return wb, lb, hist


# ------------------------------------------------------------------------------ data collection


def collect_transitions(key: jax.Array, env, params, num_steps: int, num_envs: int = 1) -> PhysicalBatch:
    """``num_steps * num_envs`` physical transitions under uniformly random actions (auto-resetting).

    The data-collection phase of an offline calibration: ``num_envs`` environments run
    ``num_steps`` steps each; ``next_obs`` is gymnax's ``info["final_observation"]`` (the stepped
    state's observation before any auto-reset). Costs ``num_steps * num_envs`` physical steps.
    """
    for name, v in (("num_steps", num_steps), ("num_envs", num_envs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"collect_transitions: {name}={v!r}; expected an int >= 1")
    k_reset, k_run = jax.random.split(key)
    _, states = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(k_reset, num_envs))
    n_actions = env.action_space(params).n

    def body(states, k):
        ka, ks = jax.random.split(k)
        actions = jax.random.randint(ka, (num_envs,), 0, n_actions)
        _, nxt, r, _, _, info = jax.vmap(lambda kk, s, a: env.step(kk, s, a, params))(
            jax.random.split(ks, num_envs), states, actions)
        done = jnp.logical_or(info["terminated"], info["truncated"])
        return nxt, (states, actions, info["final_observation"], r, done)

    _, (s, a, o, r, d) = jax.lax.scan(body, states, jax.random.split(k_run, num_steps))
    flat = lambda x: x.reshape(num_steps * num_envs, *x.shape[2:])  # noqa: E731
    return PhysicalBatch(state=jax.tree.map(flat, s), action=flat(a), next_obs=jax.tree.map(flat, o),
                         reward=flat(r).astype(jnp.float32), weight=jnp.ones((num_steps * num_envs,), jnp.float32), done=flat(d))

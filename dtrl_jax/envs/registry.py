"""Environment registry behind ``dtrl_jax.make``, shared with gymnax's own registry.

Each environment module registers a factory ``factory(**overrides) -> (env, params)``. Overrides are
``EnvParams`` field names (validated by the module's own ``validate_params``) or, where a module
documents one, a constructor keyword such as ``observation="features"``.

Three things keep the registry cheap and interoperable:

* **Lazy built-ins.** The built-in ids are listed here with their module and description, so
  ``registered_envs()`` (and ``dtrl envs``) answers without importing JAX; the module is imported
  the first time its id is made.
* **gymnax ids.** ``make("CartPole-v1")`` falls back to ``gymnax.make`` for any id that is not ours;
  overrides then replace fields of the gymnax ``EnvParams``.
* **Our ids in gymnax.** Every id here (built-in or added with :func:`register`) is also registered
  with gymnax's registry (``gymnax.register``, gymnax >= 1.0), so code written against gymnax
  (PureJaxRL, rejax, ``gymnax.wrappers.GymnaxToGymWrapper`` for SB3/CleanRL) can
  ``gymnax.make("AccessPointSelection-v0")``. This happens once gymnax is imported *and* dtrl_jax is:
  in whichever order (an import hook registers them the moment gymnax finishes importing).
  ``gymnax.make(id, **overrides)`` returns an env whose ``default_params`` carry the overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

# id -> (module that registers it on import, one-line description). The description must equal the
# one the module registers (tests/test_daily_use.py checks it).
_BUILTINS: dict[str, tuple[str, str]] = {
    "AccessPointSelection-v0": (
        "dtrl_jax.envs.access_point",
        "URLLC access-point selection for a vehicle on a straight road (paper case 1): 5 APs, discrete index or "
        "feature obs",
    ),
    "EdgeTaskScheduling-v0": (
        "dtrl_jax.envs.edge_scheduling",
        "Order N (2..8) tasks offloaded to a 10 GHz edge server; action = whole order (N! actions), cost = sum of "
        "completion times + zeta per missed deadline (companion paper).",
    ),
    "MultiUAV-v0": (
        "dtrl_jax.envs.multi_uav",
        "4 UAVs fly from a hangar to serve 10 random-walking users (Friis/OFDM); reward = mean rate, Mbps",
    ),
    "MultiUAVPartial-v0": (
        "dtrl_jax.envs.multi_uav",
        "MultiUAV-v0 where each UAV senses only users within observe_radius_m; global obs via the twin",
    ),
}

_REGISTRY: dict[str, tuple[Callable[..., tuple[Any, Any]], str]] = {}


def register(env_id: str, factory: Callable[..., tuple[Any, Any]], description: str) -> None:
    """Register ``factory`` under ``env_id`` with a one-line ``description`` (also with gymnax)."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env_id={env_id!r}: expected a non-empty string")
    if not callable(factory):
        raise TypeError(f"factory for {env_id!r} must be callable, got {type(factory).__name__}")
    if env_id in _REGISTRY:
        raise ValueError(f"environment id {env_id!r} is already registered")
    _REGISTRY[env_id] = (factory, description)
    if "gymnax" in sys.modules:
        _register_with_gymnax(env_id)


def unregister(env_id: str) -> None:
    """Remove an id added with :func:`register` (tests, notebooks re-run); built-ins stay listed."""
    _REGISTRY.pop(env_id, None)
    if env_id not in _BUILTINS and "gymnax" in sys.modules:
        from gymnax import registration

        registration._registry.pop(env_id, None)  # gymnax has no public unregister
        if env_id in registration.registered_envs:
            registration.registered_envs.remove(env_id)


def registered_envs() -> dict[str, str]:
    """Map of every dtrl_jax id (built-in and registered) to its one-line description, sorted by id.

    Does not import any environment module (nor JAX).
    """
    out = {k: d for k, (_, d) in _BUILTINS.items()}
    out.update({k: d for k, (_, d) in _REGISTRY.items()})
    return dict(sorted(out.items()))


def _load(env_id: str) -> None:
    if env_id not in _REGISTRY and env_id in _BUILTINS:
        importlib.import_module(_BUILTINS[env_id][0])  # registers the id


def did_you_mean(word: str, options) -> str:
    """``" (did you mean 'X'?)"`` for the closest of ``options``, or ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def make(env_id: str, **overrides: Any) -> tuple[Any, Any]:
    """Build an environment and its validated parameters: a dtrl_jax id, else any gymnax id.

    Args:
      env_id: a dtrl_jax id, e.g. ``"AccessPointSelection-v0"`` (see ``registered_envs()``), or a gymnax id
        such as ``"CartPole-v1"`` (``gymnax.registered_envs``).
      **overrides: ``EnvParams`` fields to change from their documented defaults.

    Returns:
      ``(env, params)``, a gymnax-1.x ``Environment`` and its ``EnvParams``.

    Raises:
      ValueError: unknown id (the message names the closest known id), unknown field, or a field out of range.
    """
    _load(env_id)
    if env_id in _REGISTRY:
        factory, _ = _REGISTRY[env_id]
        return factory(**overrides)
    import gymnax

    if env_id not in gymnax.registered_envs:
        known = list(registered_envs()) + list(gymnax.registered_envs)
        raise ValueError(
            f"unknown environment id {env_id!r}{did_you_mean(env_id, known)}; dtrl_jax ids: "
            f"{sorted(registered_envs())}, or any gymnax id such as 'CartPole-v1' (`dtrl envs --gymnax`)"
        )
    env, params = gymnax.make(env_id)
    if overrides:
        names = {f.name for f in dataclasses.fields(params)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown {type(params).__name__} field(s) {unknown}; allowed: {sorted(names)}")
        params = params.replace(**overrides)
    return env, params


def build_params(params_cls: type, overrides: dict[str, Any], validate: Callable[[Any], None]):
    """Defaults of ``params_cls`` with ``overrides`` applied, validated; unknown names raise ValueError."""
    names = {f.name for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown {params_cls.__name__} field(s) {unknown}; allowed fields: {sorted(names)}"
        )
    params = params_cls(**overrides)
    validate(params)
    return params


# ------------------------------------------------------------------------------------------- gymnax
class WithDefaultParams:
    """An environment whose ``default_params`` are given ones (what ``gymnax.make(id, **overrides)``
    returns for our ids); every other attribute is the wrapped environment's."""

    def __init__(self, env, params):
        self._env, self._params = env, params

    @property
    def default_params(self):
        return self._params

    def __getattr__(self, name):
        return getattr(self._env, name)


def _gymnax_factory(env_id: str):
    def factory(**overrides):
        env, params = make(env_id, **overrides)
        return WithDefaultParams(env, params) if overrides else env

    return factory


def _register_with_gymnax(env_id: str) -> None:
    from gymnax import registration

    if env_id not in registration._registry:  # our ids only ever go in once
        registration.register(env_id, _gymnax_factory(env_id))


def register_all_with_gymnax() -> None:
    """Register every dtrl_jax id with gymnax (runs by itself once gymnax is imported)."""
    for env_id in registered_envs():
        _register_with_gymnax(env_id)


class _GymnaxHook(importlib.abc.MetaPathFinder):
    """Registers our ids with gymnax right after ``import gymnax`` completes (no cost until then)."""

    def find_spec(self, name, path=None, target=None):
        if name != "gymnax":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            register_all_with_gymnax()

        loader.exec_module = exec_and_register
        return spec


if "gymnax" in sys.modules:
    register_all_with_gymnax()
elif not any(isinstance(f, _GymnaxHook) for f in sys.meta_path):
    sys.meta_path.insert(0, _GymnaxHook())

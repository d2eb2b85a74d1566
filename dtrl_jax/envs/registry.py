"""Environment registry behind ``dtrl_jax.make``.

Each environment module registers a factory ``factory(**overrides) -> (env, params)``. Overrides are
``EnvParams`` field names (validated by the module's own ``validate_params``) or, where a module
documents one, a constructor keyword such as ``observation="features"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, tuple[Callable[..., tuple[Any, Any]], str]] = {}


def register(env_id: str, factory: Callable[..., tuple[Any, Any]], description: str) -> None:
    """Register ``factory`` under ``env_id`` with a one-line ``description``."""
    if env_id in _REGISTRY:
        raise ValueError(f"environment id {env_id!r} is already registered")
    _REGISTRY[env_id] = (factory, description)


def registered_envs() -> dict[str, str]:
    """Map of every registered id to its one-line description, sorted by id."""
    return {k: _REGISTRY[k][1] for k in sorted(_REGISTRY)}


def make(env_id: str, **overrides: Any) -> tuple[Any, Any]:
    """Build a registered environment and its validated parameters.

    Args:
      env_id: a registered id, e.g. ``"AccessPointSelection-v0"`` (see ``registered_envs()``).
      **overrides: ``EnvParams`` fields to change from their documented defaults.

    Returns:
      ``(env, params)``, a gymnax-1.x ``Environment`` and its ``EnvParams``.

    Raises:
      ValueError: unknown id (the message lists the known ids), unknown field, or a field out of range.
    """
    if env_id not in _REGISTRY:
        raise ValueError(f"unknown environment id {env_id!r}; known ids: {sorted(_REGISTRY)}")
    factory, _ = _REGISTRY[env_id]
    return factory(**overrides)


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

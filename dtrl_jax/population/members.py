"""Members of a population: an agent config with an observation view, hyper-parameter sweeps, and
the grouping of members into one compiled program per architecture (see ``dtrl_jax.population``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dtrl_jax.agents.networks import NETWORKS
from dtrl_jax.config import DQNConfig, QLearningConfig
from dtrl_jax.envs.wrappers import (
    EntityLayout,
    EntityObservation,
    ObservationHistory,
)
from dtrl_jax.twin.global_obs import GlobalObservation


@dataclasses.dataclass(frozen=True)
class Member:
    """One agent of a population.

    Attributes:
      name: unique within the population.
      config: ``DQNConfig`` or ``QLearningConfig`` (its ``network`` is the architecture).
      window: observation window ``W`` (>= 1); ``W > 1`` wraps the env in :class:`ObservationHistory`
        (what the ``'gru'`` network is for; any network accepts it).
      entities: optional :class:`EntityLayout`; wraps the env in :class:`EntityObservation` (what the
        ``'cnn'`` network is for). Not combinable with ``window > 1``.
    """

    name: str
    config: Any
    window: int = 1
    entities: EntityLayout | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Member.name={self.name!r}: expected a non-empty string")
        if not isinstance(self.config, (DQNConfig, QLearningConfig)):
            raise TypeError(f"Member {self.name!r}: config must be a DQNConfig or QLearningConfig, "
                            f"got {type(self.config).__name__}")
        network = getattr(self.config, "network", "mlp")
        if network not in NETWORKS:
            raise ValueError(f"Member {self.name!r}: unknown architecture {network!r}; expected one of {list(NETWORKS)}")
        if not isinstance(self.window, (int, np.integer)) or self.window < 1:
            raise ValueError(f"Member {self.name!r}: window={self.window!r}; expected an int >= 1")
        if self.entities is not None and not isinstance(self.entities, EntityLayout):
            raise TypeError(f"Member {self.name!r}: entities must be an EntityLayout or None")
        if self.entities is not None and self.window > 1:
            raise ValueError(f"Member {self.name!r}: entities and window > 1 cannot be combined")

    @property
    def architecture(self) -> tuple:
        """The group key: members with equal keys are trained by one vmap (one compilation)."""
        c = self.config
        return (type(c).__name__, getattr(c, "network", "table"), getattr(c, "hidden_sizes", ()),
                self.window, self.entities)

    def wrap_env(self, env, params):
        """``(env, params)`` in this member's observation view (window / entities), as ``make_train``
        receives them (``make_train`` itself adds the global observation when ``share_global_obs``)."""
        if self.window > 1:
            env = ObservationHistory(env, self.window)
        if self.entities is not None:
            env = EntityObservation(env, self.entities)
        return env, params

    def acting_env(self, env, params):
        """``(env, params)`` exactly as this member's agent acts on them after training (the global
        observation of a ready twin included)."""
        env, params = self.wrap_env(env, params)
        twin = self.config.twin
        if twin is not None and twin.share_global_obs:
            env = GlobalObservation(env)
            params = env.wrap_params(params)  # scale 1: the twin is ready at evaluation time
        return env, params


def sweep(prefix: str, config, *, window: int = 1, entities: EntityLayout | None = None,
          **values: Sequence[Any]) -> tuple[Member, ...]:
    """Members ``prefix-0 .. prefix-{n-1}`` from ``config`` with traced fields set per member.

    ``values`` maps field names to equal-length sequences (zipped, not crossed); a twin field is
    named ``twin__<field>`` (e.g. ``twin__state_noise_std=[0.0, 0.1]``). Example:
    ``sweep("lr", cfg, learning_rate=[1e-4, 1e-3])``.
    """
    lengths = {k: len(v) for k, v in values.items()}
    if not values or len(set(lengths.values())) != 1:
        raise ValueError(f"sweep needs at least one field and equal-length value lists, got lengths {lengths}")
    n = next(iter(lengths.values()))
    members = []
    for i in range(n):
        top = {k: v[i] for k, v in values.items() if not k.startswith("twin__")}
        twin = {k[len("twin__"):]: v[i] for k, v in values.items() if k.startswith("twin__")}
        cfg = config.replace(**top)
        if twin:
            if cfg.twin is None:
                raise ValueError(f"sweep: twin fields {sorted(twin)} given but config.twin is None")
            cfg = cfg.replace(twin=cfg.twin.replace(**twin))
        members.append(Member(f"{prefix}-{i}", cfg, window=window, entities=entities))
    return tuple(members)


def _static_differences(a, b, prefix: str) -> list[str]:
    """Names of static fields (recursing into the twin) where configs ``a`` and ``b`` differ."""
    if type(a) is not type(b):
        return [f"{prefix} ({type(a).__name__} vs {type(b).__name__})"]
    if a is None:
        return []
    out = []
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "twin":
            if (va is None) != (vb is None):
                out.append(f"{prefix}.twin (None vs TwinConfig)")
            elif va is not None:
                out += _static_differences(va, vb, f"{prefix}.twin")
        elif not f.metadata.get("pytree_node", True) and va != vb:
            out.append(f"{prefix}.{f.name} ({va!r} vs {vb!r})")
    return out


@dataclasses.dataclass(frozen=True)
class Population:
    """Validated members, split into groups of one architecture each (one compiled vmap per group).

    Raises:
      ValueError: no members, duplicate names, or two members of one group (same architecture)
        that differ in a static field (the message names the field and both members).
    """

    members: tuple[Member, ...]

    def __post_init__(self):
        members = tuple(self.members)
        object.__setattr__(self, "members", members)
        if not members:
            raise ValueError("Population needs at least one Member")
        for m in members:
            if not isinstance(m, Member):
                raise TypeError(f"Population members must be Member objects, got {type(m).__name__}")
        names = [m.name for m in members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Population member names must be unique; repeated: {dupes}")
        for idx in self.groups:
            first = members[idx[0]]
            for i in idx[1:]:
                diff = _static_differences(first.config, members[i].config, type(first.config).__name__)
                if diff:
                    raise ValueError(
                        f"members {first.name!r} and {members[i].name!r} share one vmapped group (architecture "
                        f"{first.architecture[1]!r}) but differ in static field(s) {', '.join(diff)}; static "
                        "fields fix shapes, so members vmapped together may differ only in traced fields"
                    )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    @property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        """Member indices per group, in order of first appearance."""
        keys: dict[tuple, list[int]] = {}
        for i, m in enumerate(self.members):
            keys.setdefault(m.architecture, []).append(i)
        return tuple(tuple(v) for v in keys.values())


def stack_configs(configs: Sequence[Any]) -> Any:
    """Stack configs that share their static fields into one config whose traced leaves are ``[P]``."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *configs)

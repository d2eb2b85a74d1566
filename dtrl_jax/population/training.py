"""Train a whole population: one ``jax.vmap`` over stacked configs per architecture group."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dtrl_jax.population.members import (
    Population,
    stack_configs,
)
from dtrl_jax.train import TrainResult, make_train


@dataclasses.dataclass(frozen=True)
class PopulationResult:
    """What :func:`train_population` returns.

    Attributes:
      population: the :class:`Population` trained.
      results: one ``TrainResult`` per group, leaves with a leading ``[group size]`` member axis.
    """

    population: Population
    results: tuple[TrainResult, ...]

    def locate(self, i: int) -> tuple[int, int]:
        """``(group, position in group)`` of member ``i``."""
        for g, idx in enumerate(self.population.groups):
            if i in idx:
                return g, idx.index(i)
        raise IndexError(f"no member {i}; the population has {len(self.population.members)}")

    def index(self, name: str) -> int:
        if name not in self.population.names:
            raise ValueError(f"no member named {name!r}; members: {list(self.population.names)}")
        return self.population.names.index(name)

    def agent_state(self, i: int):
        g, j = self.locate(i)
        return jax.tree.map(lambda x: x[j], self.results[g].runner_state.agent_state)

    def runner_state(self, i: int):
        g, j = self.locate(i)
        return jax.tree.map(lambda x: x[j], self.results[g].runner_state)

    def metrics(self, name: str) -> np.ndarray:
        """``[members, intervals]`` metric ``name`` in population order."""
        rows = [None] * len(self.population.members)
        for g, idx in enumerate(self.population.groups):
            arr = np.asarray(self.results[g].metrics[name])
            for j, i in enumerate(idx):  # same key for every group: common random numbers
                rows[i] = arr[j]
        return np.stack(rows)


def train_population(population: Population, env, env_params, key: jax.Array, *,
                     twin_params=None) -> PopulationResult:
    """Train every member: one jitted ``vmap`` (one compilation) per group.

    Member ``i`` uses ``jax.random.fold_in(key, i)``, so its run does not depend on how the
    population is grouped. ``twin_params`` (a ``[num_domains]`` stack of ``EnvParams``) goes to the
    members that have a twin.
    """
    if not isinstance(population, Population):
        raise TypeError(f"train_population needs a Population, got {type(population).__name__}")
    results = []
    for idx in population.groups:
        members = [population.members[i] for i in idx]
        wenv, wparams = members[0].wrap_env(env, env_params)
        tparams = twin_params if members[0].config.twin is not None else None
        if tparams is not None and members[0].config.twin.share_global_obs:
            raise ValueError("twin_params with share_global_obs is not supported by train_population")
        stacked = stack_configs([m.config for m in members])
        keys = jnp.stack([jax.random.fold_in(key, i) for i in idx])

        def one(cfg, k, wenv=wenv, wparams=wparams, tparams=tparams):
            return make_train(cfg, wenv, wparams, twin_params=tparams)(k)

        results.append(jax.jit(jax.vmap(one))(stacked, keys))
    return PopulationResult(population=population, results=tuple(results))

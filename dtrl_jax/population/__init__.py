"""Simultaneous training on differential twins: a population of agents, selection and distillation.

The paper's "Simultaneous Training on Differential Twins": agents with different hyper-parameters
and different network architectures train side by side; the best one is selected by its physical
return, or the whole population is distilled into one new agent. Built on ``make_train`` (never
underneath it)::

    import jax, dtrl_jax as dt
    from dtrl_jax import population as pop
    env, params = dt.make("MultiUAV-v0")
    base = dt.DQNConfig(total_timesteps=20_000, learning_starts=1_000, twin=dt.TwinConfig(
        num_domains=4, lookahead=4, lookahead_rollouts=4))
    members = (
        pop.sweep("mlp", base, learning_rate=[3e-4, 1e-3], gamma=[0.9, 0.99])      # 2 members
        + (pop.Member("cnn", base.replace(network="cnn", hidden_sizes=(16, 64)),
                      entities=pop.EntityLayout.multi_uav(params)),)
    )
    result = pop.train_population(pop.Population(members), env, params, jax.random.key(0))
    scores = pop.evaluate(result, env, params, episodes=8, key=jax.random.key(1))
    best = pop.select_best(result, scores)                 # best.name, best.agent_state
    student = pop.distill(result, env, params, jax.random.key(2), teachers=[best.index])
    pop.evaluate(student, env, params, episodes=8, key=jax.random.key(3))

How members are compiled. Members whose configs differ only in *traced* fields (learning rate,
gamma, epsilon schedule, tau, twin noise, ``ready_after``, build schedule, ...) form one *group*:
their configs are stacked leaf by leaf into one config pytree and trained by ONE
``jax.vmap(lambda cfg, key: make_train(cfg, ...)(key))``, i.e. one compilation. A group is keyed by
its architecture: agent type, ``network``, ``hidden_sizes`` and observation view (``window``,
``entities``); every other static field (buffer size, twin domains, ...) must agree inside a group,
else :class:`Population` raises ``ValueError`` naming the field. Each architecture compiles once.

Observation views. The loop carries no recurrent state, so the GRU sees a fixed window of the last
``W`` observations, provided by :class:`ObservationHistory` (``Member(window=W)``); the CNN sees
per-entity features ``[entities, features]`` provided by :class:`EntityObservation`
(``Member(entities=EntityLayout(...))``). Both are plain gymnax wrappers, so the twin (trials,
look-ahead, noise) runs on them unchanged.
"""

from __future__ import annotations

from dtrl_jax.envs.wrappers import (
    EntityLayout,
    EntityObservation,
    HistoryState,
    ObservationHistory,
)
from dtrl_jax.population.distill import distill
from dtrl_jax.population.evaluation import (
    Selection,
    Student,
    evaluate,
    greedy_returns,
    select_best,
)
from dtrl_jax.population.members import Member, Population, stack_configs, sweep
from dtrl_jax.population.scenarios import ScenarioTrainer
from dtrl_jax.population.training import PopulationResult, train_population

__all__ = [
    "EntityLayout",
    "EntityObservation",
    "HistoryState",
    "ObservationHistory",
    "Member",
    "sweep",
    "Population",
    "stack_configs",
    "PopulationResult",
    "train_population",
    "Student",
    "greedy_returns",
    "evaluate",
    "Selection",
    "select_best",
    "distill",
    "ScenarioTrainer",
]

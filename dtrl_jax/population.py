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

import dataclasses
from collections.abc import Sequence
from typing import Any

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from gymnax.environments import environment, spaces

from dtrl_jax.agents.networks import NETWORKS
from dtrl_jax.config import DQNConfig, QLearningConfig
from dtrl_jax.evaluate import episode_limit
from dtrl_jax.evaluate import evaluate as play
from dtrl_jax.train import TrainResult, build_agent, inspect_env, make_train
from dtrl_jax.twin.global_obs import GlobalObservation

# ----------------------------------------------------------------------------- observation views


@dataclasses.dataclass(frozen=True)
class EntityLayout:
    """How a flat observation splits into entities, for the CNN.

    The flat observation is ``groups`` blocks of ``count x features`` values (row-major), then
    ``num_globals`` trailing values. The entity view is ``[sum(count), max(features) + len(groups)
    + num_globals]``: each entity's features (zero-padded), a one-hot of its group, and the global
    values repeated on every entity.

    Attributes:
      groups: ``((count, features), ...)``, e.g. MultiUAV ``((num_uavs, 2), (num_users, 2))``.
      num_globals: trailing global values (MultiUAV: 1, the time).
    """

    groups: tuple[tuple[int, int], ...]
    num_globals: int = 0

    def __post_init__(self):
        if not self.groups:
            raise ValueError("EntityLayout.groups is empty; expected ((count, features), ...)")
        for g in self.groups:
            if len(g) != 2 or any(not isinstance(v, (int, np.integer)) or v < 1 for v in g):
                raise ValueError(f"EntityLayout.groups entry {g!r}: expected (count >= 1, features >= 1)")
        if not isinstance(self.num_globals, (int, np.integer)) or self.num_globals < 0:
            raise ValueError(f"EntityLayout.num_globals={self.num_globals!r}: expected an int >= 0")

    @classmethod
    def multi_uav(cls, params) -> EntityLayout:
        """The layout of ``MultiUAV-v0``'s observation: UAVs (x, y), users (x, y), then the time."""
        return cls(groups=((int(params.num_uavs), 2), (int(params.num_users), 2)), num_globals=1)

    @property
    def flat_size(self) -> int:
        return sum(c * f for c, f in self.groups) + self.num_globals

    @property
    def shape(self) -> tuple[int, int]:
        feats = max(f for _, f in self.groups)
        return sum(c for c, _ in self.groups), feats + len(self.groups) + self.num_globals

    def to_entities(self, flat: jax.Array) -> jax.Array:
        """One flat observation ``[flat_size]`` -> ``[entities, features]`` (float32)."""
        flat = jnp.reshape(jnp.asarray(flat, jnp.float32), (-1,))
        feats = max(f for _, f in self.groups)
        glob = flat[self.flat_size - self.num_globals :]
        rows, start = [], 0
        for gi, (count, f) in enumerate(self.groups):
            block = jnp.reshape(flat[start : start + count * f], (count, f))
            block = jnp.pad(block, ((0, 0), (0, feats - f)))
            onehot = jnp.broadcast_to(jax.nn.one_hot(gi, len(self.groups)), (count, len(self.groups)))
            rows.append(jnp.concatenate([block, onehot, jnp.broadcast_to(glob, (count, self.num_globals))], 1))
            start += count * f
        return jnp.concatenate(rows, 0)

    def to_flat(self, ent: jax.Array) -> jax.Array:
        """Inverse of :meth:`to_entities` for one observation."""
        feats = max(f for _, f in self.groups)
        parts, start = [], 0
        for count, f in self.groups:
            parts.append(jnp.reshape(ent[start : start + count, :f], (-1,)))
            start += count
        parts.append(ent[0, feats + len(self.groups) :])
        return jnp.concatenate(parts)


class _Wrapper(environment.Environment):
    """Shared plumbing of the observation wrappers (params are the inner env's, unchanged)."""

    def __init__(self, env):
        super().__init__()
        self.inner = env

    @property
    def default_params(self):
        return self.inner.default_params

    def action_space(self, params=None):
        return self.inner.action_space(params)

    @property
    def num_actions(self) -> int:
        return self.inner.action_space(self.inner.default_params).n

    def is_terminated(self, state, params):
        return self.inner.is_terminated(self._inner_state(state), params)

    def _inner_state(self, state):
        return state


class EntityObservation(_Wrapper):
    """``env`` with observations reshaped to ``[entities, features]`` by an :class:`EntityLayout`.

    Stateless: the state is the inner env's, so twin noise and params act exactly as unwrapped.
    """

    def __init__(self, env, layout: EntityLayout):
        super().__init__(env)
        self.layout = layout

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = self.inner.step_env(key, state, action, params)
        return self.layout.to_entities(obs), state, reward, terminated, info

    def reset_env(self, key, params):
        obs, state = self.inner.reset_env(key, params)
        return self.layout.to_entities(obs), state

    def get_obs(self, state, params=None, key=None):
        return self.layout.to_entities(self.inner.get_obs(state, params))

    def is_truncated(self, state, params):
        return self.inner.is_truncated(state, params)

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, self.layout.shape, jnp.float32)

    @property
    def name(self) -> str:
        return f"{getattr(self.inner, 'name', type(self.inner).__name__)}+entities"


@struct.dataclass
class HistoryState:
    """State of :class:`ObservationHistory`: the inner state and the window ``[W, *obs]``, oldest first."""

    inner: Any
    history: Any
    time: Any


class ObservationHistory(_Wrapper):
    """``env`` whose observation is the window of its last ``window`` observations, oldest first.

    Made for the GRU (the loop carries no recurrent state, so memory must live in the observation).
    At reset the window is the first observation repeated. The window is part of the state, so a
    twin that copies the physical state copies the history too (and its sensor noise, if any,
    touches the remembered observations as well as the inner state). ``info['final_observation']``
    is the pre-reset window, so bootstrapping stays correct.
    """

    def __init__(self, env, window: int):
        super().__init__(env)
        if not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(f"ObservationHistory.window={window!r}: expected an int >= 1")
        self.window = int(window)

    def _inner_state(self, state):
        return state.inner

    def step_env(self, key, state, action, params):
        obs, inner, reward, terminated, info = self.inner.step_env(key, state.inner, action, params)
        history = jax.tree.map(lambda h, o: jnp.concatenate([h[1:], o[None]], 0), state.history, obs)
        new = HistoryState(inner=inner, history=history, time=getattr(inner, "time", 0))
        return history, new, reward, terminated, info

    def reset_env(self, key, params):
        obs, inner = self.inner.reset_env(key, params)
        history = jax.tree.map(lambda o: jnp.broadcast_to(o, (self.window, *jnp.shape(o))), obs)
        return history, HistoryState(inner=inner, history=history, time=getattr(inner, "time", 0))

    def get_obs(self, state, params=None, key=None):
        return state.history

    def is_truncated(self, state, params):
        return self.inner.is_truncated(state.inner, params)

    def observation_space(self, params):
        obs = jax.eval_shape(self.inner.reset_env, jax.random.key(0), params)[0]
        return spaces.Box(-jnp.inf, jnp.inf, (self.window, *obs.shape), obs.dtype)

    @property
    def name(self) -> str:
        return f"{getattr(self.inner, 'name', type(self.inner).__name__)}+history{self.window}"


# ----------------------------------------------------------------------------------- members


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


# ------------------------------------------------------------------------------------ training


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


# ---------------------------------------------------------------------------------- evaluation


@dataclasses.dataclass(frozen=True)
class Student:
    """A distilled agent: an MLP ``Member`` (twin off) and its ``DQNState``; ``losses`` per step."""

    member: Member
    agent_state: Any
    losses: np.ndarray


def greedy_returns(member: Member, agent_states, env, env_params, episodes: int, key: jax.Array,
                   max_steps: int | None = None) -> jax.Array:
    """Greedy physical returns ``[P, episodes]`` of ``P`` stacked agent states of one architecture.

    The one greedy rule of :mod:`dtrl_jax.evaluate` (argmax Q, random ties), jitted and vmapped over
    agents; every agent plays the same episode keys (common random numbers). ``max_steps`` defaults
    to the env's ``max_steps_in_episode``.
    """
    wenv, wparams = member.acting_env(env, env_params)
    agent = build_agent(member.config, inspect_env(wenv, wparams))
    limit = episode_limit(wenv, wparams, max_steps)

    def agent_returns(agent_state):
        return play(key, agent, agent_state, wenv, wparams, int(episodes), max_steps=limit).returns

    return jax.jit(jax.vmap(agent_returns))(agent_states)


def evaluate(members, env, env_params, episodes: int = 10, *, key: jax.Array | None = None,
             max_steps: int | None = None) -> np.ndarray:
    """Mean greedy physical return per member, in population order (float64 ``[P]``).

    ``members``: a :class:`PopulationResult` or a :class:`Student` (then ``[1]``). Every member
    plays the same ``episodes`` episode keys (common random numbers), on the physical ``env`` with
    ``env_params`` seen through the member's observation view.
    """
    if not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"evaluate: episodes={episodes!r}; expected an int >= 1")
    key = jax.random.key(0) if key is None else key
    if isinstance(members, Student):
        states = jax.tree.map(lambda x: x[None], members.agent_state)
        return np.asarray(greedy_returns(members.member, states, env, env_params, episodes, key, max_steps)
                          ).mean(axis=1).astype(np.float64)
    if not isinstance(members, PopulationResult):
        raise TypeError(f"evaluate needs a PopulationResult or Student, got {type(members).__name__}")
    out = np.zeros(len(members.population.members))
    for g, idx in enumerate(members.population.groups):
        m = members.population.members[idx[0]]
        rets = greedy_returns(m, members.results[g].runner_state.agent_state, env, env_params, episodes,
                              key, max_steps)
        for j, i in enumerate(idx):  # same key for every group: common random numbers
            out[i] = float(np.mean(np.asarray(rets[j])))
    return out


@dataclasses.dataclass(frozen=True)
class Selection:
    """The best member: population ``index``, ``name``, ``score``, its ``Member`` and ``agent_state``."""

    index: int
    name: str
    score: float
    member: Member
    agent_state: Any


def select_best(result: PopulationResult, scores: Sequence[float]) -> Selection:
    """The member with the highest finite score (e.g. from :func:`evaluate`)."""
    scores = np.asarray(scores, np.float64)
    n = len(result.population.members)
    if scores.shape != (n,):
        raise ValueError(f"select_best: scores has shape {scores.shape}; expected ({n},), one per member")
    if not np.any(np.isfinite(scores)):
        raise ValueError("select_best: no member has a finite score")
    i = int(np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf)))
    m = result.population.members[i]
    return Selection(index=i, name=m.name, score=float(scores[i]), member=m, agent_state=result.agent_state(i))


# -------------------------------------------------------------------------------- distillation

DISTILL_LOSSES = ("q_mse", "policy_kl")


def _teacher_states(result: PopulationResult, teachers: Sequence[int]) -> tuple[np.ndarray, int]:
    """Valid stored observations of the teachers, in the student's view, and that view's window."""
    pop = result.population
    windows = {pop.members[i].window for i in teachers if pop.members[i].window > 1}
    if len(windows) > 1:
        raise ValueError(f"distill: teachers use different observation windows {sorted(windows)}; "
                         "the student needs one view")
    window = windows.pop() if windows else 1
    chunks = []
    for i in teachers:
        m = pop.members[i]
        if window > 1 and m.window == 1:
            continue  # its storage holds single observations; windowed teachers provide the states
        storage = result.runner_state(i).storage
        if storage is None:
            raise ValueError(f"distill: teacher {m.name!r} keeps no replay storage (tabular Q-learning); "
                             "distillation needs DQN teachers")
        size = int(storage.physical.size)
        obs = np.asarray(storage.physical.data.obs[:size])
        if m.entities is not None:
            obs = np.asarray(jax.vmap(m.entities.to_flat)(jnp.asarray(obs)))
        chunks.append(obs)
    states = np.concatenate(chunks) if chunks else np.zeros((0,))
    if states.shape[0] == 0:
        raise ValueError("distill: the teachers' storage holds no states")
    return states, window


def _teacher_view(member: Member, window: int):
    """Student-view observation -> this teacher's input."""
    def view(obs):
        if window > 1 and member.window == 1:
            obs = obs[-1]
        if member.entities is not None:
            obs = member.entities.to_entities(obs)
        return obs
    return view


def distill(result: PopulationResult, env, env_params, key: jax.Array, *,
            teachers: Sequence[int | str] | None = None, weights: Sequence[float] | None = None,
            loss: str = "policy_kl", temperature: float = 1.0, hidden_sizes: tuple[int, ...] = (120, 84),
            steps: int = 2_000, batch_size: int = 256, learning_rate: float = 1e-3,
            max_states: int = 50_000) -> Student:
    """Distil teachers into a fresh MLP student, on states drawn from the teachers' replay storage.

    The student sees the teachers' common observation view (raw observations, or the window when
    GRU teachers use one); CNN teachers get it reshaped to entities. Targets, per state, with
    teacher weights ``w`` (default uniform):

    * ``"q_mse"``: the weighted mean of the teachers' Q-values; loss = mean squared error.
    * ``"policy_kl"``: the weighted mixture of the teachers' softmax policies ``softmax(Q / T)``;
      loss = ``KL(teacher || student)`` with ``distrax.Categorical`` (student logits ``Q_s / T``).
      The default: what a student must copy is the teachers' *choice*, and on CartPole (two
      actions whose Q-values differ by little) a small Q regression error flips the argmax. Measured
      with DQN teachers of greedy return 255-377 (4 teachers x 2 keys, 3,000 steps): policy_kl
      students kept 90-101% of the teacher's return, q_mse students 21-120%.

    Args:
      teachers: member indices or names (default: every member).
      steps, batch_size, learning_rate: Adam on minibatches drawn uniformly from the states.
      max_states: at most this many states (a uniform subsample) are used.
    Returns:
      a :class:`Student`; ``evaluate(student, env, env_params)`` plays it greedily.
    Raises:
      ValueError: no teachers, an unknown teacher, a teacher without storage, a bad loss name, or
        weights of the wrong length.
    """
    if not isinstance(result, PopulationResult):
        raise TypeError(f"distill needs a PopulationResult, got {type(result).__name__}")
    pop = result.population
    if teachers is None:
        teachers = list(range(len(pop.members)))
    teachers = [result.index(t) if isinstance(t, str) else int(t) for t in teachers]
    if not teachers:
        raise ValueError("distill: no teachers given; pass at least one member index or name")
    for t in teachers:
        if not 0 <= t < len(pop.members):
            raise ValueError(f"distill: teacher index {t} out of range [0, {len(pop.members)})")
    if loss not in DISTILL_LOSSES:
        raise ValueError(f"distill: loss={loss!r}; expected one of {list(DISTILL_LOSSES)}")
    if temperature <= 0:
        raise ValueError(f"distill: temperature={temperature}; expected > 0")
    w = np.full(len(teachers), 1.0 / len(teachers)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(teachers),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"distill: weights {weights!r}; expected {len(teachers)} non-negative numbers, not all 0")
    w = w / w.sum()
    for t in teachers:
        tw = pop.members[t].config.twin
        if tw is not None and tw.share_global_obs:
            raise ValueError(f"distill: teacher {pop.members[t].name!r} uses share_global_obs; not supported")

    k_sub, k_init, k_train = jax.random.split(key, 3)
    states, window = _teacher_states(result, teachers)
    if states.shape[0] > max_states:
        pick = np.asarray(jax.random.choice(k_sub, states.shape[0], (max_states,), replace=False))
        states = states[pick]
    states = jnp.asarray(states)

    # Teacher targets for every state, computed once.
    target = 0.0
    for t, wt in zip(teachers, w):
        m = pop.members[t]
        wenv, wparams = m.wrap_env(env, env_params)
        agent = build_agent(m.config, inspect_env(wenv, wparams))
        view = _teacher_view(m, window)
        a_state = result.agent_state(t)
        q = jax.jit(jax.vmap(lambda o: agent.q_values(a_state, view(o))))(states)
        target = target + wt * (q if loss == "q_mse" else jax.nn.softmax(q / temperature, axis=-1))

    student_member = Member("student", DQNConfig(network="mlp", hidden_sizes=tuple(hidden_sizes), twin=None,
                                                 learning_rate=learning_rate), window=window)
    senv, sparams = student_member.wrap_env(env, env_params)
    agent = build_agent(student_member.config, inspect_env(senv, sparams))
    params = agent.init(k_init).params
    opt = optax.adam(learning_rate)

    def batch_loss(p, obs, tgt):
        q = jax.vmap(lambda o: agent.apply(p, o))(obs)
        if loss == "q_mse":
            return jnp.mean(jnp.square(q - tgt))
        return jnp.mean(distrax.Categorical(probs=tgt).kl_divergence(distrax.Categorical(logits=q / temperature)))

    def step(carry, k):
        p, s = carry
        idx = jax.random.randint(k, (batch_size,), 0, states.shape[0])
        value, grads = jax.value_and_grad(batch_loss)(p, states[idx], target[idx])
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    (params, _), losses = jax.jit(lambda p, k: jax.lax.scan(step, (p, opt.init(p)), jax.random.split(k, steps)))(
        params, k_train)
    state = agent.init(k_init).replace(params=params, target_params=params)
    return Student(member=student_member, agent_state=state, losses=np.asarray(losses))


# ------------------------------------------------------------------ one program, many scenarios


class ScenarioTrainer:
    """Members of one architecture with per-member configs, physical ``EnvParams`` and twin params.

    One jitted ``vmap`` for ``init`` and one for ``run`` (each compiled once per shape): the
    physical params and twin params are *arguments*, so the same compiled program can pre-train a
    member on a twin's params as if physical, then continue on the true params, or change a
    member's physical scenario mid-run, by calling :meth:`run` chunk by chunk with other params
    (``make_train(...).run`` on the same runner state). Leaves of ``configs``, ``env_params`` and
    ``twin_params`` carry a leading member axis ``[B]`` (see :func:`stack_configs` and
    ``dtrl_jax.twin.stack_params``); ``twin_params`` leaves are ``[B, num_domains, ...]``.

    Args:
      env: the gymnax environment (members see it through ``member``'s observation view).
      member: a template :class:`Member` (architecture, static fields) every row shares.
      with_twin_params: whether ``twin_params`` is passed (fixes the program structure).
    """

    def __init__(self, env, member: Member, *, with_twin_params: bool):
        self.member = member
        self.with_twin_params = with_twin_params
        if with_twin_params and member.config.twin is None:
            raise ValueError("ScenarioTrainer: with_twin_params=True needs a member config with a twin")

        def build(cfg, env_params, twin_params):
            wenv, wparams = member.wrap_env(env, env_params)
            return make_train(cfg, wenv, wparams, twin_params=twin_params if with_twin_params else None)

        self._init = jax.jit(jax.vmap(lambda c, k, p, t: build(c, p, t).init(k)))
        self._run = jax.jit(jax.vmap(lambda c, r, ks, p, t: build(c, p, t).run(r, ks)))

    def init(self, configs, keys, env_params, twin_params=None):
        """``(runner_states, intervals [B, num_intervals])`` (interval indices, see ``make_train``)."""
        return self._init(configs, keys, env_params, twin_params)

    def run(self, configs, runner, intervals, env_params, twin_params=None):
        """Run ``intervals.shape[1]`` logging intervals; ``(runner_states, metrics [B, n])``."""
        return self._run(configs, runner, intervals, env_params, twin_params)

    def train(self, configs, keys, phases, *, chunk: int, restart_steps=None):
        """Run ``phases`` back to back, ``chunk`` logging intervals per compiled call.

        Args:
          configs, keys: stacked configs ``[B]`` and keys ``[B]``.
          phases: sequence of ``(num_intervals, env_params, twin_params)``; each ``num_intervals``
            a multiple of ``chunk``, summing to the configs' ``num_intervals``. A phase may change
            the physical params (scenario change, twin pre-training) or the twin params.
          restart_steps: optional ``{phase index: bool [B]}``: at the start of that phase, the
            step counter of the flagged rows restarts at 0, so their epsilon schedule,
            ``learning_starts`` and ``ready_after`` start afresh (e.g. physical fine-tuning after
            pre-training in a twin: physical steps then count from the phase start).
        Returns:
          ``(runner_states, metrics)`` with metrics ``[B, num_intervals]``.
        """
        total = sum(n for n, _, _ in phases)
        runner, ikeys = self.init(configs, keys, phases[0][1], phases[0][2])
        if total != ikeys.shape[1]:
            raise ValueError(f"phases cover {total} intervals; the configs have {ikeys.shape[1]}")
        rows, start = [], 0
        for p, (n, env_params, twin_params) in enumerate(phases):
            if n % chunk:
                raise ValueError(f"phase of {n} intervals is not a multiple of chunk={chunk}")
            if restart_steps is not None and p in restart_steps:
                flags = np.asarray(restart_steps[p], bool)
                runner = _restart_steps(runner, jnp.asarray(flags), p)
                # The loop reads its schedules from the interval indices: restart them too.
                ikeys = np.asarray(ikeys).copy()
                ikeys[flags, start:] -= ikeys[flags, start : start + 1]
            for _ in range(n // chunk):
                runner, m = self.run(configs, runner, ikeys[:, start : start + chunk], env_params, twin_params)
                rows.append(m)
                start += chunk
        metrics = {k: np.concatenate([np.asarray(r[k]) for r in rows], axis=1) for k in rows[0]}
        return runner, metrics


def _restart_steps(runner, flags, salt: int):
    """Rows ``flags`` of a batched runner: step counter to 0 and a new random stream."""
    def one(flag, steps, key):
        new_key = jax.random.fold_in(key, 1_000_003 + salt)
        return (jnp.where(flag, jnp.zeros_like(steps), steps),
                jax.lax.cond(flag, lambda: new_key, lambda: key))

    steps, keys = jax.vmap(one)(flags, runner.steps, runner.loop_key)
    return runner.replace(steps=steps, loop_key=keys)

"""Flax Q-networks and observation encoders.

Every network maps ONE encoded observation (no batch axis; callers ``vmap``) to Q-values ``[A]``:

* ``"mlp"``  (:class:`MLPQNetwork`): flattens its input, then dense layers ``hidden_sizes``.
* ``"cnn"``  (:class:`CNNQNetwork`): a 1-D CNN over per-entity features. A rank-2 input is read as
  ``[entities, features]`` (e.g. MultiUAV's UAV and user coordinates, see
  ``dtrl_jax.envs.wrappers.EntityObservation``); a rank-1 input ``[F]`` as ``F`` entities with one
  feature each.
* ``"gru"``  (:class:`GRUQNetwork`): a GRU over a fixed window. A rank-2 input is read as
  ``[window, features]``, the last ``W`` observations oldest first (see
  ``dtrl_jax.envs.wrappers.ObservationHistory``); a rank-1 input as a window of one. The training loop
  carries no recurrent state, so the GRU restarts from a zero state on every window: memory is
  exactly the window, and every replayed transition is self-contained.

``hidden_sizes`` (``DQNConfig.hidden_sizes``) means, per architecture: MLP, the dense widths; CNN,
the convolution channels (all widths but the last) followed by one dense layer of the last width
(a single width: one convolution, no extra dense layer); GRU, the GRU state size (first width)
followed by dense layers of the remaining widths.

Output heads (the last layer of every architecture, :func:`q_head`):

* joint (``action_dims=None``): one output per action, ``[A]``; with ``dueling`` a state value plus
  mean-centred advantages, ``Q(s, a) = V(s) + A(s, a) - mean_b A(s, b)``.
* branching (``action_dims=(n_0, ..., n_{K-1})``, for a product action space of K factors): one small
  head per factor on the shared torso, output the concatenated *branch values* ``[n_0 + ... + n_{K-1}]``
  (with ``dueling``: one shared ``V(s)`` plus each branch's mean-centred advantages). The joint value
  they represent is :func:`joint_q_from_branches`: ``Q(s, a) = mean_i Q_i(s, a_i)`` with ``a_i`` the
  mixed-radix digits of the joint index (factor 0 least significant, :func:`factor_actions`). Its
  argmax is the per-branch argmax, and ``max_a Q(s, a) = mean_i max Q_i(s, .)``, so greedy actions
  and bootstraps cost ``O(sum n_i)`` instead of ``O(prod n_i)``.
* afterstate (built by ``DQNAgent`` for ``DQNConfig.head='afterstate'``): the network is a joint head
  with ONE output, a state value V; the agent evaluates it at the observation and at each factor's
  afterstates and forms branch values with :func:`afterstate_branch_values`, read as above.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

#: Architecture names accepted by :func:`build_network` (and ``DQNConfig.network``).
NETWORKS = ("mlp", "cnn", "gru")


def factor_actions(action: jax.Array, action_dims: Sequence[int]) -> jax.Array:
    """Joint action index -> ``[K]`` int32 factor actions (mixed radix, factor 0 least significant).

    ``action = sum_i a_i * prod_{j < i} n_j``; e.g. MultiUAV's base-5 digits, UAV 0 first.
    """
    action = jnp.asarray(action, jnp.int32)
    digits, place = [], 1
    for n in action_dims:
        digits.append((action // place) % n)
        place *= int(n)
    return jnp.stack(digits, axis=-1)


def split_branches(flat: jax.Array, action_dims: Sequence[int]) -> list[jax.Array]:
    """Concatenated branch values ``[..., sum n_i]`` -> list of ``[..., n_i]`` (static slices)."""
    out, start = [], 0
    for n in action_dims:
        out.append(flat[..., start : start + int(n)])
        start += int(n)
    return out


def joint_q_from_branches(flat: jax.Array, action_dims: Sequence[int]) -> jax.Array:
    """The joint values ``[prod n_i]`` represented by branch values ``[sum n_i]`` (one observation).

    ``Q(s, a) = (1 / K) sum_i Q_i(s, a_i)``, laid out so that index ``a`` has the digits of
    :func:`factor_actions` (a broadcast sum over the product, factor 0 on the fastest axis).
    """
    chex.assert_rank(flat, 1)
    branches = split_branches(flat, action_dims)
    k = len(branches)
    joint = jnp.zeros((), flat.dtype)
    for i, q in enumerate(branches):
        # factor i lives on axis (k - 1 - i) of the [n_{K-1}, ..., n_0] grid (C order: last = fastest)
        shape = [1] * k
        shape[k - 1 - i] = q.shape[0]
        joint = joint + jnp.reshape(q, shape)
    return jnp.reshape(joint / k, (-1,))


def branch_q_of_action(flat: jax.Array, action: jax.Array, action_dims: Sequence[int]) -> jax.Array:
    """``Q(s, a) = mean_i Q_i(s, a_i)`` of one joint action without forming the joint table."""
    digits = factor_actions(action, action_dims)
    return jnp.mean(jnp.stack([q[digits[i]] for i, q in enumerate(split_branches(flat, action_dims))]))


def branch_max(flat: jax.Array, action_dims: Sequence[int]) -> jax.Array:
    """``max_a Q(s, a) = mean_i max Q_i(s, .)`` of branch values ``[sum n_i]``."""
    return jnp.mean(jnp.stack([jnp.max(q) for q in split_branches(flat, action_dims)]))


def branch_double_q(flat_target: jax.Array, flat_online: jax.Array, action_dims: Sequence[int]) -> jax.Array:
    """Double-DQN bootstrap per branch: target values of each branch's online argmax, averaged."""
    pairs = zip(split_branches(flat_target, action_dims), split_branches(flat_online, action_dims))
    return jnp.mean(jnp.stack([t[jnp.argmax(o)] for t, o in pairs]))


def afterstate_branch_values(v_state: jax.Array, v_after: jax.Array, num_factors: int) -> jax.Array:
    """Branch values ``[sum n_i]`` of an afterstate head from ``V(s)`` and ``V(s (+)_i m)`` ``[sum n_i]``.

    ``V(s (+)_i m)`` is the value of the observation after choice ``m`` of factor ``i`` alone. The joint
    value is the first-order (additive) expansion of the value of the joint afterstate,
    ``Q(s, a) = V(s) + sum_i [V(s (+)_i a_i) - V(s)]``: exact when the value is additive over the
    factors (each UAV's move changes it independently of the others') and, with every factor at a
    null choice (all UAVs stay), ``V(s)`` itself. So that the branching rules
    (:func:`joint_q_from_branches`: mean over branches, per-branch argmax and max) represent exactly
    this joint, each branch value is ``K [V(s (+)_i m) - V(s)] + V(s)``. (The mean of the raw
    afterstate values, ``mean_i V(s (+)_i a_i)``, ranks the actions of one state identically but
    shrinks every move's effect K-fold, so V cannot be the value function of the joint move: the
    expansion keeps it one.)
    """
    chex.assert_rank(v_state, 0)
    chex.assert_rank(v_after, 1)
    return num_factors * (v_after - v_state) + v_state


def q_head(x: jax.Array, num_actions: int, action_dims: Sequence[int] | None, dueling: bool) -> jax.Array:
    """Last layer(s) of a Q-network on features ``x`` ``[F]`` (call inside a compact module).

    Joint without dueling is exactly one ``nn.Dense(num_actions)`` (the parameters, their names and
    their initial values are those of the plain networks). See the module docstring for the rest.
    """
    if action_dims is None:
        if not dueling:
            return nn.Dense(num_actions)(x)
        value = nn.Dense(1, name="value")(x)
        adv = nn.Dense(num_actions, name="advantage")(x)
        return value + adv - jnp.mean(adv)
    heads = [nn.Dense(int(n), name=f"branch_{i}")(x) for i, n in enumerate(action_dims)]
    if dueling:
        value = nn.Dense(1, name="value")(x)
        heads = [value + h - jnp.mean(h) for h in heads]
    return jnp.concatenate(heads)


class _QNetwork(nn.Module):
    """The fields every Q-network shares: layer widths, the number of joint actions, the action
    factors of a branching head (None: joint head) and the dueling split (see :func:`q_head`)."""

    hidden_sizes: Sequence[int]
    num_actions: int
    action_dims: tuple[int, ...] | None = None
    dueling: bool = False


class MLPQNetwork(_QNetwork):
    """A multilayer perceptron mapping an encoded observation (any shape, flattened) to Q-values ``[A]``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.reshape(x, (-1,))
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return q_head(x, self.num_actions, self.action_dims, self.dueling)


def _as_matrix(x: jax.Array, what: str) -> jax.Array:
    """Rank-1 ``[F]`` -> ``[F, 1]``; rank 2 unchanged; anything else raises (a static shape error)."""
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        return x
    raise ValueError(f"{what} expects one observation of rank 1 or 2 ({what} layout), got shape {x.shape}")


class CNNQNetwork(_QNetwork):
    """1-D CNN over entities: ``[E, F]`` (or ``[F]`` = ``[F, 1]``) -> Q-values ``[A]``.

    Each convolution has kernel ``kernel_size`` along the entity axis (default 1: one filter bank
    shared by every entity, so all UAVs / users are embedded the same way), ReLU, ``SAME`` padding.
    The per-entity embeddings are then flattened (entity identity, hence order, is kept: the joint
    action names UAVs by index) and go through the dense layer and the output layer.
    """

    kernel_size: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _as_matrix(x, "cnn [entities, features]")
        widths = tuple(self.hidden_sizes)
        convs, dense = (widths[:-1], widths[-1:]) if len(widths) > 1 else (widths, ())
        for channels in convs:
            x = nn.relu(nn.Conv(channels, kernel_size=(self.kernel_size,), padding="SAME")(x))
        x = jnp.reshape(x, (-1,))
        for width in dense:
            x = nn.relu(nn.Dense(width)(x))
        return q_head(x, self.num_actions, self.action_dims, self.dueling)


class GRUQNetwork(_QNetwork):
    """GRU over a fixed observation window: ``[W, F]`` (or ``[F]`` = ``[1, F]``) -> Q-values ``[A]``.

    The GRU (state size ``hidden_sizes[0]``) starts from zeros, reads the window oldest first, and
    its last state goes through dense layers ``hidden_sizes[1:]`` and the output layer. The window
    is short and static, so the recurrence is unrolled (one shared cell).
    """


    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"gru expects one observation window [window, features], got shape {x.shape}")
        widths = tuple(self.hidden_sizes)
        cell = nn.GRUCell(features=widths[0])
        h = jnp.zeros((widths[0],), x.dtype)
        for t in range(x.shape[0]):
            h, _ = cell(h, x[t])
        for width in widths[1:]:
            h = nn.relu(nn.Dense(width)(h))
        return q_head(h, self.num_actions, self.action_dims, self.dueling)


def make_obs_encoder(num_states: int | None) -> Callable[[jax.Array], jax.Array]:
    """Observation -> float32 array for a network.

    ``num_states`` given: observations are discrete indices and are one-hot encoded (``[S]``);
    None: array observations are cast to float32 and keep their shape (the MLP flattens them, the
    CNN and GRU read rank-2 observations as ``[entities, features]`` / ``[window, features]``).
    """
    if num_states is not None:
        return lambda obs: jax.nn.one_hot(obs, num_states, dtype=jnp.float32)
    return lambda obs: jnp.asarray(obs, jnp.float32)


def build_network(
    name: str,
    hidden_sizes: Sequence[int],
    num_actions: int,
    *,
    action_dims: Sequence[int] | None = None,
    dueling: bool = False,
) -> nn.Module:
    """The Q-network called ``name`` (one of :data:`NETWORKS`) with the head of :func:`q_head`.

    ``action_dims`` given: a branching head whose output is the branch values ``[sum action_dims]``
    (their product must be ``num_actions``); None: joint Q-values ``[num_actions]``.

    Raises:
      ValueError: an unknown name (the message lists the known ones), empty ``hidden_sizes``, or
        ``action_dims`` whose product is not ``num_actions``.
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; expected one of {list(NETWORKS)}")
    widths = tuple(int(w) for w in hidden_sizes)
    if not widths:
        raise ValueError(f"network {name!r} needs at least one hidden size, got {hidden_sizes!r}")
    dims = None
    if action_dims is not None:
        dims = tuple(int(n) for n in action_dims)
        if not dims or min(dims) < 1 or int(np.prod(dims)) != int(num_actions):
            raise ValueError(
                f"action_dims={tuple(action_dims)!r}: expected positive factors whose product is the "
                f"number of actions {num_actions}"
            )
    head = dict(action_dims=dims, dueling=bool(dueling))
    if name == "mlp":
        return MLPQNetwork(hidden_sizes=widths, num_actions=num_actions, **head)
    if name == "cnn":
        return CNNQNetwork(hidden_sizes=widths, num_actions=num_actions, **head)
    return GRUQNetwork(hidden_sizes=widths, num_actions=num_actions, **head)

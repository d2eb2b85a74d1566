"""Simultaneous trials on different actions (the paper's first benefit).

From the physical state s_t the physical action is executed physically; the n - 1 other distinct
actions are executed in n - 1 different domains that hold a copy of s_t (see
``DigitalSpace.trials``). Each yields a 1-step transition for storage (DQN) or a direct Q update
(tabular). This module chooses the actions.

Speed note (measured on a 2-core CPU, 10 environments, 624 candidate actions, 3 trials): a random
permutation (``jax.random.choice(replace=False)``), an ``argsort`` or a ``top_k`` of *integer*
random words each cost ~0.8 ms per step, more than the rest of a MultiUAV DQN step; a ``top_k`` of
float32 uniforms costs 0.07 ms and Floyd's subset algorithm 0.003 ms (0.07 ms for 63 of 624). Hence
the two paths below, and a cyclic shift rather than a sort to spread actions over domains.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Floyd's loop is unrolled up to this many picks (one small fused block each); a fori_loop beyond.
_UNROLL = 16


def _floyd_subset(key: jax.Array, population: int, size: int) -> jax.Array:
    """A uniformly random ``size``-subset of ``{0, ..., population - 1}`` (Floyd's algorithm).

    For j = population - size ... population - 1: draw t uniform in [0, j]; take t unless already
    taken, else take j. O(size**2) work and ``size`` random words, whatever the population. The
    order of the result is not uniform (later slots favour larger values); ``t`` is a word modulo j + 1, biased by at most
    (j + 1) / 2**32.
    """
    words = jax.random.bits(key, (size,), jnp.uint32)

    def pick(i, chosen):
        j = population - size + i
        t = (words[i] % (j + 1).astype(jnp.uint32)).astype(jnp.int32)
        t = jnp.where(jnp.any(chosen == t), j, t)
        return chosen.at[i].set(t)

    chosen = jnp.full((size,), -1, jnp.int32)
    if size <= _UNROLL:
        for i in range(size):
            chosen = pick(jnp.int32(i), chosen)
        return chosen
    return jax.lax.fori_loop(0, size, pick, chosen)


def _rotate(key: jax.Array, values: jax.Array) -> jax.Array:
    """``values`` cyclically shifted by a uniform random offset (one word; no sort).

    Applied to Floyd's output, every slot (domain) then receives each action with the same
    probability: the average over slots of a uniform subset's slot marginals is uniform.
    """
    n = values.shape[0]
    shift = jax.random.randint(key, (), 0, n)
    return values[(jnp.arange(n) + shift) % n]


def trial_actions(key: jax.Array, physical_action: jax.Array, num_actions: int, num_trials: int) -> jax.Array:
    """``num_trials - 1`` distinct actions, all different from ``physical_action``.

    The set is uniform over the subsets of the other actions, and every domain (slot i) receives
    each of them with the same probability, which matters when domains have different,
    mismatched parameters. With ``num_trials == num_actions`` every other action is tried (a
    full sweep).

    Two paths, chosen statically for speed: when the trials cover at least a quarter of the other
    actions, the largest ``num_trials - 1`` of one float32 uniform per action (``top_k``; the order
    is uniform too); otherwise Floyd's subset algorithm on ``num_trials - 1`` random words, turned
    by a random cyclic shift.

    Returns:
      int32 ``[num_trials - 1]``.
    """
    others, n = num_actions - 1, num_trials - 1
    if n <= 0:
        return jnp.zeros((0,), jnp.int32)
    if 4 * n >= others:
        picked = jax.lax.top_k(jax.random.uniform(key, (others,)), n)[1]
    else:
        k_subset, k_order = jax.random.split(key)
        picked = _rotate(k_order, _floyd_subset(k_subset, others, n))
    return ((physical_action + 1 + picked) % num_actions).astype(jnp.int32)

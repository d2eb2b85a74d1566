"""One compiled program for many scenarios: members with their own physical and twin ``EnvParams``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dtrl_jax.population.members import (
    Member,
)
from dtrl_jax.train import make_train


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

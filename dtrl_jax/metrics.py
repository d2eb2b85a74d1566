"""The loop's metrics: one row per logging interval (``log_every`` physical steps), defined here once.

``METRICS`` maps each name to what it measures; ``METRIC_NAMES`` is their order (the columns of a
run's ``metrics.csv``). ``dtrl_jax.train`` builds exactly these (it checks so while tracing), and
the run folders, plots and memory estimate read the names from here. No JAX import: reading a run
folder stays fast.
"""

from __future__ import annotations

METRICS: dict[str, str] = {
    "physical_steps": "cumulative physical env steps (all envs)",
    "physical_episodes": "cumulative finished physical episodes",
    "episode_return": "mean return of the physical episodes finished in the interval (exploration included); "
                      "NaN when none finished",
    "episodes_finished": "physical episodes finished in the interval",
    "twin_transitions": "cumulative twin env steps, float32 (exact: twin_transitions_hi * 2**30 + _lo, "
                        "dtrl_jax.train.exact_twin_transitions)",
    "twin_transitions_hi": "high part of the exact twin-step count (units of 2**30)",
    "twin_transitions_lo": "low part of the exact twin-step count",
    "loss": "mean TD loss of the interval's updates; 0 without updates",
    "updates": "cumulative gradient steps (DQN) or Q-table updates (tabular)",
    "epsilon": "exploration rate at the interval's end",
    "violations": "cumulative physical info['violation'] events; 0 when the env defines none",
    "shielded": "cumulative exploratory actions the shield replaced",
    "twin_ready": "1 once the twin is in use at the interval's end",
    "sync_events": "cumulative synchronisations of the different domains while the twin is in use",
    "twin_faults": "cumulative env-steps in which a ready twin was unusable (outage window or failed health "
                   "check; those steps were physical-only)",
    "eval_return": "mean undiscounted return of the eval_episodes greedy episodes at the interval's end "
                   "(dtrl_jax.evaluate); NaN when eval_episodes is 0",
    "eval_length": "mean length of those greedy episodes; NaN when eval_episodes is 0",
    "twin_error": "the twin's mean one-step prediction error on the calibrate_buffer most recent physical "
                  "transitions, mean over domains (dtrl_jax.twin.online.buffer_twin_error); NaN without a buffer",
}

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)


def check_metric_names(names) -> None:
    """Raise if a metrics row does not hold exactly ``METRIC_NAMES`` in that order (a loop bug)."""
    names = tuple(names)
    if names != METRIC_NAMES:
        missing = sorted(set(METRIC_NAMES) - set(names))
        extra = sorted(set(names) - set(METRIC_NAMES))
        raise RuntimeError(f"metrics row {names} differs from dtrl_jax.metrics.METRIC_NAMES: missing {missing}, "
                           f"extra {extra} (or another order)")

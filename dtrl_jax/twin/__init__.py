"""Digital space: digital domains, action trials and look-ahead rollouts over any gymnax env."""

from dtrl_jax.twin.domains import replicate, step_domains
from dtrl_jax.twin.lookahead import lookahead_transition, rollout_branch
from dtrl_jax.twin.trials import run_action_trials, trial_actions

__all__ = [
    "replicate",
    "step_domains",
    "lookahead_transition",
    "rollout_branch",
    "run_action_trials",
    "trial_actions",
]

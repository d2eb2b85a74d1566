"""Digital space: digital domains, calibration from physical data, sync and noise, action trials, look-ahead rollouts, shield and
global observation, over any gymnax environment."""

from dtrl_jax.twin.calibration import CalibrationConfig, PhysicalBatch, calibrate, twin_error
from dtrl_jax.twin.domains import replicate, step_domains
from dtrl_jax.twin.global_obs import GlobalObservation
from dtrl_jax.twin.lookahead import rollout_branch
from dtrl_jax.twin.mismatch import perturb_params, stack_params
from dtrl_jax.twin.space import DigitalSpace, DomainStates
from dtrl_jax.twin.trials import trial_actions

__all__ = [
    "CalibrationConfig",
    "PhysicalBatch",
    "calibrate",
    "twin_error",
    "DigitalSpace",
    "DomainStates",
    "GlobalObservation",
    "perturb_params",
    "replicate",
    "rollout_branch",
    "stack_params",
    "step_domains",
    "trial_actions",
]

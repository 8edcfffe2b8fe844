"""Model-agnostic GRPO core (pure torch): stochastic sampling steps with log-probs, schedules,
advantages and the clipped policy loss. See docs/ARCHITECTURE.md for the contracts."""

from fastvideo.grpo.advantage import (
    AGGREGATIONS,
    PerPromptStatTracker,
    aggregate_advantages,
    combine_rewards,
    group_advantages,
    reward_advantages,
)
from fastvideo.grpo.loss import gaussian_kl, grpo_loss
from fastvideo.grpo.schedule import (
    DDIMSchedule,
    ddim_schedule,
    flow_sigmas,
    num_train_steps,
    sample_train_step_indices,
    scaled_linear_alphas_cumprod,
)
from fastvideo.grpo.sde import (
    SDE_TYPES,
    StepOutput,
    ddim_step,
    flow_step,
    gaussian_log_prob,
    pred_x0_ddim,
    pred_x0_flow,
    standard_normal,
)

__all__ = [
    "AGGREGATIONS",
    "SDE_TYPES",
    "DDIMSchedule",
    "PerPromptStatTracker",
    "StepOutput",
    "aggregate_advantages",
    "combine_rewards",
    "ddim_schedule",
    "ddim_step",
    "flow_sigmas",
    "flow_step",
    "gaussian_kl",
    "gaussian_log_prob",
    "group_advantages",
    "grpo_loss",
    "num_train_steps",
    "pred_x0_ddim",
    "pred_x0_flow",
    "reward_advantages",
    "sample_train_step_indices",
    "scaled_linear_alphas_cumprod",
    "standard_normal",
]

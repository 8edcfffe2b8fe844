"""Validation rules of the run configuration: every invalid value is reported with its field and why.

The choices of each option are the tuples defined beside the code that implements it (imported here,
never copied). Imports go one way: this module reads ``schema`` and never ``loader``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastvideo.config.schema import Config, RewardTermConfig
from fastvideo.distributed import MIXED_PRECISIONS
from fastvideo.errors import UserError
from fastvideo.grpo.advantage import ADVANTAGE_SCOPES
from fastvideo.grpo.block_noise import block_noise_problem
from fastvideo.grpo.forward import OBJECTIVE_SPECS, OBJECTIVES
from fastvideo.grpo.plan import ODE_SOLVERS
from fastvideo.grpo.sampler import deterministic_rollout
from fastvideo.grpo.sde import SDE_TYPES
from fastvideo.grpo.window import STRATEGIES as WINDOW_STRATEGIES
from fastvideo.models.base import DTYPES, FIRST_FRAME_SCENES
from fastvideo.rewards.reward_set import AGGREGATIONS, NAN_POLICIES


class ConfigError(ValueError, UserError):
    """An unknown key, a value of the wrong type or an invalid value in a configuration."""


def _raise_problems(problems: list[str], source: str) -> None:
    if problems:
        where = f" in {source}" if source else ""
        raise ConfigError(f"invalid configuration{where}:\n  " + "\n  ".join(problems))


_CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": DTYPES,
    "model.first_frame_scenes": FIRST_FRAME_SCENES,
    "sampler.sde_type": SDE_TYPES,
    "sampler.window_strategy": WINDOW_STRATEGIES,
    "sampler.ode_solver": ODE_SOLVERS,
    "grpo.advantage_scope": ADVANTAGE_SCOPES,
    "grpo.objective": OBJECTIVES,
    "rewards.aggregation": AGGREGATIONS,
    "rewards.nan_policy": NAN_POLICIES,
    "train.mixed_precision": MIXED_PRECISIONS,
}
"""Option -> its valid values: the implementing module's own tuple."""

_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("model.name", lambda v: isinstance(v, str) and v.strip() != "", "must be a non-empty string"),
    ("model.height", lambda v: v > 0, "must be > 0"),
    ("model.width", lambda v: v > 0, "must be > 0"),
    ("model.num_frames", lambda v: v >= 1, "must be >= 1"),
    ("model.lora_rank", lambda v: v >= 0, "must be >= 0 (0 = full fine-tune)"),
    ("model.lora_alpha", lambda v: v >= 0, "must be >= 0 (0 = alpha equals rank)"),
    ("model.guidance_scale", lambda v: v >= 0, "must be >= 0"),
    ("sampler.num_steps", lambda v: v >= 2, "must be >= 2 (the last step is never trained)"),
    ("sampler.shift", lambda v: v > 0, "must be > 0"),
    ("sampler.eta", lambda v: v >= 0, "must be >= 0"),
    ("sampler.noise_block", lambda v: v >= 1, "must be >= 1 (1 = i.i.d. noise)"),
    ("sampler.window_size", lambda v: v >= 0, "must be >= 0 (0 = no window)"),
    ("sampler.window_shift_every", lambda v: v >= 1, "must be >= 1"),
    ("sampler.window_stride", lambda v: v >= 1, "must be >= 1"),
    ("sampler.flash_ratio", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("sampler.eval_num_steps", lambda v: v == 0 or v >= 2, "must be 0 (= num_steps) or >= 2"),
    ("sampler.rollout_guidance_scale", lambda v: v is None or v >= 0, "must be >= 0 or null"),
    ("grpo.group_size", lambda v: v >= 2, "must be >= 2 (advantages need a group)"),
    ("grpo.clip_range", lambda v: v > 0, "must be > 0"),
    ("grpo.adv_clip_max", lambda v: v > 0, "must be > 0"),
    ("grpo.timestep_fraction", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("grpo.kl_coef", lambda v: v >= 0, "must be >= 0"),
    ("grpo.train_best_of", lambda v: v == 0 or v >= 2, "must be 0 (train all) or >= 2"),
    ("grpo.forward_timesteps", lambda v: v >= 0, "must be >= 0 (0 = the objective's published value)"),
    ("grpo.nft_beta", lambda v: v > 0, "must be > 0"),
    ("grpo.nft_old_decay_rate", lambda v: v >= 0, "must be >= 0"),
    ("grpo.nft_old_decay_max", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("rewards.terms", lambda v: len(v) > 0, "must name at least one reward"),
    ("train.max_iterations", lambda v: v >= 0, "must be >= 0"),
    ("train.max_minutes", lambda v: v >= 0, "must be >= 0 (0 = no time budget)"),
    ("train.prompts_per_iteration", lambda v: v >= 1, "must be >= 1"),
    ("train.rollout_batch_size", lambda v: v >= 0, "must be >= 0 (0 = whole iteration at once)"),
    ("train.train_batch_size", lambda v: v >= 1, "must be >= 1"),
    ("train.updates_per_iteration", lambda v: v >= 1, "must be >= 1"),
    ("train.passes_per_rollout", lambda v: v >= 1, "must be >= 1"),
    ("train.lr", lambda v: v > 0, "must be > 0"),
    ("train.weight_decay", lambda v: v >= 0, "must be >= 0"),
    (
        "train.adam_betas",
        lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
        "must be two values in [0, 1)",
    ),
    ("train.adam_eps", lambda v: v > 0, "must be > 0"),
    ("train.max_grad_norm", lambda v: v >= 0, "must be >= 0"),
    ("train.lr_warmup_steps", lambda v: v >= 0, "must be >= 0"),
    ("train.ema_decay", lambda v: 0 <= v < 1, "must be in [0, 1) (0 disables EMA)"),
    ("train.supervised_coef", lambda v: v >= 0, "must be >= 0 (0 = no supervised loss)"),
    ("train.supervised_batch_size", lambda v: v >= 1, "must be >= 1"),
    ("checkpoint.every", lambda v: v >= 0, "must be >= 0"),
    ("checkpoint.keep_last", lambda v: v >= 1, "must be >= 1"),
    ("logging.log_every", lambda v: v >= 1, "must be >= 1"),
    ("logging.validation_every", lambda v: v >= 0, "must be >= 0"),
    ("dry_run.world_size", lambda v: v >= 1, "must be >= 1 (GPUs the plan is for)"),
    ("dry_run.gpu_memory_gb", lambda v: v >= 0, "must be >= 0 (0 = the visible GPU's, or 80)"),
    ("dry_run.device", lambda v: v in ("cuda", "cpu"), "must be cuda or cpu"),
    ("output_dir", lambda v: isinstance(v, str) and v != "", "must be a non-empty path"),
]


def _get(cfg: Config, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _reward_term_problems(terms: list[RewardTermConfig]) -> list[str]:
    problems: list[str] = []
    for index, term in enumerate(terms):
        key = f"rewards.terms.{index}"
        if not isinstance(term.name, str) or not term.name.strip():
            problems.append(f"{key}.name: must be a non-empty reward name, got {term.name!r}")
        if not isinstance(term.weight, (int, float)) or not math.isfinite(term.weight):
            problems.append(f"{key}.weight: must be a finite number, got {term.weight!r}")
        if term.threshold is not None and not math.isfinite(term.threshold):
            problems.append(f"{key}.threshold: must be a finite number or null, got {term.threshold!r}")
        if not isinstance(term.kwargs, dict):
            problems.append(f"{key}.kwargs: must be a mapping, got {term.kwargs!r}")
    return problems


def validate(cfg: Config) -> Config:
    """Raise one ConfigError listing every invalid value of ``cfg`` (field and reason); return ``cfg``."""
    problems: list[str] = []
    for key, choices in _CHOICES.items():
        if _get(cfg, key) not in choices:
            problems.append(f"{key}: must be one of {' | '.join(choices)}, got {_get(cfg, key)!r}")
    for key, is_valid, reason in _RULES:
        value = _get(cfg, key)
        try:
            ok = bool(is_valid(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"{key}: {reason}, got {value!r}")
    problems.extend(_reward_term_problems(cfg.rewards.terms))
    if cfg.sampler.window_size > cfg.sampler.num_steps - 1:
        problems.append(f"sampler.window_size: must be <= num_steps - 1 = {cfg.sampler.num_steps - 1} "
                        f"(the last step is never trained), got {cfg.sampler.window_size}")
    block_problem = block_noise_problem(cfg.sampler.noise_block, cfg.sampler.sde_type)
    if block_problem:
        problems.append(f"sampler.noise_block: {block_problem} (sampler.sde_type)")
    problems.extend(_objective_problems(cfg))
    _raise_problems(problems, "")
    return cfg


def _objective_problems(cfg: Config) -> list[str]:
    """Cross-field rules of ``grpo.objective`` and the rollout it needs."""
    s, objective = cfg.sampler, OBJECTIVE_SPECS.get(cfg.grpo.objective)
    if objective is None:
        return []
    problems = []
    if objective.forward_process and deterministic_rollout(s.sde_type, s.eta) and s.init_same_noise:
        problems.append(f"sampler.init_same_noise: grpo.objective {objective.name!r} with a deterministic rollout "
                        f"(sampler.sde_type {s.sde_type!r}, eta {s.eta}) from noise shared in a group makes all "
                        f"{cfg.grpo.group_size} samples of a group identical (zero advantages, nothing to learn): "
                        "set sampler.init_same_noise false")
    if not objective.forward_process and cfg.grpo.forward_timesteps:
        problems.append(f"grpo.forward_timesteps: used by the forward-process objectives (nft | awm | rft) only; "
                        f"objective {objective.name!r} trains floor((S-1) * grpo.timestep_fraction) steps per "
                        f"sample, got {cfg.grpo.forward_timesteps}")
    if not objective.forward_process and cfg.grpo.train_cfg_free:
        problems.append(f"grpo.train_cfg_free: used by the forward-process objectives (nft | awm | rft) only; "
                        f"objective {objective.name!r} needs the rollout's own (guided) velocity in its log-ratio")
    return problems

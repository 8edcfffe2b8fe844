"""Conformance matrix: every model adapter x every algorithm option runs one rollout + one update and
keeps the GRPO invariants (on-policy ratio 1, trainable parameters change, frozen ones do not, only
the planned steps are stored and trained). A new option is one more row here, not a trainer edit."""

from __future__ import annotations

import pytest
import torch

from fastvideo.distributed import DistEnv
from tests.toy_models import BrightnessRewards
from tests.trainer_utils import toy_config

FLOW_ONLY = {"flow_grpo", "cps", "flash", "flash_star", "block_noise"}

OPTIONS = {
    "dance": {},
    "flow_grpo": {"sampler__sde_type": "flow_grpo", "sampler__eta": 0.7},
    "cps": {"sampler__sde_type": "cps", "sampler__eta": 0.8},
    "window_progressive": {"sampler__window_size": 2, "sampler__window_shift_every": 1},
    "window_random": {"sampler__window_size": 2, "sampler__window_strategy": "random"},
    "flash": {"sampler__window_size": 2, "sampler__ode_solver": "dpm2", "sampler__flash_ratio": 0.5},
    "flash_star": {"sampler__window_size": 2, "sampler__window_strategy": "frozen", "sampler__ode_solver": "dpm2",
                   "sampler__flash_ratio": 0.34},
    "block_noise": {"sampler__noise_block": 2},
    "kl_full": {"grpo__kl_coef": 0.04},
    "lora": {"model__lora_rank": 4},
    "lora_kl": {"model__lora_rank": 4, "grpo__kl_coef": 0.04},
    "stat_tracking": {"grpo__per_prompt_stat_tracking": True},
    "global_advantage": {"grpo__advantage_scope": "global"},
    "cfg_free": {"sampler__rollout_guidance_scale": 1.0},
    "grad_checkpointing": {"model__gradient_checkpointing": True},
    "train_best_of": {"grpo__group_size": 4, "grpo__train_best_of": 2},
    "ema_micro_batches": {"train__ema_decay": 0.9, "train__train_batch_size": 1, "train__updates_per_iteration": 1},
}

MATRIX = [(m, o) for m in ("flux", "sd") for o in OPTIONS if not (m == "sd" and o in FLOW_ONLY)]


def _trainer(tmp_path, model, option):
    from fastvideo.training.trainer import GRPOTrainer

    cfg = toy_config(tmp_path, **OPTIONS[option])
    cfg.model.name, cfg.model.tiny, cfg.model.height, cfg.model.width = model, True, 32, 32
    cfg.model.guidance_scale = 5.0 if model == "sd" else 3.5
    cfg.sampler.num_steps, cfg.train.prompts_per_iteration = 6, 2
    cfg.grpo.group_size = OPTIONS[option].get("grpo__group_size", 2)
    return GRPOTrainer(cfg, DistEnv(), rewards=BrightnessRewards())


@pytest.mark.slow
@pytest.mark.parametrize(("model", "option"), MATRIX, ids=[f"{m}-{o}" for m, o in MATRIX])
def test_one_iteration_keeps_grpo_invariants(tmp_path, model, option):
    trainer = _trainer(tmp_path, model, option)
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    metrics = trainer.train_iteration()
    assert abs(metrics["ratio_mean"] - 1) < 1e-5 and abs(metrics["ratio_max"] - 1) < 1e-5
    params = dict(trainer.model.named_parameters())
    moved = [n for n, p in trainable.items() if not torch.equal(p, params[n].detach())]
    assert len(moved) == len(trainable), f"{len(trainable) - len(moved)} trainable parameters did not change"
    assert all(torch.equal(p, params[n].detach()) for n, p in frozen.items())
    plan, steps = trainer.last_plan, trainer.last_train_steps
    allowed = set(plan.train_candidates) if plan.train_candidates is not None else set(range(plan.num_steps - 1))
    assert set(steps.unique().tolist()) <= allowed
    if trainer.cfg.grpo.train_best_of:
        trained_items = 2 * 2 * steps.shape[1]  # 2 of the 4 samples of each of the 2 groups
        assert metrics["calls/train"] == -(-trained_items // trainer.cfg.train.train_batch_size)
    if trainer.window is not None:
        assert steps.shape[1] == trainer.cfg.sampler.window_size
        assert metrics["calls/rollout"] == plan.num_steps
    if trainer.cfg.grpo.kl_coef > 0:
        assert metrics["kl"] == pytest.approx(0.0, abs=1e-10)  # policy == reference before the first step
        second = trainer.train_iteration()
        assert second["kl"] > 0


@pytest.mark.parametrize("option", sorted(FLOW_ONLY))
def test_flow_only_options_are_rejected_for_diffusion_models(tmp_path, option):
    with pytest.raises(ValueError, match="rectified-flow"):
        _trainer(tmp_path, "sd", option).train_iteration()

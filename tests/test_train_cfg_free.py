"""``grpo.train_cfg_free``: the forward-process objectives train the conditional branch alone while the rollouts
keep real classifier-free guidance (DiffusionNFT's CFG-free training of a CFG model)."""

from __future__ import annotations

import pytest
import torch

from fastvideo.config import Config, ConfigError, validate
from fastvideo.distributed import DistEnv
from tests.toy_models import BrightnessRewards
from tests.trainer_utils import toy_config

SCALE = 4.5


def _sd3_trainer(tmp_path, train_cfg_free: bool):
    from fastvideo.training.trainer import GRPOTrainer

    cfg = toy_config(tmp_path, grpo__objective="nft", sampler__sde_type="ode", sampler__init_same_noise=False,
                     grpo__train_cfg_free=train_cfg_free, grpo__forward_timesteps=2)
    cfg.model.name, cfg.model.tiny, cfg.model.height, cfg.model.width = "sd3", True, 32, 32
    cfg.model.guidance_scale = SCALE
    cfg.sampler.num_steps, cfg.train.prompts_per_iteration, cfg.grpo.group_size = 3, 1, 2
    cfg.train.train_batch_size = 4  # 2 samples x 2 timesteps: one micro-batch
    return GRPOTrainer(cfg, DistEnv(), rewards=BrightnessRewards())


def _batch_sizes(trainer):
    """Batch sizes of every denoiser call, split into rollout calls (no grad) and training calls (grad)."""
    calls = {"rollout": [], "train": []}

    def record(module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        calls["train" if torch.is_grad_enabled() else "rollout"].append(hidden.shape[0])

    handle = trainer.model.register_forward_pre_hook(record, with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("cfg_free", [False, True])
def test_the_loss_sees_the_conditional_branch_alone_and_the_rollout_keeps_cfg(tmp_path, cfg_free):
    trainer = _sd3_trainer(tmp_path, cfg_free)
    calls, handle = _batch_sizes(trainer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    metrics = trainer.train_iteration()
    handle.remove()
    assert set(calls["rollout"]) == {2 * 2}  # 2 samples, doubled for [uncond, cond] in every rollout step
    train_rows = 2 * 2  # 2 samples x 2 re-noised timesteps
    assert calls["train"] == [train_rows if cfg_free else 2 * train_rows]
    assert metrics["optimizer_steps"] == 1
    assert any(not torch.equal(p, dict(trainer.model.named_parameters())[n]) for n, p in before.items())


def test_the_conditional_branch_is_the_adapter_at_cfg_scale_one(tmp_path):
    trainer = _sd3_trainer(tmp_path, True)
    adapter = trainer.adapter
    branch = adapter.conditional_branch()
    assert branch.cfg_scale == 1.0 and adapter.cfg_scale == SCALE  # a view: the adapter itself is unchanged
    latents = torch.randn(2, *adapter.latent_shape())
    cond = trainer.data.conditioning([0, 1])
    with torch.no_grad():
        unguided = adapter.variant(guidance_scale=1.0).predict(latents, torch.tensor([0.5, 0.5]), cond)
        torch.testing.assert_close(branch.predict(latents, torch.tensor([0.5, 0.5]), cond), unguided)
        guided = adapter.predict(latents, torch.tensor([0.5, 0.5]), cond)
    assert not torch.allclose(guided, unguided)


def test_models_without_real_cfg_refuse_it_before_the_first_rollout(tmp_path):
    from fastvideo.training.trainer import GRPOTrainer

    cfg = toy_config(tmp_path, grpo__objective="nft", sampler__sde_type="ode", sampler__init_same_noise=False,
                     grpo__train_cfg_free=True)
    cfg.model.name, cfg.model.tiny, cfg.model.height, cfg.model.width = "flux", True, 32, 32
    with pytest.raises(ValueError, match="no real classifier-free guidance"):
        GRPOTrainer(cfg, DistEnv(), rewards=BrightnessRewards())


def test_the_likelihood_objective_rejects_it():
    cfg = Config()
    cfg.grpo.train_cfg_free = True
    with pytest.raises(ConfigError, match="train_cfg_free"):
        validate(cfg)

"""Checks shared by the SD3.5 / Wan2.1 / Qwen-Image adapter tests: one on-policy GRPO iteration on the tiny
model, then exports that the stock pipeline loads (``from_pretrained`` for full fine-tuning,
``load_lora_weights`` for LoRA) and that reproduce the trained transformer's outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from fastvideo.distributed import DistEnv
from tests.toy_models import BrightnessRewards
from tests.trainer_utils import toy_config


def tiny_trainer(tmp_path: Path, model_cfg, **overrides):
    """A GRPOTrainer on the tiny model ``model_cfg``: 2 prompts x G 2, 3 steps, brightness reward."""
    from fastvideo.training.trainer import GRPOTrainer

    cfg = toy_config(tmp_path, **overrides)
    cfg.model = model_cfg
    for key, value in overrides.items():  # model__* overrides apply to the given model config
        section, name = key.split("__")
        if section == "model":
            setattr(cfg.model, name, value)
    cfg.sampler.num_steps, cfg.sampler.shift, cfg.sampler.eta = 3, 3.0, 0.3
    cfg.grpo.group_size, cfg.grpo.timestep_fraction = 2, 1.0
    cfg.train.prompts_per_iteration, cfg.train.max_iterations, cfg.train.train_batch_size = 2, 1, 4
    return GRPOTrainer(cfg, DistEnv(), rewards=BrightnessRewards())


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def run_on_policy_iteration(trainer) -> set[str]:
    """One iteration; asserts the first PPO ratio is exactly 1; returns the names of the parameters that moved."""
    before = snapshot(trainer.model)
    metrics = trainer.train_iteration()
    assert abs(metrics["ratio_mean"] - 1.0) < 1e-5 and abs(metrics["ratio_max"] - 1.0) < 1e-5, metrics
    return {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}


def assert_reproduces(trainer, module) -> None:
    """``module`` (a stock-loaded transformer) gives the trained policy's outputs through the adapter (CFG on)."""
    cond = trainer.data.conditioning([0, 1])
    x = torch.randn(2, *trainer.adapter.latent_shape(), generator=torch.Generator().manual_seed(0))
    t = trainer.sampler.model_timestep(1, 2)
    with torch.no_grad():
        ours = trainer.adapter.predict(x, t, cond)
        trainer.adapter.transformer, policy = module, trainer.adapter.transformer
        try:
            theirs = trainer.adapter.predict(x, t, cond)
        finally:
            trainer.adapter.transformer = policy
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)


def full_export_loads_in_stock_pipeline(trainer, tmp_path: Path, pipeline_dir: Path, pipeline_cls) -> None:
    """export_trained -> <export>/transformer; the stock pipeline loads a copy of the base directory with it."""
    from fastvideo.export import export_trained

    out = export_trained(trainer, tmp_path / "export")
    assert (out / "diffusion_pytorch_model.safetensors").exists() and (out / "config.json").exists()
    tuned = shutil.copytree(pipeline_dir, tmp_path / "tuned")
    shutil.rmtree(tuned / "transformer")
    shutil.copytree(out, tuned / "transformer")
    pipe = pipeline_cls.from_pretrained(str(tuned))
    assert_reproduces(trainer, pipe.transformer)


def lora_export_loads_with_load_lora_weights(trainer, tmp_path: Path, stock_pipe) -> None:
    """export_trained -> pytorch_lora_weights.safetensors; ``stock_pipe.load_lora_weights`` reproduces the policy."""
    from fastvideo.export import export_trained

    out = export_trained(trainer, tmp_path / "export")
    assert (out / "pytorch_lora_weights.safetensors").exists()
    stock_pipe.load_lora_weights(str(out))
    assert_reproduces(trainer, stock_pipe.transformer)

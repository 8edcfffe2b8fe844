"""The trainer on tiny real models (diffusers FLUX transformer / SD UNet): on-policy ratio, parameters
that change (all of them, or only LoRA's), exports that stock diffusers classes load."""

from __future__ import annotations

import pytest
import torch

from fastvideo.distributed import DistEnv
from tests.toy_models import BrightnessRewards
from tests.trainer_utils import toy_config


def _model_config(tmp_path, name, **overrides):
    cfg = toy_config(tmp_path, **overrides)
    cfg.model.name, cfg.model.tiny = name, True
    cfg.model.height = cfg.model.width = 32
    cfg.model.guidance_scale = 5.0 if name == "sd" else 3.5
    cfg.sampler.num_steps = 4
    cfg.grpo.group_size = 2
    cfg.grpo.timestep_fraction = 0.7
    cfg.train.prompts_per_iteration = 2
    cfg.train.max_iterations = 1
    return cfg


def _trainer(cfg):
    from fastvideo.training.trainer import GRPOTrainer

    return GRPOTrainer(cfg, DistEnv(), rewards=BrightnessRewards())


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flux", "sd"])
def test_full_finetune_is_on_policy_and_updates_every_parameter(tmp_path, name):
    trainer = _trainer(_model_config(tmp_path, name))
    before = _snapshot(trainer.model)
    metrics = trainer.train_iteration()
    assert abs(metrics["ratio_mean"] - 1.0) < 1e-5 and abs(metrics["ratio_max"] - 1.0) < 1e-5
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(before[n], p.detach())]
    assert not unchanged, f"parameters that did not change: {unchanged[:5]}"


@pytest.mark.slow
def test_lora_updates_only_lora_parameters_and_exports_for_stock_pipeline(tmp_path):
    from fastvideo.export import export_trained
    from fastvideo.models.tiny import tiny_pipeline

    cfg = _model_config(tmp_path, "flux", model__lora_rank=4, model__lora_alpha=8.0)
    trainer = _trainer(cfg)
    before = _snapshot(trainer.model)
    trainer.train_iteration()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}
    lora = {n for n in before if "lora_" in n}
    assert lora and changed == lora
    out = export_trained(trainer, tmp_path / "export")
    pipe = tiny_pipeline("flux")
    pipe.load_lora_weights(str(out))
    _assert_same_outputs(trainer, pipe.transformer)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flux", "sd"])
def test_full_export_loads_in_stock_class_and_reproduces_outputs(tmp_path, name):
    from fastvideo.export import export_trained

    trainer = _trainer(_model_config(tmp_path, name))
    trainer.train_iteration()
    out = export_trained(trainer, tmp_path / "export")
    cls = type(trainer.model)
    loaded = cls.from_pretrained(str(out))
    assert (out / "diffusion_pytorch_model.safetensors").exists()
    _assert_same_outputs(trainer, loaded)


def _assert_same_outputs(trainer, module):
    cond = trainer.data.conditioning([0, 1])
    shape = trainer.adapter.latent_shape()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    t = trainer.sampler.model_timestep(1, 2)
    with torch.no_grad():
        ours = trainer.adapter.predict(x, t, cond)
        trainer.adapter.transformer, policy = module, trainer.adapter.transformer
        try:
            theirs = trainer.adapter.predict(x, t, cond)
        finally:
            trainer.adapter.transformer = policy
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_ema_export_holds_the_ema_weights(tmp_path):
    from safetensors.torch import load_file

    from fastvideo.export import export_trained

    trainer = _trainer(_model_config(tmp_path, "flux", train__ema_decay=0.5))
    trainer.train_iteration()
    out = export_trained(trainer, tmp_path / "export")
    policy = load_file(str(out / "diffusion_pytorch_model.safetensors"))
    ema = load_file(str(tmp_path / "export" / "ema" / "transformer" / "diffusion_pytorch_model.safetensors"))
    params = dict(trainer.model.named_parameters())
    for name, shadow in trainer.ema.shadow.items():
        torch.testing.assert_close(ema[name], shadow)
        torch.testing.assert_close(policy[name], params[name].detach())
    assert any(not torch.equal(ema[n], policy[n]) for n in trainer.ema.shadow)

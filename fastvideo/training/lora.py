"""LoRA through peft, attached with the diffusers model's own ``add_adapter``."""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from fastvideo.config import ModelConfig


def add_lora(transformer: nn.Module, cfg: ModelConfig, default_targets: list[str]) -> nn.Module:
    """Freeze the base weights and add LoRA adapters (rank r, alpha, targets) to ``transformer``.

    Scaling of the adapter output is alpha / r (peft convention). Only LoRA weights stay trainable.
    """
    from peft import LoraConfig

    targets = list(cfg.lora_targets) or list(default_targets)
    alpha = cfg.lora_alpha if cfg.lora_alpha > 0 else float(cfg.lora_rank)
    transformer.requires_grad_(False)
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=alpha, target_modules=targets, init_lora_weights="gaussian")
    transformer.add_adapter(config)
    return transformer


def lora_state_dict(full_state: dict, transformer: nn.Module) -> dict:
    """The LoRA weights of a (full, unsharded) transformer state dict, in peft key format."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(transformer, state_dict=full_state)


def is_lora(cfg: ModelConfig) -> bool:
    return cfg.lora_rank > 0


@contextmanager
def lora_off(model):
    """The base model's function for the block: LoRA adapters disabled (peft), enabled again after."""
    model.disable_adapters()
    try:
        yield
    finally:
        model.enable_adapters()

"""Optimizer, learning-rate schedule and EMA of the trainable weights."""

from __future__ import annotations

import torch
from torch import nn

from fastvideo.config import TrainConfig


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def build_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the parameters that require grad (the LoRA weights in LoRA mode)."""
    params = trainable_parameters(module)
    if not params:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                             weight_decay=cfg.weight_decay)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_updates: int):
    """diffusers ``get_scheduler`` by name (constant_with_warmup, cosine, linear, ...)."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(cfg.lr_scheduler, optimizer=optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                         num_training_steps=max(total_updates, 1))


class EMA:
    """Exponential moving average of the trainable weights: e <- d*e + (1-d)*p after every update.

    Works on plain and FSDP2-sharded (DTensor) parameters alike: each rank averages its own shard.
    Checkpointed through ``state_dict`` / ``load_state_dict``.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = dict(module.named_parameters())
        self.shadow = {n: params[n].detach().clone().float() for n in self.names}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        params = dict(module.named_parameters())
        for n in self.names:
            self.shadow[n].lerp_(params[n].detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def swap(self, module: nn.Module) -> None:
        """Exchange model weights and EMA weights (call twice to restore)."""
        params = dict(module.named_parameters())
        for n in self.names:
            tmp = params[n].detach().clone()
            params[n].copy_(self.shadow[n].to(params[n].dtype))
            self.shadow[n].copy_(tmp.float())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for n in self.names:
            self.shadow[n].copy_(state[n])

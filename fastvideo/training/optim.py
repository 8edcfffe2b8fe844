"""Optimizer, learning-rate schedule and EMA of the trainable weights."""

from __future__ import annotations

import copy
from collections.abc import Mapping

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

    ``warmup=True`` (training from scratch, the shapes pretraining) uses d = min(decay, (1 + n) / (10 + n))
    at the n-th update, so the average forgets the random initialisation quickly. Shadows are fp32.
    Works on plain and FSDP2-sharded (DTensor) parameters alike: each rank averages its own shard.

    Use the average with ``swap`` (exchange it with the model's weights, twice to restore), ``copy_to``
    or ``averaged_copy`` (a frozen copy of the module carrying the EMA weights). A ``Stateful``:
    ``state_dict()`` = {parameter name: shadow, ..., ``"#updates"``: n} (the live shadows, not copies);
    ``load_state_dict`` copies the given values into the shadows.
    """

    UPDATES = "#updates"
    """State key of the update count (no parameter can be named so)."""

    def __init__(self, module: nn.Module, decay: float, *, warmup: bool = False):
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = dict(module.named_parameters())
        self.shadow = {n: params[n].detach().clone().float() for n in self.names}

    def current_decay(self) -> float:
        """The decay of the latest update (``warmup``: ramps up to ``decay``)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - self.current_decay()
        params = dict(module.named_parameters())
        for n in self.names:
            self.shadow[n].lerp_(params[n].detach().float(), weight)

    @torch.no_grad()
    def swap(self, module: nn.Module) -> None:
        """Exchange model weights and EMA weights (call twice to restore)."""
        params = dict(module.named_parameters())
        for n in self.names:
            tmp = params[n].detach().clone()
            params[n].copy_(self.shadow[n].to(params[n].dtype))
            self.shadow[n].copy_(tmp.float())

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite ``module``'s averaged parameters (same names) with the EMA weights."""
        params = dict(module.named_parameters())
        for n in self.names:
            params[n].copy_(self.shadow[n].to(params[n].dtype))

    def averaged_copy(self, module: nn.Module) -> nn.Module:
        """A deep copy of ``module`` (not FSDP-sharded) with the EMA weights, in eval mode, frozen."""
        averaged = copy.deepcopy(module).eval().requires_grad_(False)
        self.copy_to(averaged)
        return averaged

    def state_dict(self) -> dict:
        return {**self.shadow, self.UPDATES: self.updates}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping) -> None:
        if isinstance(state.get("shadow"), Mapping):  # the pretraining EMA's former {"shadow", "updates"}
            state = {**state["shadow"], self.UPDATES: state.get("updates", 0)}
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} averaged parameter(s), e.g. {missing[:3]}")
        for n in self.names:
            self.shadow[n].copy_(state[n])
        self.updates = int(state.get(self.UPDATES, 0))


class SoftCopy:
    """A frozen copy of a module that follows it slowly: DiffusionNFT's old policy theta_old (Zheng et al.
    2025, "Online Diffusion Reinforcement with Forward Process"). After each iteration

        theta_old <- d theta_old + (1 - d) theta,   d = min(decay_rate * n, decay_max)

    with n the optimizer steps taken so far (published: 0.001 n capped at 0.5; d = 0 at the start, so
    the copy equals the policy until n grows). Only the trainable weights (the LoRA adapters in a LoRA
    run) are averaged; the copy's frozen ones are the module's own at construction. ``module``: the
    copy (eval mode, no gradients; shard it like the model under FSDP2). A ``Stateful``:
    ``state_dict()`` = {parameter name: the copy's live weight, ..., ``"#steps"``: n}.
    """

    STEPS = "#steps"

    def __init__(self, model: nn.Module, decay_rate: float, decay_max: float):
        self.decay_rate, self.decay_max = decay_rate, decay_max
        self.steps = 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay_rate * self.steps, self.decay_max)

    def reshard(self) -> None:
        """Put the copy's FSDP2 parameters back to their shards. The copy only runs forward passes without
        gradient, after which FSDP2 keeps the root module's parameters gathered (plain tensors; it reshards
        them after backward), so ``update`` would mix them with the model's sharded DTensors."""
        from torch.distributed.fsdp import FSDPModule

        for module in self.module.modules():
            if isinstance(module, FSDPModule):
                module.reshard()

    @torch.no_grad()
    def update(self, model: nn.Module, optimizer_steps: int) -> float:
        """Count ``optimizer_steps`` more steps, then move the copy towards ``model``; returns the decay d."""
        self.steps += int(optimizer_steps)
        decay = self.current_decay()
        self.reshard()
        mine, theirs = dict(self.module.named_parameters()), dict(model.named_parameters())
        for n in self.names:
            mine[n].lerp_(theirs[n].detach().to(mine[n].dtype), 1.0 - decay)
        return decay

    def state_dict(self) -> dict:
        self.reshard()
        params = dict(self.module.named_parameters())
        return {**{n: params[n].detach() for n in self.names}, self.STEPS: self.steps}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping) -> None:
        self.reshard()
        params = dict(self.module.named_parameters())
        for n in self.names:
            if n not in state:
                raise KeyError(f"old-policy state lacks {n!r}")
            params[n].copy_(state[n])
        self.steps = int(state[self.STEPS])

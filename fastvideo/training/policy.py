"""The trained policy's setup, shared by the trainer and the dry run (``fastvideo.dryrun``).

``prepare_policy`` turns the adapter's denoiser into what the objective trains: LoRA adapters or all
weights trainable, the frozen reference copy of the KL term (full fine-tuning; a LoRA run disables its
adapters instead), DiffusionNFT's soft-updated old policy, activation checkpointing, then FSDP2 per block
(``fastvideo.distributed.shard_model``) for the model and each copy when several ranks run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from torch import nn

from fastvideo.distributed import DistEnv, enable_gradient_checkpointing, shard_model
from fastvideo.training.optim import SoftCopy


@dataclass
class Policy:
    model: nn.Module
    """The trained denoiser (possibly FSDP2-sharded, LoRA-wrapped)."""
    reference: nn.Module | None
    """Frozen copy of the base for the KL term (full fine-tuning with grpo.kl_coef > 0), else None."""
    old_policy: SoftCopy | None
    """DiffusionNFT's old policy, else None."""


def prepare_policy(cfg: Any, adapter: Any, env: DistEnv, old_policy: bool, mesh: Any = None) -> Policy:
    """Trainable weights, reference / old-policy copies, checkpointing and sharding of ``adapter.transformer``.

    ``old_policy``: the objective keeps a soft-updated copy (``OBJECTIVE_SPECS[...].old_policy``);
    ``mesh``: the FSDP2 device mesh (None: fully_shard's default over all ranks).
    """
    model, reference = adapter.transformer, None
    if cfg.model.lora_rank > 0:
        from fastvideo.training.lora import add_lora

        add_lora(model, cfg.model, adapter.default_lora_targets)
    else:
        model.requires_grad_(True)
        if cfg.grpo.kl_coef > 0:
            reference = copy.deepcopy(model).requires_grad_(False)
    g = cfg.grpo  # NFT's old policy: a frozen copy (with the LoRA adapters) that follows the model slowly
    old = SoftCopy(model, g.nft_old_decay_rate, g.nft_old_decay_max) if old_policy else None
    if cfg.model.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    if env.distributed and cfg.train.fsdp:
        blocks = adapter.transformer_blocks()
        shard_model(model, blocks, env, cfg.train.mixed_precision, mesh=mesh)
        for copied in (reference, old and old.module):
            if copied is not None:
                copied_blocks = [m for m in copied.modules() if type(m) in {type(b) for b in blocks}]
                shard_model(copied, copied_blocks, env, cfg.train.mixed_precision, mesh=mesh)
    return Policy(model, reference, old)

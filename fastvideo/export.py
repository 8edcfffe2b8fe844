"""Export trained weights in formats stock diffusers loads.

- Full fine-tuning: ``<out>/transformer`` (or the denoiser's own subfolder name) via the model
  class' ``save_pretrained`` (safetensors + config.json), loadable with ``<Class>.from_pretrained``.
- LoRA: ``<out>/pytorch_lora_weights.safetensors`` via the pipeline's ``save_lora_weights``,
  loadable with ``pipeline.load_lora_weights(out)``.
- EMA: the same, with the EMA weights, into ``<out>/ema``.
Under FSDP2 the full state dict is gathered to CPU and written by rank 0 only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from fastvideo.distributed import barrier

logger = logging.getLogger("fastvideo")


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """Unsharded CPU state dict of a plain or FSDP2 model (collective under FSDP: all ranks call)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _write(adapter, model, state: dict, out_dir: Path, lora: bool) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    if lora:

        from fastvideo.training.lora import lora_state_dict

        layers = lora_state_dict(state, model)
        prefix = getattr(adapter, "transformer_subfolder", "transformer")  # diffusers' LoRA key prefix: unet / transformer
        metadata = _unwrap(model).peft_config["default"].to_dict()  # keeps alpha / rank scaling
        for key, value in list(metadata.items()):
            if isinstance(value, set):
                metadata[key] = sorted(value)
        _pipeline_class(adapter).save_lora_weights(
            str(out_dir), **{f"{prefix}_lora_layers": layers, f"{prefix}_lora_adapter_metadata": metadata})
        return out_dir
    clean = type(model).from_config(model.config) if hasattr(model, "config") else None
    if clean is None:
        raise TypeError(f"cannot export {type(model).__name__}: no diffusers config")
    clean.load_state_dict({k: v for k, v in state.items()}, strict=True)
    sub = out_dir / getattr(adapter, "transformer_subfolder", "transformer")
    clean.save_pretrained(str(sub), safe_serialization=True)
    return sub


def _unwrap(model):
    from fastvideo.models.base import unwrap_module

    return unwrap_module(model)


def _pipeline_class(adapter):
    import diffusers

    return getattr(diffusers, adapter.pipeline_class_name)


def export_trained(trainer, out_dir: str | Path) -> Path | None:
    """Export the trainer's policy (and its EMA weights if any) to ``out_dir``; returns the path on rank 0."""
    out_dir = Path(out_dir)
    lora = trainer.cfg.model.lora_rank > 0
    state = full_state_dict(trainer.model)
    path = _write(trainer.adapter, trainer.model, state, out_dir, lora) if trainer.env.is_main else None
    if trainer.ema is not None:
        # the (CPU) state dict can share storage with the parameters: write before swapping back
        trainer.ema.swap(trainer.model)
        try:
            ema_state = full_state_dict(trainer.model)
            if trainer.env.is_main:
                _write(trainer.adapter, trainer.model, ema_state, out_dir / "ema", lora)
        finally:
            trainer.ema.swap(trainer.model)
    barrier()
    if path is not None:
        logger.info("exported trained weights to %s", path)
    return path

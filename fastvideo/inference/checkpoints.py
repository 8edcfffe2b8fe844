"""Load a base model and apply trained weights to it, for inference (the base directory is never written).

Accepted ``checkpoint`` values (``resolve_checkpoint``):

- ``None`` / ``"base"``: the base model as configured (``model.path`` or ``model.tiny``);
- a **run directory** (holds ``config.yaml`` and ``export/`` or ``checkpoints/``): its ``export/``
  if present, else its latest complete DCP checkpoint ``checkpoints/iter-XXXXXX``;
- an **export directory** (``fastvideo.export``): ``<dir>/transformer`` or ``<dir>/unet`` (a full
  diffusers ``save_pretrained`` folder), or ``<dir>/pytorch_lora_weights.safetensors`` (LoRA);
- a diffusers model folder itself (``config.json`` + weights), e.g. ``<run>/export/transformer``;
- a **DCP checkpoint** ``<run>/checkpoints/iter-XXXXXX`` (needs ``<run>/config.yaml`` for LoRA runs:
  the adapter is added with its ``model.lora_rank/lora_alpha/lora_targets`` before loading).

``which="ema"`` selects the EMA weights: ``<export>/ema`` for exports, the ``ema`` entry of a DCP
checkpoint. LoRA weights are fused into the denoiser by default (plain module, no peft overhead).
"""

from __future__ import annotations

import gc
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fastvideo.errors import UserError
from fastvideo.models.base import ModelAdapter, resolve_dtype

logger = logging.getLogger("fastvideo")

WHICH = ("policy", "ema")
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
_MODEL_WEIGHT_PATTERNS = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin",
                          "*.safetensors")


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """A checkpoint, run directory or export a command was pointed at does not exist (or lacks a part)."""


@dataclass(frozen=True)
class CheckpointSpec:
    """A resolved checkpoint: what to load (``kind``) from where, and which weights."""

    kind: str
    """'base' | 'full' (diffusers model folder) | 'lora' (LoRA export folder) | 'dcp' (training checkpoint)."""
    path: Path | None
    which: str = "policy"
    run_config: Path | None = None
    """The run's config.yaml (DCP checkpoints: LoRA settings), when known."""

    def describe(self) -> str:
        where = "" if self.path is None else f" {self.path}"
        return f"{self.kind}{where} ({self.which})"


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        any(True for _ in path.glob(pattern)) for pattern in _MODEL_WEIGHT_PATTERNS)


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and ((path / "export").is_dir() or (path / "checkpoints").is_dir())


def resolve_checkpoint(checkpoint: str | Path | None, which: str = "policy",
                       subfolder: str = "transformer") -> CheckpointSpec:
    """Decide what ``checkpoint`` is (see the module docstring); ``subfolder`` = the denoiser's folder name."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if checkpoint is None or str(checkpoint) in ("", "base"):
        if which == "ema":
            raise ValueError("the base model has no EMA weights (which='ema' needs a checkpoint)")
        return CheckpointSpec("base", None, which)
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    if _is_run_dir(path):
        if (path / "export").is_dir():
            return _resolve_export(path / "export", which, subfolder, path / "config.yaml")
        from fastvideo.training.checkpoint import list_checkpoints

        found = list_checkpoints(path / "checkpoints")
        if not found:
            raise CheckpointNotFoundError(f"run {path} has neither export/ nor a complete checkpoint under checkpoints/")
        return CheckpointSpec("dcp", found[-1], which, path / "config.yaml")
    if (path / "COMPLETE").is_file():
        run_config = path.parent.parent / "config.yaml"
        return CheckpointSpec("dcp", path, which, run_config if run_config.is_file() else None)
    return _resolve_export(path, which, subfolder, None)


def _resolve_export(path: Path, which: str, subfolder: str, run_config: Path | None) -> CheckpointSpec:
    if which == "ema" and "ema" not in path.parts[-2:]:  # not already <export>/ema or <export>/ema/<subfolder>
        if not (path / "ema").is_dir():
            raise CheckpointNotFoundError(f"{path} holds no EMA export ({path / 'ema'}); train with train.ema_decay > 0")
        path = path / "ema"
    if (path / LORA_WEIGHTS).is_file():
        return CheckpointSpec("lora", path, which, run_config)
    if _is_model_dir(path / subfolder):
        return CheckpointSpec("full", path / subfolder, which, run_config)
    if _is_model_dir(path):
        return CheckpointSpec("full", path, which, run_config)
    raise CheckpointNotFoundError(
        f"{path} is not a checkpoint: expected a run directory (config.yaml + export/ or checkpoints/), "
        f"an export directory ({subfolder}/ or {LORA_WEIGHTS}), a diffusers model folder (config.json + "
        "weights) or a DCP checkpoint (iter-XXXXXX with COMPLETE)")


def load_policy(model_cfg, checkpoint: str | Path | None = None, device: torch.device | str = "cpu",
                which: str = "policy", *, dtype: str | torch.dtype = "auto", fuse_lora: bool = True) -> ModelAdapter:
    """The adapter of ``model_cfg`` (base pipeline from ``model_cfg.path`` or tiny) with ``checkpoint`` applied."""
    from fastvideo.models import build_adapter

    adapter = build_adapter(model_cfg, device)
    return apply_checkpoint(adapter, checkpoint, which, dtype=dtype, fuse_lora=fuse_lora)


def apply_checkpoint(adapter: ModelAdapter, checkpoint: str | Path | CheckpointSpec | None,
                     which: str = "policy", *, dtype: str | torch.dtype = "auto",
                     fuse_lora: bool = True) -> ModelAdapter:
    """Replace the adapter's denoiser by a fresh base denoiser with ``checkpoint`` applied (in place).

    The VAE and text encoders already loaded are kept, so one adapter can visit several checkpoints.
    ``dtype``: weight dtype of the denoiser ('auto' = the adapter's frozen-part dtype: bf16 on GPU,
    fp32 on CPU; or 'fp32' / 'bf16' / 'fp16' / a torch dtype).
    """
    spec = checkpoint if isinstance(checkpoint, CheckpointSpec) else resolve_checkpoint(
        checkpoint, which, adapter.transformer_subfolder)
    target = _target_dtype(adapter, dtype)
    _release_transformer(adapter)
    if spec.kind == "full":
        module = _load_model_folder(spec.path, target)
    elif spec.kind == "base":
        module = adapter.source.load(adapter.transformer_subfolder, target)
    else:
        module = adapter.source.load(adapter.transformer_subfolder, torch.float32)  # merge in fp32
        if spec.kind == "lora":
            _load_lora_export(module, spec.path)
        elif spec.kind == "dcp":
            _load_dcp(adapter, module, spec)
        if fuse_lora and getattr(module, "peft_config", None):
            module.fuse_lora()
            module.unload_lora()
    if any(p.dtype != target for p in module.parameters()):
        module = module.to(dtype=target)  # diffusers warns on a cast to the dtype a module already has
    adapter.transformer = module.to(adapter.device).eval().requires_grad_(False)
    logger.info("denoiser: %s", spec.describe())
    return adapter


def _target_dtype(adapter: ModelAdapter, dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    return adapter.dtype if dtype == "auto" else resolve_dtype(dtype, adapter.device)


def _release_transformer(adapter: ModelAdapter) -> None:
    """Drop the adapter's current denoiser before loading another (two FLUX copies may not fit)."""
    # ModelAdapter has no public "unload"; its lazily loaded denoiser lives in ``_transformer``.
    adapter._transformer = None
    gc.collect()
    if adapter.device.type == "cuda":
        torch.cuda.empty_cache()


def _load_model_folder(path: Path, dtype: torch.dtype) -> nn.Module:
    """A diffusers model folder via the class named in its config.json (``_class_name``)."""
    import diffusers

    class_name = json.loads((path / "config.json").read_text()).get("_class_name")
    cls = getattr(diffusers, class_name or "", None)
    if cls is None:
        raise ValueError(f"{path}/config.json names no diffusers model class (_class_name={class_name!r})")
    return cls.from_pretrained(str(path), torch_dtype=dtype)


def _load_lora_export(module: nn.Module, path: Path) -> None:
    """Add the LoRA of ``<path>/pytorch_lora_weights.safetensors`` (rank/alpha from its metadata)."""
    from safetensors import safe_open

    with safe_open(str(path / LORA_WEIGHTS), framework="pt") as f:
        prefixes = {key.split(".", 1)[0] for key in f.keys()}
    if len(prefixes) != 1:
        raise ValueError(f"{path / LORA_WEIGHTS}: expected the LoRA of one denoiser, found prefixes {sorted(prefixes)}")
    module.load_lora_adapter(str(path), prefix=prefixes.pop(), weight_name=LORA_WEIGHTS, adapter_name="default")


def _dcp_keys(path: Path) -> set[str]:
    from torch.distributed.checkpoint import FileSystemReader

    return set(FileSystemReader(str(path)).read_metadata().state_dict_metadata)


def _load_dcp(adapter: ModelAdapter, module: nn.Module, spec: CheckpointSpec) -> None:
    """Load a training checkpoint's policy (``model``) or EMA (``ema``) weights into a plain module.

    ``no_dist``: every rank reads the full weights on its own (no collective, whatever the world size).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        set_model_state_dict,
    )

    keys = _dcp_keys(spec.path)
    _prepare_trainable(adapter, module, spec, keys)
    if spec.which == "policy":
        state = get_model_state_dict(module, options=StateDictOptions(ignore_frozen_params=True))
        _dcp_load(dcp, {"model": state}, spec.path)  # every requested key must exist
        set_model_state_dict(module, state, options=StateDictOptions(ignore_frozen_params=True, strict=False))
    else:
        if not any(key.startswith("ema.") for key in keys):
            raise KeyError(f"{spec.path} holds no EMA weights (the run had train.ema_decay = 0)")
        params = dict(module.named_parameters())
        shadow = {n: p.detach().clone().float() for n, p in params.items() if p.requires_grad}
        _dcp_load(dcp, {"ema": shadow}, spec.path)
        with torch.no_grad():
            for name, value in shadow.items():
                params[name].copy_(value.to(params[name].dtype))


def _dcp_load(dcp, state: dict, path: Path) -> None:
    """DCP load in this process only (no collective), without DCP's 'single process' warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(path), no_dist=True)


def _prepare_trainable(adapter: ModelAdapter, module: nn.Module, spec: CheckpointSpec, keys: set[str]) -> None:
    """Make the module's trainable parameters those of the run: LoRA added with the run's settings, or all."""
    is_lora = any(".lora_A." in key for key in keys)
    if not is_lora:
        module.requires_grad_(True)
        return
    if spec.run_config is None:
        raise CheckpointNotFoundError(f"{spec.path} is a LoRA checkpoint: its run's config.yaml (model.lora_rank, "
                                "lora_alpha, lora_targets) is needed, expected two levels up")
    from fastvideo.config import load_config
    from fastvideo.training.lora import add_lora

    run_model = load_config(spec.run_config).model
    if run_model.name != adapter.name:
        raise ValueError(f"{spec.path} was trained with model {run_model.name!r}, not {adapter.name!r}")
    add_lora(module, run_model, adapter.default_lora_targets)

"""The ``ModelAdapter`` contract (docs/ARCHITECTURE.md) and what all adapters share.

An adapter hides one model family behind a few calls: encode prompts, the per-sample latent shape,
one denoiser evaluation (``predict``), decoding, and the blocks FSDP shards. Components (denoiser,
VAE, text encoders, tokenizers) are loaded lazily through a ``ComponentSource`` (``sources.py``) so that

- preprocessing loads only the text encoders (never the denoiser or the VAE), and
- training from a prompt-embedding cache never loads the text encoders.

Conditioning is a dict of batch-first tensors (``cond_batch_keys``); ``select_cond``, ``cat_cond``
and ``repeat_cond`` index, concatenate and repeat such dicts row-wise.
"""

from __future__ import annotations

import abc
import copy
import gc
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.models.sources import ComponentSource

Cond = dict[str, Tensor]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPES = ("auto", *_DTYPES)
"""Names ``resolve_dtype`` accepts (``model.dtype``, the inference ``--dtype`` flag)."""
FIRST_FRAME_SCENES = ("per_prompt", "per_iteration")
"""``model.first_frame_scenes``: how often an image-to-video frame source that draws scenes draws a new one."""


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Weight dtype of frozen parts: 'auto' = bf16 on a GPU that supports it, else fp32."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


# --- conditioning dicts ---------------------------------------------------------------------------


def select_cond(cond: Cond, index: Tensor | Sequence[int] | slice | int) -> Cond:
    """Rows ``index`` of every tensor of ``cond`` (an int keeps the batch dim)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    elif not isinstance(index, slice | Tensor):
        index = torch.as_tensor(list(index), dtype=torch.long)
    return {key: value[index.to(value.device) if isinstance(index, Tensor) else index]
            for key, value in cond.items()}


def cat_cond(conds: Sequence[Cond]) -> Cond:
    """Concatenate conditioning dicts along the batch dim (all must have the same keys)."""
    if not conds:
        raise ValueError("cat_cond needs at least one conditioning dict")
    keys = set(conds[0])
    for cond in conds[1:]:
        if set(cond) != keys:
            raise ValueError(f"conditioning dicts have different keys: {sorted(keys)} vs {sorted(cond)}")
    return {key: torch.cat([cond[key] for cond in conds]) for key in conds[0]}


def repeat_cond(cond: Cond, repeats: int) -> Cond:
    """Repeat each row ``repeats`` times consecutively (row0, row0, ..., row1, ...): G samples per prompt."""
    return {key: value.repeat_interleave(repeats, dim=0) for key, value in cond.items()}


def cond_to(cond: Cond, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Cond:
    """Move (and optionally cast floating tensors of) a conditioning dict."""
    return {key: value.to(device=device, dtype=dtype if value.is_floating_point() else None)
            for key, value in cond.items()}


# --- packed latents (FLUX, Qwen-Image) -------------------------------------------------------------


def pack_2x2(latents: Tensor) -> Tensor:
    """(B, C, h, w) VAE latents -> (B, (h/2)*(w/2), 4C) tokens of 2x2 patches (``FluxPipeline._pack_latents``;
    ``QwenImagePipeline``'s is the same)."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_2x2(latents: Tensor, h: int, w: int) -> Tensor:
    """Inverse of ``pack_2x2`` for an (h, w) latent image."""
    b, _, channels = latents.shape
    x = latents.reshape(b, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels // 4, h, w)


def unwrap_module(module: nn.Module) -> nn.Module:
    """The underlying diffusers model of a PEFT-wrapped module (FSDP2 keeps the class itself)."""
    return module.get_base_model() if hasattr(module, "get_base_model") else module


# --- the adapter ----------------------------------------------------------------------------------


class ModelAdapter(abc.ABC):
    """One model family behind the interface the rollout and trainer use (see docs/ARCHITECTURE.md).

    Subclasses set the class attributes and implement the abstract methods; loading is lazy and
    goes through ``component(name)``.
    """

    name: str = ""
    paradigm: str = ""  # "flow" or "diffusion"
    default_lora_targets: list[str] = []
    cond_batch_keys: tuple[str, ...] = ()
    """Keys of the dict ``encode_prompts`` returns (all batch-first)."""
    pipeline_class_name: str = ""
    """diffusers pipeline class of the exported model (model_index.json)."""
    transformer_subfolder: str = "transformer"
    """Subfolder of the denoiser in a diffusers pipeline directory."""
    text_component_names: tuple[str, ...] = ()
    """Text encoders and tokenizers: loaded only by ``load_text_encoders``/``encode_prompts``."""
    real_cfg_field: str | None = None
    """The ``model_cfg`` field holding the real classifier-free guidance scale (``v_u + s (v_c - v_u)``; s <= 1
    evaluates the conditional branch alone); None for models without an unconditional branch (FLUX's embedded
    guidance)."""

    def __init__(self, source: ComponentSource, model_cfg: Any, device: torch.device):
        self.source = source
        self.model_cfg = model_cfg
        self.device = torch.device(device)
        self.dtype: torch.dtype = resolve_dtype(getattr(model_cfg, "dtype", "auto"), self.device)
        """Weight dtype of the frozen parts (VAE, text encoders)."""
        self._components: dict[str, Any] = {}
        self._transformer: nn.Module | None = None

    # components -------------------------------------------------------------------------------
    def component(self, name: str) -> Any:
        """A frozen component, loaded (to ``self.device`` in ``self.dtype``, eval mode) on first use."""
        if name == self.transformer_subfolder:
            return self.transformer
        if name not in self._components:
            value = self.source.load(name, self.dtype)
            if isinstance(value, nn.Module):
                value = value.to(self.device).eval().requires_grad_(False)
            self._components[name] = value
        return self._components[name]

    def loaded_components(self) -> set[str]:
        """Names of the components currently held in memory."""
        return set(self._components) | ({self.transformer_subfolder} if self._transformer is not None else set())

    @property
    def transformer(self) -> nn.Module:
        """The denoiser GRPO trains: fp32 master weights, trainable, in eval mode.

        Eval mode keeps dropout (if a config has any) off, so the rollout and the training pass
        evaluate the same function and the first PPO ratio is exactly 1.
        """
        if self._transformer is None:
            module = self.source.load(self.transformer_subfolder, torch.float32)
            self._transformer = module.to(self.device).eval()
            self._on_transformer_loaded(unwrap_module(self._transformer))
        return self._transformer

    @transformer.setter
    def transformer(self, module: nn.Module) -> None:
        """Replace the denoiser (e.g. by its FSDP/PEFT-wrapped version)."""
        self._transformer = module
        self._on_transformer_loaded(unwrap_module(module))

    def variant(self, *, transformer: nn.Module | None = None, **model_options: Any) -> ModelAdapter:
        """A view of this adapter with another denoiser and/or other ``model_cfg`` values; this one is unchanged.

        ``transformer``: the module ``predict`` calls (e.g. the frozen reference policy of the KL term);
        ``model_options``: ``model_cfg`` fields such as ``guidance_scale`` (CFG-free rollouts), ``height``,
        ``width``; None keeps this adapter's value. The view shares every loaded component (and loads
        new ones into the shared cache). Without any change it is this adapter itself.
        """
        options = {key: value for key, value in model_options.items() if value is not None}
        unknown = [key for key in options if not hasattr(self.model_cfg, key)]
        if unknown:
            raise AttributeError(f"{type(self).__name__}.model_cfg has no field(s) {unknown}")
        if transformer is None and not options:
            return self
        policy = self.transformer  # loaded before the copy, so that the view and this adapter share it
        view = copy.copy(self)
        if options:
            view.model_cfg = copy.copy(self.model_cfg)
            for key, value in options.items():
                setattr(view.model_cfg, key, value)
        view._transformer = transformer if transformer is not None else policy
        return view

    def conditional_branch(self) -> ModelAdapter:
        """A view whose ``predict`` is the conditional branch ``v_c`` alone (real CFG scale 1): the model
        DiffusionNFT trains CFG-free while the rollouts keep the run's guidance (``grpo.train_cfg_free``)."""
        self.check_real_cfg()
        return self.variant(**{self.real_cfg_field: 1.0})

    def check_real_cfg(self) -> None:
        """Raise ValueError unless this model has real CFG (``real_cfg_field``)."""
        if self.real_cfg_field is None:
            raise ValueError(f"the {self.name or type(self).__name__} adapter has no real classifier-free guidance "
                             "(no unconditional branch), so there is no conditional branch to train alone "
                             "(grpo.train_cfg_free)")

    def _on_transformer_loaded(self, module: nn.Module) -> None:
        """Hook: read what predict needs from the denoiser's config (before any wrapping)."""
        return None

    def load_text_encoders(self) -> None:
        """Load the text encoders and tokenizers now (``encode_prompts`` would load them anyway)."""
        for name in self.text_component_names:
            self.component(name)

    def free_text_encoders(self) -> None:
        """Drop the text encoders and tokenizers (what they computed, e.g. the empty prompt, stays)."""
        for name in self.text_component_names:
            self._components.pop(name, None)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # prompt-independent tensors stored in the embedding cache -------------------------------
    def cache_extras(self) -> dict[str, Tensor]:
        """Prompt-independent tensors the cache stores beside the prompts (SD: the empty prompt)."""
        return {}

    def load_cache_extras(self, extras: dict[str, Tensor]) -> None:
        """Take back what ``cache_extras`` returned when the cache was written."""
        return None

    # export -----------------------------------------------------------------------------------
    def save_transformer(self, module_or_state_dict: nn.Module | dict[str, Tensor],
                         out_dir: str | os.PathLike[str]) -> Path:
        """Write the denoiser in diffusers format (config.json + safetensors) to ``out_dir``.

        Accepts the module itself, or a full (unsharded, unwrapped) state dict, which is loaded
        into a fresh instance of the denoiser's diffusers class first.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if isinstance(module_or_state_dict, nn.Module):
            module = unwrap_module(module_or_state_dict)
        else:
            reference = unwrap_module(self.transformer)
            with torch.device("meta"):
                module = type(reference).from_config(reference.config)
            module.load_state_dict(module_or_state_dict, assign=True, strict=True)
        if not hasattr(module, "save_pretrained"):
            raise TypeError(f"{type(module).__name__} is not a diffusers model (no save_pretrained)")
        module.save_pretrained(out, safe_serialization=True)
        return out

    # the contract -----------------------------------------------------------------------------
    @abc.abstractmethod
    def encode_prompts(self, prompts: list[str]) -> Cond:
        """Batch-first conditioning tensors (keys ``cond_batch_keys``) in ``self.dtype``."""

    @abc.abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """Per-sample latent shape, from the configured height/width (and frames)."""

    def latent_grid(self) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
        """(to_grid, from_grid): latents <-> (B, ..., H, W) spatial grid (block noise pools the last two
        dims). The identity for (B, C, [T,] H, W) latents; packed layouts override it."""
        return (lambda x: x), (lambda x: x)

    @abc.abstractmethod
    def predict(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """Denoiser output (fp32), same shape as ``latents``; CFG happens inside."""

    @abc.abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """(B, 3, H, W) images in [0, 1], fp32, without gradient."""

    @abc.abstractmethod
    def transformer_blocks(self) -> list[nn.Module]:
        """Sub-modules FSDP2 shards one by one (and activation checkpointing wraps)."""


def linear_module_names(module: nn.Module) -> Iterable[str]:
    """Qualified names of all ``nn.Linear`` sub-modules (to check LoRA target names)."""
    return (name for name, sub in module.named_modules() if isinstance(sub, nn.Linear))

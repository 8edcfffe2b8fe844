"""Real classifier-free guidance against a fixed negative prompt (SD3.5, Wan2.1, Qwen-Image adapters).

Guided output (Ho & Salimans 2022): ``v = v_u + s (v_c - v_u)`` with ``v_c`` the denoiser output for the
prompt and ``v_u`` for the negative prompt (the stock pipelines' default: the empty prompt), evaluated in
one denoiser call on the doubled batch [uncond, cond] (as ``StableDiffusion3Pipeline`` and DanceGRPO's
Wan2.1 trainer do; ``WanPipeline`` and ``QwenImagePipeline`` make two calls, which is the same function up to
float rounding). ``s <= 1`` evaluates the conditional branch only.

The negative prompt is encoded once, while the text encoders are loaded (``encode_prompts`` does it before
the prompts), survives ``free_text_encoders`` and travels with the prompt-embedding cache as
``negative_<key>`` tensors (``cache_extras``), so training from a cache never loads a text encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fastvideo.models.base import Cond

NEGATIVE_PREFIX = "negative_"

DenoiserCall = Callable[[Tensor, Tensor, Cond], Tensor]
"""(latents, timestep (B,), cond) -> fp32 output, one denoiser call."""


class NegativePromptCFG:
    """Mixin for ``ModelAdapter`` subclasses with real CFG; they define ``encode_text`` and ``cfg_scale``."""

    negative_prompt: str = ""
    """The prompt of the unconditional branch."""
    _negative: Cond | None = None

    @property
    def cfg_scale(self) -> float:
        """The guidance scale s of ``guided`` (<= 1: no unconditional branch)."""
        raise NotImplementedError

    def encode_text(self, prompts: list[str]) -> Cond:
        raise NotImplementedError

    def negative_cond(self) -> Cond:
        """Conditioning (1 row) of ``negative_prompt``: encoded once, or taken from the embedding cache."""
        if self._negative is None:
            self._negative = self.encode_text([self.negative_prompt])
        return self._negative

    def cache_extras(self) -> dict[str, Tensor]:
        """The negative prompt's conditioning, stored beside the prompts (always: the CFG scale is a run choice)."""
        return {NEGATIVE_PREFIX + key: value.detach().cpu() for key, value in self.negative_cond().items()}

    def load_cache_extras(self, extras: dict[str, Tensor]) -> None:
        keys = self.cond_batch_keys  # type: ignore[attr-defined]
        missing = [NEGATIVE_PREFIX + key for key in keys if NEGATIVE_PREFIX + key not in extras]
        if missing and self.cfg_scale > 1.0:
            raise KeyError(f"the embedding cache has no {missing} (the negative prompt of classifier-free guidance, "
                           f"scale {self.cfg_scale}); re-run the {self.name} preprocessing")  # type: ignore[attr-defined]
        if not missing:
            self._negative = {key: extras[NEGATIVE_PREFIX + key].to(self.device) for key in keys}  # type: ignore

    def combine(self, uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
        """``uncond + scale (cond - uncond)`` (adapters with a rescaled CFG override this)."""
        return uncond + scale * (cond - uncond)

    def guided(self, call: DenoiserCall, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """``call`` with CFG at ``cfg_scale``: one call on [negative, cond] (batch 2B), then ``combine``."""
        scale = self.cfg_scale
        if scale <= 1.0:
            return call(latents, timestep, cond)
        batch, device = latents.shape[0], latents.device
        negative = {key: value.to(device).expand(batch, *value.shape[1:]) for key, value in self.negative_cond().items()}
        both = {key: _cat(negative[key], cond[key].to(device)) for key in cond}
        t = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch)
        uncond, conditional = call(_cat(latents, latents), _cat(t, t), both).chunk(2)
        return self.combine(uncond, conditional, scale)


def _cat(first: Tensor, second: Tensor) -> Tensor:
    return torch.cat([first, second.to(first.dtype)])

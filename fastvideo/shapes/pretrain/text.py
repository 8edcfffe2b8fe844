"""Prompt encoding exactly as the stock pipelines do it, so training and ``pipe(prompt)`` agree.

- FLUX: CLIP pooled output (padding to 77) + T5 last hidden state (padding to ``T5_MAX_LENGTH``).
- SD: CLIP last hidden state (padding to 77, no attention mask).
"""

from __future__ import annotations

import torch
from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer

from fastvideo.shapes.pretrain.components import T5_MAX_LENGTH


def clip_ids(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def t5_ids(tokenizer: T5Tokenizer, prompts: list[str], max_length: int = T5_MAX_LENGTH) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                     return_tensors="pt").input_ids


def flux_text(clip: CLIPTextModel, clip_tokenizer: CLIPTokenizer, t5: T5EncoderModel, t5_tokenizer: T5Tokenizer,
              prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled (B, D_clip), sequence (B, T5_MAX_LENGTH, D_t5)) as FluxPipeline.encode_prompt computes them."""
    pooled = clip(clip_ids(clip_tokenizer, prompts), output_hidden_states=False).pooler_output
    sequence = t5(t5_ids(t5_tokenizer, prompts), output_hidden_states=False)[0]
    return pooled, sequence


def sd_text(clip: CLIPTextModel, clip_tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """(B, 77, D) as StableDiffusionPipeline.encode_prompt computes it (clip_skip None)."""
    return clip(clip_ids(clip_tokenizer, prompts))[0]

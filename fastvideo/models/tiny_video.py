"""Tiny randomly initialised HunyuanVideo / SkyReels-V1-I2V components of the real classes, built offline.

Same idea as ``fastvideo.models.tiny`` (FLUX/SD): every component is the genuine diffusers or
transformers class at a toy size, so the video adapters, their tests and CPU debug runs exercise the
code paths of the full models.

- VAE: ``AutoencoderKLHunyuanVideo`` with three blocks of 8 channels, 4 latent channels, spatial
  factor 4 and temporal factor 4 (the real one: 8 and 4), so a 5-frame 32x32 clip has a
  (4, 2, 8, 8) latent.
- Denoiser: ``HunyuanVideoTransformer3DModel`` (1 double + 1 single block, 2 heads of 8, 2x2 patches,
  guidance embedding); the SkyReels-I2V variant doubles ``in_channels`` (noisy latent + image latent).
- Text: a 3-layer ``LlamaModel`` (width 16) with a WordPiece tokenizer wrapped in
  ``PreTrainedTokenizerFast`` (Llama-3 special tokens, BOS prepended, right padding) and the tiny CLIP
  text encoder / tokenizer of ``fastvideo.models.tiny`` (real CLIP vocabulary, pooled width 32).
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastvideo.models.sources import ComponentSource, in_memory_source
from fastvideo.models.tiny import (
    TINY_TEXT_DIM,
    _component_seed,
    _seeded,
    tiny_clip_text_encoder,
    tiny_clip_tokenizer,
)

VIDEO_KINDS = ("hunyuan", "skyreels_i2v")
TINY_LLAMA_DIM = 16
TINY_LATENT_CHANNELS = 4
HUNYUAN_VAE_SCALING_FACTOR = 0.476986  # HunyuanVideo VAE value
LLAMA_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                        "<|eot_id|>", "[UNK]")
_LLAMA_WORDS = (
    "describe the video by detailing following aspects main content and theme of color shape size texture "
    "quantity text spatial relationships objects actions events behaviors temporal physical movement changes "
    "background environment light style atmosphere camera angles movements transitions used in system user "
    "a an with at to is photo picture cat dog red blue green yellow black white house tree car sky sun moon "
    "water man woman person city street walks runs flies grass realistic"
).split()


# --- tokenizer and text encoder -------------------------------------------------------------------


def tiny_llama_tokenizer() -> Any:
    """The tiny models' Llama-style tokenizer (``word_piece_llama_tokenizer`` over a fixed word list)."""
    return word_piece_llama_tokenizer(_LLAMA_WORDS)


def word_piece_llama_tokenizer(words: Iterable[str]) -> Any:
    """``PreTrainedTokenizerFast`` over a WordPiece vocabulary (``words`` sorted, then characters as sub-words).

    Unknown words split into characters, so every prompt has a distinct tokenisation. Special tokens
    are those of Llama-3 that HunyuanVideo's prompt template uses; BOS is prepended; pad = EOS.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = string.ascii_letters + string.digits + string.punctuation
    tokens = list(LLAMA_SPECIAL_TOKENS) + sorted(set(words)) + list(chars) + ["##" + c for c in chars]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(LLAMA_SPECIAL_TOKENS))
    bos = LLAMA_SPECIAL_TOKENS[0]
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token="<|end_of_text|>",
                                   pad_token="<|end_of_text|>", unk_token="[UNK]", padding_side="right",
                                   model_max_length=1024)


def tiny_llama_text_encoder(seed: int = 0) -> Any:
    """``LlamaModel`` of width 16 and 3 layers (HunyuanVideo reads the third-to-last hidden state)."""
    from transformers import LlamaConfig, LlamaModel

    vocab_size = len(tiny_llama_tokenizer())
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=TINY_LLAMA_DIM, intermediate_size=32,
                         num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=1024, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    with _seeded(seed):
        return LlamaModel(config).eval()


# --- VAE, denoiser, scheduler ---------------------------------------------------------------------


def tiny_video_vae_config() -> dict[str, Any]:
    """Constructor arguments of the tiny ``AutoencoderKLHunyuanVideo`` (spatial factor 4, temporal 4)."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=TINY_LATENT_CHANNELS,
        down_block_types=("HunyuanVideoDownBlock3D",) * 3, up_block_types=("HunyuanVideoUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4,
        scaling_factor=HUNYUAN_VAE_SCALING_FACTOR, spatial_compression_ratio=4, temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


def tiny_video_vae(seed: int = 0) -> Any:
    from diffusers import AutoencoderKLHunyuanVideo

    with _seeded(seed):
        return AutoencoderKLHunyuanVideo(**tiny_video_vae_config()).eval()


def tiny_video_transformer_config(kind: str) -> dict[str, Any]:
    """Constructor arguments of the tiny ``HunyuanVideoTransformer3DModel`` (I2V: twice the input channels)."""
    _check_kind(kind)
    channels = TINY_LATENT_CHANNELS
    return dict(
        in_channels=2 * channels if kind == "skyreels_i2v" else channels, out_channels=channels,
        num_attention_heads=2, attention_head_dim=8, num_layers=1, num_single_layers=1, num_refiner_layers=1,
        mlp_ratio=2.0, patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
        text_embed_dim=TINY_LLAMA_DIM, pooled_projection_dim=TINY_TEXT_DIM, rope_theta=256.0,
        rope_axes_dim=(2, 2, 4),
    )


def tiny_video_transformer(kind: str, seed: int = 0) -> Any:
    from diffusers import HunyuanVideoTransformer3DModel

    with _seeded(seed):
        return HunyuanVideoTransformer3DModel(**tiny_video_transformer_config(kind))


def tiny_video_scheduler() -> Any:
    """HunyuanVideo's flow-matching scheduler configuration (shift 7)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=7.0)


# --- whole pipelines ------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in VIDEO_KINDS:
        raise ValueError(f"no tiny video model {kind!r}; expected one of {VIDEO_KINDS}")


def tiny_video_builders(kind: str, seed: int = 0) -> dict[str, Callable[[], Any]]:
    """One zero-argument builder per pipeline component of the tiny ``kind`` model."""
    _check_kind(kind)
    return {
        "transformer": lambda: tiny_video_transformer(kind, _component_seed(seed, "transformer")),
        "vae": lambda: tiny_video_vae(_component_seed(seed, "vae")),
        "text_encoder": lambda: tiny_llama_text_encoder(_component_seed(seed, "text_encoder")),
        "text_encoder_2": lambda: tiny_clip_text_encoder(_component_seed(seed, "text_encoder_2")),
        "tokenizer": tiny_llama_tokenizer,
        "tokenizer_2": tiny_clip_tokenizer,
        "scheduler": tiny_video_scheduler,
    }


def tiny_video_source(kind: str, seed: int = 0) -> ComponentSource:
    """Components of the tiny ``kind`` model built in memory (the video twin of ``base.tiny_source``)."""
    builders = tiny_video_builders(kind, seed)
    configs = {"vae": tiny_video_vae_config(), "transformer": tiny_video_transformer_config(kind)}

    return in_memory_source(builders, configs, f"tiny {kind} model")


def tiny_video_pipeline(kind: str, seed: int = 0) -> Any:
    """The stock diffusers pipeline of tiny parts (HunyuanVideoPipeline / HunyuanSkyreelsImageToVideoPipeline)."""
    from diffusers import HunyuanSkyreelsImageToVideoPipeline, HunyuanVideoPipeline

    _check_kind(kind)
    components = {name: build() for name, build in tiny_video_builders(kind, seed).items()}
    cls = HunyuanSkyreelsImageToVideoPipeline if kind == "skyreels_i2v" else HunyuanVideoPipeline
    return cls(**components)


def save_tiny_video_pipeline(kind: str, out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a complete diffusers pipeline directory (model_index.json + subfolders) of a tiny video model."""
    out = Path(out_dir)
    tiny_video_pipeline(kind, seed).save_pretrained(out, safe_serialization=True)
    return out

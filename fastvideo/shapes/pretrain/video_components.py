"""Components of the tiny HunyuanVideo-style pipeline of the moving-shapes world, and its data.

Everything is built from configs, offline, as stock diffusers / transformers classes, so that
``HunyuanVideoPipeline.from_pretrained(dir)`` loads the saved directory without a network:

- VAE: ``AutoencoderKLHunyuanVideo`` (causal 3D convolutions), spatial factor 4, temporal factor 4,
  16 latent channels: a (3, 9, 64, 64) clip <-> (16, 3, 16, 16) latents.
- Denoiser: ``HunyuanVideoTransformer3DModel`` with 2x2 patches (64 tokens per latent frame at 64 px,
  16 at 32 px) and the guidance embedding, fed the constant ``VIDEO_GUIDANCE`` (the pipeline's default).
- Text: a ``LlamaModel`` whose third-to-last hidden state is the prompt sequence (as the pipeline reads
  it), with a WordPiece ``PreTrainedTokenizerFast`` over the grammar's words and the prompt template's
  words (Llama-3 special tokens, BOS prepended, right padding), and a CLIP text encoder whose pooled
  output is ``pooled_projections`` (CLIP BPE built from the grammar vocabulary, as the image stages).
  The template word "of" is left out of the Llama vocabulary (it splits into 2 pieces, 3 times) so
  that the template prefix is exactly ``TEMPLATE_CROP_START`` = 95 tokens, the pipeline's hard-coded
  ``crop_start``: stock ``pipe(prompt)`` and ``fastvideo.models.hunyuan`` (which counts it) agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoTransformer3DModel,
)
from transformers import CLIPTextModel, CLIPTokenizer, LlamaConfig, LlamaModel

from fastvideo.models.tiny_video import LLAMA_SPECIAL_TOKENS, word_piece_llama_tokenizer
from fastvideo.shapes.motion import sample_motion_prompts
from fastvideo.shapes.motion_render import render_video
from fastvideo.shapes.pretrain.components import CLIP_MAX_LENGTH
from fastvideo.shapes.pretrain.data import SPLIT_SEED, step_rng

LATENT_CHANNELS = 16
SPATIAL_FACTOR = 4
TEMPORAL_FACTOR = 4
VIDEO_GUIDANCE = 6.0
"""Embedded guidance value used in training (HunyuanVideoPipeline's default ``guidance_scale``)."""
VIDEO_SHIFT = 5.0
"""Static time shift of the shipped scheduler and of the training time distribution."""
LLAMA_MAX_LENGTH = 16
"""Prompt tokens (after the template prefix) seen in training; the longest prompt has 12 (11 words + eot).
Padding is masked everywhere, so sampling with the pipeline's default 256 gives the same embeddings."""
HIDDEN_LAYERS_TO_SKIP = 2
TEMPLATE_CROP_START = 95
SPLIT_TEMPLATE_WORDS = ("of",)
"""Template words kept out of the Llama vocabulary so that the template prefix is 95 tokens."""


@dataclass(frozen=True)
class VideoSizes:
    """Widths and depths of the video pipeline (``VIDEO_FULL`` is the real run, ``VIDEO_SMOKE`` for tests)."""

    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_norm_groups: int = 8
    llama_hidden: int = 128
    llama_layers: int = 4
    clip_hidden: int = 128
    clip_layers: int = 2
    text_heads: int = 4
    heads: int = 4
    head_dim: int = 32
    double_blocks: int = 2
    single_blocks: int = 4
    refiner_blocks: int = 1


VIDEO_FULL = VideoSizes()
VIDEO_SMOKE = VideoSizes(vae_channels=(8, 16, 16), vae_norm_groups=8, llama_hidden=32, llama_layers=3,
                         clip_hidden=32, clip_layers=1, text_heads=2, heads=2, head_dim=16, double_blocks=1,
                         single_blocks=1)


def prompt_template() -> dict:
    """HunyuanVideoPipeline's DEFAULT_PROMPT_TEMPLATE (template with one ``{}``, crop_start 95)."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    return dict(DEFAULT_PROMPT_TEMPLATE)


def template_words() -> list[str]:
    """Words of the prompt template (pre-tokenised like the tokenizer), minus SPLIT_TEMPLATE_WORDS."""
    from tokenizers import pre_tokenizers

    text = prompt_template()["template"]
    for token in LLAMA_SPECIAL_TOKENS:
        text = text.replace(token, " ")
    words = {word for word, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text) if word.isalpha()}
    return sorted(words - set(SPLIT_TEMPLATE_WORDS))


def build_llama_tokenizer(words: list[str]):
    """``PreTrainedTokenizerFast``: Llama-3 specials, template + grammar words, characters as sub-words."""
    return word_piece_llama_tokenizer([*words, *template_words()])


def build_llama_encoder(sizes: VideoSizes, tokenizer) -> LlamaModel:
    """``LlamaModel``; the pipeline reads hidden_states[-3], so the last two layers are unused (as in the real model)."""
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=sizes.llama_hidden,
                         intermediate_size=2 * sizes.llama_hidden, num_hidden_layers=sizes.llama_layers,
                         num_attention_heads=sizes.text_heads, num_key_value_heads=sizes.text_heads,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaModel(config)


def build_video_clip_encoder(sizes: VideoSizes, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    from transformers import CLIPTextConfig

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.clip_hidden, intermediate_size=2 * sizes.clip_hidden,
        projection_dim=sizes.clip_hidden, num_hidden_layers=sizes.clip_layers, num_attention_heads=sizes.text_heads,
        max_position_embeddings=CLIP_MAX_LENGTH, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_video_vae(sizes: VideoSizes) -> AutoencoderKLHunyuanVideo:
    """(3, 4k+1, H, W) <-> (16, k+1, H/4, W/4); needs len(vae_channels) = 3."""
    depth = len(sizes.vae_channels)
    return AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        down_block_types=("HunyuanVideoDownBlock3D",) * depth, up_block_types=("HunyuanVideoUpBlock3D",) * depth,
        block_out_channels=sizes.vae_channels, layers_per_block=1, norm_num_groups=sizes.vae_norm_groups,
        scaling_factor=1.0, spatial_compression_ratio=SPATIAL_FACTOR, temporal_compression_ratio=TEMPORAL_FACTOR,
        mid_block_add_attention=True,
    )


def rope_axes_3d(head_dim: int) -> tuple[int, int, int]:
    """RoPE axes (time, row, col) summing to ``head_dim``, each even (32 -> (8, 12, 12), 16 -> (4, 6, 6))."""
    first = head_dim // 4
    rest = (head_dim - first) // 2
    if head_dim % 8 or first % 2 or rest % 2 or first + 2 * rest != head_dim:
        raise ValueError(f"attention head dim {head_dim} must be a multiple of 8")
    return (first, rest, rest)


def build_video_transformer(sizes: VideoSizes, patch_size: int = 2) -> HunyuanVideoTransformer3DModel:
    """The denoiser; ``patch_size`` 2 gives 16 tokens per latent frame at 32 px, 1 gives 64."""
    return HunyuanVideoTransformer3DModel(
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_attention_heads=sizes.heads,
        attention_head_dim=sizes.head_dim, num_layers=sizes.double_blocks, num_single_layers=sizes.single_blocks,
        num_refiner_layers=sizes.refiner_blocks, mlp_ratio=4.0, patch_size=patch_size, patch_size_t=1, qk_norm="rms_norm",
        guidance_embeds=True, text_embed_dim=sizes.llama_hidden, pooled_projection_dim=sizes.clip_hidden,
        rope_theta=256.0, rope_axes_dim=rope_axes_3d(sizes.head_dim),
    )


@torch.no_grad()
def repatch_transformer(transformer: HunyuanVideoTransformer3DModel, patch_size: int) -> HunyuanVideoTransformer3DModel:
    """A copy with spatial ``patch_size`` 1 (from 2), every other weight kept (warm start).

    Patch embedding (Conv3d, kernel (1, p, p)): the new 1x1 kernel is the *sum* of the old p x p one,
    so a patch of constant latents embeds as before. Output projection (features ordered (C, p_t, p,
    p)): the new row of channel c is the *mean* of its p x p rows, so a smooth field decodes as
    before. RoPE positions are token indices, so distances double; the blocks adapt in training.
    """
    old = int(transformer.config["patch_size"])
    if patch_size == old:
        return transformer
    if (old, patch_size) != (2, 1) or int(transformer.config["patch_size_t"]) != 1:
        raise ValueError(f"repatching supports spatial patch 2 -> 1 (p_t 1), not {old} -> {patch_size}")
    config = dict(transformer.config)
    config["patch_size"] = patch_size
    new = HunyuanVideoTransformer3DModel.from_config(config)
    state = transformer.state_dict()
    state["x_embedder.proj.weight"] = state["x_embedder.proj.weight"].sum(dim=(3, 4), keepdim=True)
    channels = int(config.get("out_channels") or config["in_channels"])
    for name in ("proj_out.weight", "proj_out.bias"):
        value = state[name]
        state[name] = value.reshape(channels, old * old, *value.shape[1:]).mean(dim=1)
    new.load_state_dict(state, strict=True)
    return new.to(next(transformer.parameters()).dtype)


TEXT_DROPOUT = 0.1
"""Default probability that a training prompt is replaced by the empty prompt (the CFG branch's condition)."""


def drop_prompts(prompts: list[str], rng: np.random.Generator, probability: float) -> list[str]:
    """Each prompt independently replaced by the empty prompt with ``probability`` (trains the CFG branch)."""
    if probability <= 0:
        return list(prompts)
    keep = rng.random(len(prompts)) >= probability
    return [prompt if kept else "" for prompt, kept in zip(prompts, keep)]


def build_video_scheduler(shift: float = VIDEO_SHIFT) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift, use_dynamic_shifting=False)


# --- text, as HunyuanVideoPipeline.encode_prompt computes it -------------------------------------------


def llama_text(llama: LlamaModel, tokenizer, prompts: list[str],
               max_length: int = LLAMA_MAX_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence (B, max_length, D), mask (B, max_length)): template, hidden_states[-3], prefix cropped."""
    template = prompt_template()
    crop = template["crop_start"]
    tokens = tokenizer([template["template"].format(p) for p in prompts], max_length=max_length + crop,
                       padding="max_length", truncation=True, return_tensors="pt").to(llama.device)
    hidden = llama(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                   output_hidden_states=True).hidden_states[-(HIDDEN_LAYERS_TO_SKIP + 1)]
    return hidden[:, crop:], tokens.attention_mask[:, crop:]


def clip_pooled(clip: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """(B, D) pooled output with padding to 77, as ``_get_clip_prompt_embeds``."""
    ids = tokenizer(prompts, padding="max_length", max_length=CLIP_MAX_LENGTH, truncation=True,
                    return_tensors="pt").input_ids
    return clip(ids.to(clip.device), output_hidden_states=False).pooler_output


# --- data -----------------------------------------------------------------------------------------------


def motion_batch(batch_size: int, seed: int, step: int, size: int, num_frames: int) -> tuple[list[str], torch.Tensor]:
    """Skill-balanced TRAIN video prompts and one rendering each: (B, 3, T, H, W) in [-1, 1] (VAE layout).

    A pure function of (seed, step), like ``pretrain.data.scene_batch``.
    """
    rng = step_rng(seed, step)
    prompts = [p.text for p in sample_motion_prompts(batch_size, rng, split="train", seed=SPLIT_SEED)]
    videos = np.stack([render_video(text, rng, size, num_frames) for text in prompts])  # (B, T, 3, H, W)
    return prompts, torch.from_numpy(videos * 2.0 - 1.0).permute(0, 2, 1, 3, 4).contiguous()

"""Model sizes and builders for the shapes pipelines: VAE, tokenizers, text encoders, denoisers, schedulers.

Everything here is built from configs (no download): the tokenizers come from the grammar's
vocabulary, so ``FluxPipeline.from_pretrained`` / ``StableDiffusionPipeline.from_pretrained`` load the
saved directories offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
    UNet2DConditionModel,
)
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

IMAGE_SIZE = 64
LATENT_CHANNELS = 4
CLIP_MAX_LENGTH = 77
"""CLIP pads to 77 like the real model; its causal mask makes the pooled (EOS) output length-independent."""
T5_MAX_LENGTH = 16
"""T5 sequence length the FLUX transformer is trained with: pass ``max_sequence_length=16`` to FluxPipeline."""
FLUX_GUIDANCE = 3.5
"""Constant guidance-embedding value used in training (FLUX-dev's default); there is no CFG for FLUX."""
FLUX_SHIFT = 3.0
"""Static time shift of the shipped FlowMatchEulerDiscreteScheduler (DanceGRPO rollouts use 3)."""
SD_GUIDANCE = 5.0
"""Recommended real-CFG scale for the SD pipeline (trained with 10% empty-prompt dropout)."""


@dataclass(frozen=True)
class ModelSizes:
    """Widths and depths of every component (``FULL`` is shipped, ``SMOKE`` is for tests)."""

    vae_channels: tuple[int, ...] = (32, 32, 64)
    vae_norm_groups: int = 16
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    flux_heads: int = 4
    flux_head_dim: int = 32
    flux_double_blocks: int = 2
    flux_single_blocks: int = 4
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_head_dim: int = 32
    unet_norm_groups: int = 16


FULL = ModelSizes()
SMOKE = ModelSizes(
    vae_channels=(8, 16, 16), vae_norm_groups=8, text_hidden=32, text_layers=1, text_heads=2,
    flux_heads=2, flux_head_dim=16, flux_double_blocks=1, flux_single_blocks=1,
    unet_channels=(16, 32, 32), unet_head_dim=8, unet_norm_groups=8,
)


def build_vae(sizes: ModelSizes) -> AutoencoderKL:
    """64x64x3 -> (64 / 2**(n-1))^2 x 4 latents; n = len(vae_channels) (3 -> 16x16x4)."""
    depth = len(sizes.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * depth, up_block_types=("UpDecoderBlock2D",) * depth,
        block_out_channels=sizes.vae_channels, layers_per_block=1, norm_num_groups=sizes.vae_norm_groups,
        sample_size=IMAGE_SIZE, scaling_factor=1.0, shift_factor=0.0,
    )


def _train_clip_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE with CLIP's ``</w>`` suffix in which every vocabulary word is one token."""
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=4096, min_frequency=0, show_progress=False, end_of_word_suffix="</w>",
        special_tokens=["<|startoftext|>", "<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(sorted(words), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_clip_tokenizer(words: list[str]) -> CLIPTokenizer:
    """CLIP tokenizer (bos 0, eos = pad 1) whose BPE maps each grammar word to a single token."""
    vocab, merges = _train_clip_bpe(words)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)


def build_t5_tokenizer(words: list[str]) -> T5Tokenizer:
    """T5 (Unigram) tokenizer: <pad> 0, </s> 1, <unk> 2, one piece per word, letters as a fallback."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + word, -1.0) for word in sorted(words)]
    pieces += [("\u2581", -5.0)] + [(chr(c), -8.0) for c in range(ord("a"), ord("z") + 1)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def build_clip_text_encoder(sizes: ModelSizes, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.text_hidden, intermediate_size=2 * sizes.text_hidden,
        projection_dim=sizes.text_hidden, num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads, max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_t5_encoder(sizes: ModelSizes, tokenizer: T5Tokenizer) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(tokenizer), d_model=sizes.text_hidden, d_kv=sizes.text_hidden // sizes.text_heads,
        d_ff=2 * sizes.text_hidden, num_layers=sizes.text_layers, num_heads=sizes.text_heads,
        relative_attention_num_buckets=8, relative_attention_max_distance=T5_MAX_LENGTH,
        feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False, use_cache=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """RoPE axes (text, row, col) summing to ``head_dim``, each even (64 -> (16, 24, 24))."""
    first = head_dim // 4
    rest = (head_dim - first) // 2
    if first % 2 or rest % 2 or first + 2 * rest != head_dim:
        raise ValueError(f"attention head dim {head_dim} must be a multiple of 8")
    return (first, rest, rest)


def build_flux_transformer(sizes: ModelSizes) -> FluxTransformer2DModel:
    return FluxTransformer2DModel(
        patch_size=1, in_channels=4 * LATENT_CHANNELS, out_channels=None,
        num_layers=sizes.flux_double_blocks, num_single_layers=sizes.flux_single_blocks,
        attention_head_dim=sizes.flux_head_dim, num_attention_heads=sizes.flux_heads,
        joint_attention_dim=sizes.text_hidden, pooled_projection_dim=sizes.text_hidden,
        guidance_embeds=True, axes_dims_rope=rope_axes(sizes.flux_head_dim),
    )


def build_unet(sizes: ModelSizes, latent_size: int) -> UNet2DConditionModel:
    """SD-style UNet; attention (self + cross) only below full latent resolution, to keep CPU cost low."""
    channels = sizes.unet_channels
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(channels) - 1) + ("UpBlock2D",),
        block_out_channels=channels, layers_per_block=1, cross_attention_dim=sizes.text_hidden,
        attention_head_dim=sizes.unet_head_dim, norm_num_groups=sizes.unet_norm_groups,
    )


def build_flow_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Static shift 3 (no resolution-dependent shift: 64 tokens are far below FLUX's 256..4096 range)."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=FLUX_SHIFT, use_dynamic_shifting=False)


def build_ddpm_scheduler() -> DDPMScheduler:
    """SD 1.x training noise schedule (scaled_linear betas 0.00085..0.012, 1000 steps, eps prediction)."""
    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", clip_sample=False,
    )


def build_ddim_scheduler() -> DDIMScheduler:
    """SD 1.x sampling scheduler config (steps_offset 1, set_alpha_to_one False)."""
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


ORDER_SPANS: tuple[str, ...] = ("neighbour", "context")
"""What the two word-order heads of ``set_neighbour_heads`` attend to: the adjacent word, or every word
on that side."""


@torch.no_grad()
def set_neighbour_heads(t5: T5EncoderModel, strength: float, span: str = "neighbour", gain: float = 1.0) -> None:
    """Give T5 word order: in every layer head 0 attends backwards, head 1 forwards.

    FLUX gives its text tokens no positions (``txt_ids`` are zeros), so word order reaches the transformer
    only through T5's relative attention bias (``relative_attention_bias``, shared by every layer). Trained
    jointly from random initialisation, T5's attention becomes saturated content attention (unscaled
    q.k logits of tens) next to which that bias (|b| <= 0.16 in v6) does nothing: the states of an object's
    words come out the same whether it is the subject or the object of "left of"
    (``benchmarks/bench_relation_probe.py``), and relations cannot be learned. This zeroes the query
    weights of heads 0 and 1 in every layer (their logits become the bias alone) and sets their bias to
    ``strength`` at the buckets of the attended relative positions, 0 elsewhere:

    - ``span="neighbour"``: relative position -1 (head 0) or +1 (head 1); after two layers each word's
      state carries its neighbours' (e.g. "the word before me follows a relation").
    - ``span="context"``: every relative position < 0 (head 0) or > 0 (head 1), i.e. the mean of all the
      words before / after it: a subject's words see the relation word ahead of them, an object's behind.

    ``gain`` multiplies the two heads' output-projection columns, so that their share of each state grows
    (the role difference of an object's words, subject vs object, on v6's T5 with strength 10: neighbour
    0.18, context 0.18, context with gain 3: 0.53). Everything stays trainable."""
    if span not in ORDER_SPANS:
        raise ValueError(f"span must be one of {ORDER_SPANS}, got {span!r}")
    first = t5.encoder.block[0].layer[0].SelfAttention
    weight = first.relative_attention_bias.weight  # (num_buckets, num_heads)
    offsets = torch.arange(-T5_MAX_LENGTH + 1, T5_MAX_LENGTH)
    buckets = first._relative_position_bucket(
        offsets, bidirectional=True, num_buckets=first.relative_attention_num_buckets,
        max_distance=first.relative_attention_max_distance)
    for head, side in ((0, -1), (1, 1)):
        wanted = offsets == side if span == "neighbour" else offsets * side > 0
        weight[:, head] = 0.0
        weight[buckets[wanted], head] = strength
        for block in t5.encoder.block:
            attention = block.layer[0].SelfAttention
            rows = slice(head * attention.key_value_proj_dim, (head + 1) * attention.key_value_proj_dim)
            attention.q.weight[rows] = 0.0
            attention.o.weight[:, rows] *= gain

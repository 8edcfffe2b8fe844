"""Tiny randomly initialised SD3.5, Wan2.1 and Qwen-Image components of the real classes, built offline.

Same idea as ``fastvideo.models.tiny`` (FLUX/SD) and ``tiny_video`` (HunyuanVideo): every component is the
genuine diffusers/transformers class at a toy size, so the adapters, their tests and CPU debug runs run
the code paths of the full models (and the stock pipelines accept the parts).

- ``sd3``: ``SD3Transformer2DModel`` (2 joint blocks, the first with SD3.5's dual attention, RMS q/k norm,
  2x2 patches), a two-block ``AutoencoderKL`` (factor 2, 16 latent channels, SD3.5's scaling/shift
  factors), two ``CLIPTextModelWithProjection`` (CLIP-L / CLIP-G stand-ins, width 32, real CLIP
  vocabulary) and a ``T5EncoderModel`` of width 64 (the joint attention width).
- ``wan``: ``WanTransformer3DModel`` (2 blocks, 1x2x2 patches), ``AutoencoderKLWan`` with the real factors
  (spatial 8, temporal 4, 16 channels, Wan2.1's latents_mean/std) and a ``UMT5EncoderModel`` of width 32.
- ``qwen_image``: ``QwenImageTransformer2DModel`` (2 blocks, 2x2 patches), ``AutoencoderKLQwenImage``
  (factor 4: two temporal-downsample entries; 16 channels) and a ``Qwen2_5_VLForConditionalGeneration`` of
  width 16 with a word-piece tokenizer whose Qwen-Image template prefix is 34 tokens, as with the real
  Qwen2 tokenizer (``QwenImagePipeline`` drops exactly 34).

Each component is seeded on its own (``tiny._component_seed``), so building one never changes another.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastvideo.models.sources import ComponentSource, in_memory_source
from fastvideo.models.tiny import (
    _T5_WORDS,
    TINY_CLIP_MAX_LENGTH,
    _component_seed,
    _seeded,
    tiny_clip_tokenizer,
    tiny_t5_tokenizer,
)

KINDS = ("sd3", "wan", "qwen_image")
SD3_SCALING_FACTOR, SD3_SHIFT_FACTOR = 1.5305, 0.0609  # SD3.5 VAE values
TINY_SD3_T5_DIM = 64
TINY_WAN_TEXT_DIM = 32
TINY_QWEN_TEXT_DIM = 16
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]")
QWEN_NEWLINE = "Ċ"  # the byte-level symbol of "\n" in Qwen2's vocabulary
_QWEN_WORDS = (
    "system user assistant Describe the image by detailing color shape size texture quantity text spatial "
    "relationships of objects and background a an with at to is photo picture painting cat dog red blue green "
    "yellow black white house tree car sky sun moon water man woman person city street in on sign says hello"
).split()


def _t5_like_encoder(cls: Any, config_cls: Any, width: int, seed: int) -> Any:
    """A 2-layer gated-gelu (T5 v1.1 / UMT5) encoder of ``width`` over the tiny T5 vocabulary."""
    config = config_cls(vocab_size=len(tiny_t5_tokenizer()), d_model=width, d_ff=37, d_kv=8, num_layers=2,
                        num_heads=4, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                        is_encoder_decoder=False, use_cache=False)
    with _seeded(seed):
        return cls(config).eval()


# --- SD3.5 ----------------------------------------------------------------------------------------


def tiny_sd3_vae_config() -> dict[str, Any]:
    """Two-block ``AutoencoderKL`` (factor 2) with SD3.5's 16 channels and scaling/shift factors."""
    return dict(in_channels=3, out_channels=3, latent_channels=16, layers_per_block=1,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                block_out_channels=(32, 32), norm_num_groups=32, sample_size=32,
                scaling_factor=SD3_SCALING_FACTOR, shift_factor=SD3_SHIFT_FACTOR,
                use_quant_conv=False, use_post_quant_conv=False)


def tiny_sd3_transformer_config() -> dict[str, Any]:
    return dict(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
                num_attention_heads=4, joint_attention_dim=TINY_SD3_T5_DIM, caption_projection_dim=32,
                pooled_projection_dim=64, pos_embed_max_size=32, dual_attention_layers=(0,), qk_norm="rms_norm")


def tiny_clip_with_projection(seed: int) -> Any:
    """``CLIPTextModelWithProjection`` of width 32 (SD3 reads its penultimate hidden state and projection)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=TINY_CLIP_MAX_LENGTH, projection_dim=32,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    with _seeded(seed):
        return CLIPTextModelWithProjection(config).eval()


def _sd3_builders(seed: int) -> dict[str, Callable[[], Any]]:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import T5Config, T5EncoderModel

    def transformer() -> Any:
        with _seeded(_component_seed(seed, "transformer")):
            return SD3Transformer2DModel(**tiny_sd3_transformer_config())

    def vae() -> Any:
        with _seeded(_component_seed(seed, "vae")):
            return AutoencoderKL(**tiny_sd3_vae_config()).eval()

    return {
        "transformer": transformer, "vae": vae,
        "text_encoder": lambda: tiny_clip_with_projection(_component_seed(seed, "text_encoder")),
        "text_encoder_2": lambda: tiny_clip_with_projection(_component_seed(seed, "text_encoder_2")),
        "text_encoder_3": lambda: _t5_like_encoder(T5EncoderModel, T5Config, TINY_SD3_T5_DIM,
                                                   _component_seed(seed, "text_encoder_3")),
        "tokenizer": tiny_clip_tokenizer, "tokenizer_2": tiny_clip_tokenizer, "tokenizer_3": tiny_t5_tokenizer,
        # SD3.5-medium's scheduler: shift 3, no dynamic shifting
        "scheduler": lambda: FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
    }


# --- Wan2.1 ---------------------------------------------------------------------------------------


def tiny_wan_vae_config() -> dict[str, Any]:
    """``AutoencoderKLWan`` with Wan2.1's factors (4 stages: spatial 8; temporal 4) and 16 channels."""
    return dict(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])


def tiny_wan_transformer_config() -> dict[str, Any]:
    return dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                text_dim=TINY_WAN_TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def _wan_builders(seed: int) -> dict[str, Callable[[], Any]]:
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    def transformer() -> Any:
        with _seeded(_component_seed(seed, "transformer")):
            return WanTransformer3DModel(**tiny_wan_transformer_config())

    def vae() -> Any:
        with _seeded(_component_seed(seed, "vae")):
            return AutoencoderKLWan(**tiny_wan_vae_config()).eval()

    return {
        "transformer": transformer, "vae": vae,
        "text_encoder": lambda: _t5_like_encoder(UMT5EncoderModel, UMT5Config, TINY_WAN_TEXT_DIM,
                                                 _component_seed(seed, "text_encoder")),
        "tokenizer": tiny_t5_tokenizer,
        # Wan2.1's diffusers directory ships UniPC (flow_shift 3); the tiny pipeline steps with Euler so that a
        # test can compare one stock step with the adapter (the adapter never uses the scheduler)
        "scheduler": lambda: FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
    }


# --- Qwen-Image -----------------------------------------------------------------------------------


def tiny_qwen_tokenizer() -> Any:
    """``PreTrainedTokenizerFast`` over a word-piece vocabulary with Qwen2's chat special tokens.

    Newlines become the token ``Ċ`` (as in Qwen2's byte-level vocabulary), so Qwen-Image's template prefix
    is 34 tokens like with the real tokenizer; unknown words split into characters; right padding with
    ``<|endoftext|>``; no BOS.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = string.ascii_letters + string.digits + string.punctuation
    words = sorted(set(_QWEN_WORDS) | set(_T5_WORDS))
    tokens = list(QWEN_SPECIAL_TOKENS) + [QWEN_NEWLINE] + words + list(chars) + ["##" + c for c in chars]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.Replace("\n", f" {QWEN_NEWLINE} ")
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(QWEN_SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="[UNK]", padding_side="right", model_max_length=32768)


def tiny_qwen_text_encoder(seed: int) -> Any:
    """``Qwen2_5_VLForConditionalGeneration`` of width 16, 2 layers, a 1-block vision tower (unused for text)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    vocab = len(tiny_qwen_tokenizer())
    special = {"bos_token_id": None, "eos_token_id": 2, "pad_token_id": 0}
    text = dict(hidden_size=TINY_QWEN_TEXT_DIM, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, vocab_size=vocab, rope_theta=1000000.0,
                rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}, **special)
    vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=TINY_QWEN_TEXT_DIM)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, hidden_size=TINY_QWEN_TEXT_DIM,
                              vocab_size=vocab, image_token_id=3, video_token_id=3, vision_start_token_id=3,
                              vision_end_token_id=3, **special)
    with _seeded(seed):
        return Qwen2_5_VLForConditionalGeneration(config).eval()


def tiny_qwen_vae_config() -> dict[str, Any]:
    """``AutoencoderKLQwenImage``: 3 stages (factor 2 ** 2 = 4), 16 channels, the class default latents_mean/std."""
    return dict(base_dim=8, z_dim=16, dim_mult=[1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True])


def tiny_qwen_transformer_config() -> dict[str, Any]:
    return dict(patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16,
                num_attention_heads=2, joint_attention_dim=TINY_QWEN_TEXT_DIM, guidance_embeds=False,
                axes_dims_rope=(4, 6, 6))


def _qwen_image_builders(seed: int) -> dict[str, Callable[[], Any]]:
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    def transformer() -> Any:
        with _seeded(_component_seed(seed, "transformer")):
            return QwenImageTransformer2DModel(**tiny_qwen_transformer_config())

    def vae() -> Any:
        with _seeded(_component_seed(seed, "vae")):
            return AutoencoderKLQwenImage(**tiny_qwen_vae_config()).eval()

    return {
        "transformer": transformer, "vae": vae,
        "text_encoder": lambda: tiny_qwen_text_encoder(_component_seed(seed, "text_encoder")),
        "tokenizer": tiny_qwen_tokenizer,
        # resolution-dependent shift as Qwen-Image's scheduler (the adapter never uses the scheduler)
        "scheduler": lambda: FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, use_dynamic_shifting=True,
                                                             base_image_seq_len=256, max_image_seq_len=8192,
                                                             base_shift=0.5, max_shift=0.9),
    }


# --- sources and pipelines ------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"no tiny model {kind!r} here; expected one of {KINDS}")


def tiny_more_builders(kind: str, seed: int = 0) -> dict[str, Callable[[], Any]]:
    """One zero-argument builder per pipeline component of the tiny ``kind`` model."""
    _check_kind(kind)
    return {"sd3": _sd3_builders, "wan": _wan_builders, "qwen_image": _qwen_image_builders}[kind](seed)


def _with_defaults(cls: Any, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` completed with the constructor defaults of ``cls`` (what its saved config.json holds)."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **config}


def tiny_more_configs(kind: str) -> dict[str, dict[str, Any]]:
    """The configs adapters read before loading weights (VAE and transformer), as ``load_config`` gives them."""
    import diffusers

    _check_kind(kind)
    table = {"sd3": ("AutoencoderKL", tiny_sd3_vae_config, "SD3Transformer2DModel", tiny_sd3_transformer_config),
             "wan": ("AutoencoderKLWan", tiny_wan_vae_config, "WanTransformer3DModel", tiny_wan_transformer_config),
             "qwen_image": ("AutoencoderKLQwenImage", tiny_qwen_vae_config, "QwenImageTransformer2DModel",
                            tiny_qwen_transformer_config)}
    vae_cls, vae_config, transformer_cls, transformer_config = table[kind]
    return {"vae": _with_defaults(getattr(diffusers, vae_cls), vae_config()),
            "transformer": _with_defaults(getattr(diffusers, transformer_cls), transformer_config())}


def tiny_more_source(kind: str, seed: int = 0) -> ComponentSource:
    """Components of the tiny ``kind`` model built in memory (the twin of ``base.tiny_source``)."""
    builders, configs = tiny_more_builders(kind, seed), tiny_more_configs(kind)

    return in_memory_source(builders, configs, f"tiny {kind} model")


def tiny_more_pipeline(kind: str, seed: int = 0) -> Any:
    """The stock pipeline (StableDiffusion3Pipeline / WanPipeline / QwenImagePipeline) of tiny parts."""
    import diffusers

    _check_kind(kind)
    cls = {"sd3": "StableDiffusion3Pipeline", "wan": "WanPipeline", "qwen_image": "QwenImagePipeline"}[kind]
    return getattr(diffusers, cls)(**{name: build() for name, build in tiny_more_builders(kind, seed).items()})


def save_tiny_more_pipeline(kind: str, out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a complete diffusers pipeline directory (model_index.json + subfolders) of a tiny model."""
    out = Path(out_dir)
    tiny_more_pipeline(kind, seed).save_pretrained(out, safe_serialization=True)
    return out

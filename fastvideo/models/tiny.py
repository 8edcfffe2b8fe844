"""Tiny randomly initialised instances of the real FLUX and Stable Diffusion classes, built offline.

Every component is the genuine diffusers/transformers class at a toy size, so adapters, tests and
CPU debug runs exercise the same code paths as the full models. Tokenizers are built without the
hub: the CLIP tokenizer from open_clip's shipped BPE vocabulary (identical ids to the real CLIP
tokenizer), the T5 tokenizer from a small Unigram vocabulary. Each component is seeded on its own,
so building one component never changes another.

The tiny VAEs have two blocks (spatial factor 2): a 32x32-pixel image has a 16x16 latent.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import os
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

TINY_TEXT_DIM = 32
TINY_CLIP_MAX_LENGTH = 77
TINY_T5_MAX_LENGTH = 32
FLUX_SCALING_FACTOR, FLUX_SHIFT_FACTOR = 0.3611, 0.1159  # FLUX.1 VAE values
SD_SCALING_FACTOR = 0.18215  # SD 1.x VAE value

_SEED_OFFSETS = {"transformer": 0, "unet": 0, "vae": 1, "text_encoder": 2, "text_encoder_2": 3}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the CPU generator for the duration of the block, restoring the global state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _component_seed(seed: int, name: str) -> int:
    return seed * 101 + _SEED_OFFSETS.get(name, 7)


# --- tokenizers -----------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-unicode table (printable stand-ins for the 256 byte values)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = printable[:], 0
    byte_values = printable[:]
    for byte in range(256):
        if byte not in printable:
            byte_values.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(byte_values, (chr(c) for c in codes)))


@functools.lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's 49408-token BPE vocabulary and merges, read from open_clip's package data."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tiny CLIP tokenizer needs open_clip_torch (pip install 'dancegrpo[rewards]')")
    bpe_path = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")[1: 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab_list)}, merges  # type: ignore[return-value]


def tiny_clip_tokenizer() -> Any:
    """A transformers ``CLIPTokenizer`` with the real CLIP vocabulary, built offline."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=TINY_CLIP_MAX_LENGTH)


_T5_WORDS = ("a an the of and in on with at to is photo picture image painting cat dog red blue green "
             "yellow black white house tree car sky sun moon water man woman person city street portrait "
             "beautiful small big old new").split()


def tiny_t5_tokenizer() -> Any:
    """A transformers ``T5TokenizerFast`` over a small Unigram vocabulary (words, then characters)."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -3.0) for word in _T5_WORDS]
    chars = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation
    pieces += [("▁" + c, -8.0) for c in chars] + [(c, -10.0) for c in chars]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=TINY_T5_MAX_LENGTH)


# --- text encoders --------------------------------------------------------------------------------


def tiny_clip_text_encoder(seed: int = 0) -> Any:
    """``CLIPTextModel`` of width 32 with the full CLIP vocabulary (pooled output at the EOS token)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=49408, hidden_size=TINY_TEXT_DIM, intermediate_size=37,
                            num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=TINY_CLIP_MAX_LENGTH, projection_dim=TINY_TEXT_DIM,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    with _seeded(seed):
        return CLIPTextModel(config).eval()


def tiny_t5_encoder(seed: int = 0) -> Any:
    """``T5EncoderModel`` (gated-gelu, like T5 v1.1 XXL) of width 32."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tiny_t5_tokenizer()), d_model=TINY_TEXT_DIM, d_ff=37, d_kv=8,
                      num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    with _seeded(seed):
        return T5EncoderModel(config).eval()


# --- VAEs and denoisers ---------------------------------------------------------------------------


def tiny_vae_config(*, flux: bool) -> dict[str, Any]:
    """Constructor arguments of the tiny two-block ``AutoencoderKL`` (factor 2, 4 latent channels)."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 32), norm_num_groups=32, sample_size=32,
        scaling_factor=FLUX_SCALING_FACTOR if flux else SD_SCALING_FACTOR,
        shift_factor=FLUX_SHIFT_FACTOR if flux else None,
        use_quant_conv=not flux, use_post_quant_conv=not flux,
    )


def tiny_vae(seed: int = 0, *, flux: bool) -> Any:
    """Tiny ``AutoencoderKL`` with the FLUX (no quant convs, shift factor) or SD scaling factors."""
    from diffusers import AutoencoderKL

    with _seeded(seed):
        return AutoencoderKL(**tiny_vae_config(flux=flux)).eval()


def tiny_flux_transformer(seed: int = 0) -> Any:
    """``FluxTransformer2DModel`` with 2 double + 2 single blocks, head dim 16, guidance embeds."""
    from diffusers import FluxTransformer2DModel

    with _seeded(seed):
        return FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=TINY_TEXT_DIM, pooled_projection_dim=TINY_TEXT_DIM,
            guidance_embeds=True, axes_dims_rope=(4, 6, 6),
        )


def tiny_unet(seed: int = 0) -> Any:
    """``UNet2DConditionModel`` with two resolutions and cross-attention on the CLIP width."""
    from diffusers import UNet2DConditionModel

    with _seeded(seed):
        return UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), norm_num_groups=32, cross_attention_dim=TINY_TEXT_DIM,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=8,
        )


def tiny_flux_scheduler() -> Any:
    """FLUX.1-dev's flow-matching scheduler configuration."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                           base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                           max_image_seq_len=4096)


def tiny_sd_scheduler() -> Any:
    """Stable Diffusion v1-4's scheduler configuration (PNDM, scaled-linear betas)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", set_alpha_to_one=False, skip_prk_steps=True,
                         steps_offset=1)


# --- whole pipelines ------------------------------------------------------------------------------


def tiny_flux_builders(seed: int = 0) -> dict[str, Callable[[], Any]]:
    """One zero-argument builder per FLUX pipeline component."""
    return {
        "transformer": lambda: tiny_flux_transformer(_component_seed(seed, "transformer")),
        "vae": lambda: tiny_vae(_component_seed(seed, "vae"), flux=True),
        "text_encoder": lambda: tiny_clip_text_encoder(_component_seed(seed, "text_encoder")),
        "text_encoder_2": lambda: tiny_t5_encoder(_component_seed(seed, "text_encoder_2")),
        "tokenizer": tiny_clip_tokenizer,
        "tokenizer_2": tiny_t5_tokenizer,
        "scheduler": tiny_flux_scheduler,
    }


def tiny_sd_builders(seed: int = 0) -> dict[str, Callable[[], Any]]:
    """One zero-argument builder per Stable Diffusion pipeline component."""
    return {
        "unet": lambda: tiny_unet(_component_seed(seed, "unet")),
        "vae": lambda: tiny_vae(_component_seed(seed, "vae"), flux=False),
        "text_encoder": lambda: tiny_clip_text_encoder(_component_seed(seed, "text_encoder")),
        "tokenizer": tiny_clip_tokenizer,
        "scheduler": tiny_sd_scheduler,
    }


def tiny_flux_components(seed: int = 0) -> dict[str, Any]:
    """All FLUX pipeline components (the keyword arguments of ``FluxPipeline``)."""
    return {name: build() for name, build in tiny_flux_builders(seed).items()}


def tiny_sd_components(seed: int = 0) -> dict[str, Any]:
    """All Stable Diffusion components (the keyword arguments of ``StableDiffusionPipeline``)."""
    return {name: build() for name, build in tiny_sd_builders(seed).items()}


def tiny_component_configs(kind: str) -> dict[str, dict[str, Any]]:
    """Configurations of the tiny model's components that adapters read before loading weights."""
    if kind not in ("flux", "sd"):
        raise ValueError(f"no tiny model {kind!r}; expected 'flux' or 'sd'")
    return {"vae": tiny_vae_config(flux=kind == "flux")}


def tiny_builders(kind: str, seed: int = 0) -> dict[str, Callable[[], Any]]:
    """Builders of the tiny model family ``kind`` ('flux' or 'sd')."""
    table = {"flux": tiny_flux_builders, "sd": tiny_sd_builders}
    if kind not in table:
        raise ValueError(f"no tiny model {kind!r}; expected one of {sorted(table)}")
    return table[kind](seed)


def tiny_pipeline(kind: str, seed: int = 0) -> Any:
    """The stock diffusers pipeline (``FluxPipeline`` / ``StableDiffusionPipeline``) of tiny parts."""
    if kind == "flux":
        from diffusers import FluxPipeline

        return FluxPipeline(**tiny_flux_components(seed))
    if kind == "sd":
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(**tiny_sd_components(seed), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    raise ValueError(f"no tiny model {kind!r}; expected 'flux' or 'sd'")


def save_tiny_pipeline(kind: str, out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a complete diffusers pipeline directory (model_index.json + subfolders) of a tiny model."""
    out = Path(out_dir)
    tiny_pipeline(kind, seed).save_pretrained(out, safe_serialization=True)
    return out

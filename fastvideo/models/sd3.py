"""Stable Diffusion 3.5 (rectified flow, MMDiT) behind the ``ModelAdapter`` contract.

Latents are the VAE's (B, C, H/f, W/f) (SD3.5: C = 16, f = 8), unpacked: the transformer patchifies
them itself (2x2 patches), so H and W must be multiples of f x patch size = 16 (as the pipeline checks).

Flow convention: x_sigma = (1 - sigma) x0 + sigma eps with sigma in [0, 1] (1 = noise) and velocity
v = eps - x0; one Euler step is x' = x + (sigma' - sigma) v. The transformer is fed ``timestep = 1000 sigma``
(``StableDiffusion3Pipeline`` passes the scheduler's timesteps, which are 1000 sigma).

Prompts are encoded by ``StableDiffusion3Pipeline.encode_prompt`` itself (a text-only pipeline over the
adapter's encoders): the penultimate hidden states of CLIP-L and CLIP-G concatenated on the feature axis
and zero-padded to the T5 width, followed on the token axis by T5-XXL's last hidden state (77 + 256
tokens, 4096 features); the pooled embedding is the two CLIP projections concatenated (768 + 1280).

Guidance: real CFG ``v = v_u + s (v_c - v_u)`` with s = ``model_cfg.guidance_scale`` (Flow-GRPO trains
SD3.5-M with 4.5), one transformer call on [uncond, cond] as the pipeline; the unconditional branch is
the empty prompt (the pipeline's default negative prompt), encoded once and kept in the embedding cache
(``fastvideo.models.cfg``). s <= 1 evaluates the conditional branch only.

Decoding as the pipeline: x / scaling_factor + shift_factor (SD3.5 VAE: 1.5305, 0.0609), VAE decode,
[-1, 1] -> [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.models.base import Cond, ModelAdapter, unwrap_module
from fastvideo.models.cfg import NegativePromptCFG
from fastvideo.models.registry import register_adapter
from fastvideo.models.sources import (
    MODEL_WEIGHTS,
    ComponentSource,
    RequiredFiles,
    directory_source,
    download_command,
)

SD3_REPO_ID = "stabilityai/stable-diffusion-3.5-medium"
SD3_DEFAULT_DIR = "./data/stable-diffusion-3.5-medium"
T5_MAX_SEQUENCE_LENGTH = 256  # StableDiffusion3Pipeline's default max_sequence_length (Flow-GRPO encodes 128)
TIMESTEP_SCALE = 1000.0
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
TOKENIZERS = ("tokenizer", "tokenizer_2", "tokenizer_3")
SD3_REQUIRED_FILES: RequiredFiles = (
    ("model_index.json", ()),
    ("transformer/", ("config.json",)), ("transformer/", MODEL_WEIGHTS),
    ("vae/", ("config.json",)), ("vae/", MODEL_WEIGHTS),
    *((f"{name}/", patterns) for name in TEXT_ENCODERS for patterns in (("config.json",), MODEL_WEIGHTS)),
    ("tokenizer/", ("vocab.json", "tokenizer.json")), ("tokenizer_2/", ("vocab.json", "tokenizer.json")),
    ("tokenizer_3/", ("tokenizer.json", "spiece.model")),
    ("scheduler/", ("scheduler_config.json",)),
)


def sd3_components() -> dict[str, tuple[Any, str]]:
    """(class, subfolder) of every component of a StableDiffusion3Pipeline directory."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    return {
        "transformer": (SD3Transformer2DModel, "transformer"), "vae": (AutoencoderKL, "vae"),
        "text_encoder": (CLIPTextModelWithProjection, "text_encoder"),
        "text_encoder_2": (CLIPTextModelWithProjection, "text_encoder_2"),
        "text_encoder_3": (T5EncoderModel, "text_encoder_3"),
        "tokenizer": (CLIPTokenizer, "tokenizer"), "tokenizer_2": (CLIPTokenizer, "tokenizer_2"),
        "tokenizer_3": (T5TokenizerFast, "tokenizer_3"),
    }


class SD3Adapter(NegativePromptCFG, ModelAdapter):
    """SD3.5 (medium / large) from a local diffusers directory or the tiny config."""

    name = "sd3"
    real_cfg_field = "guidance_scale"
    paradigm = "flow"
    # Flow-GRPO's SD3.5 LoRA targets: the joint attention's image and text projections (not attn2)
    default_lora_targets = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
                            "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out"]
    cond_batch_keys = ("prompt_embeds", "pooled_prompt_embeds")
    pipeline_class_name = "StableDiffusion3Pipeline"
    transformer_subfolder = "transformer"
    text_component_names = (*TEXT_ENCODERS, *TOKENIZERS)
    negative_prompt = ""

    def __init__(self, source: ComponentSource, model_cfg: Any, device: torch.device,
                 vae_config: dict[str, Any], transformer_config: dict[str, Any]):
        super().__init__(source, model_cfg, device)
        self.vae_config = dict(vae_config)
        self.vae_scale_factor = 2 ** (len(self.vae_config["block_out_channels"]) - 1)
        self.patch_size = int(transformer_config.get("patch_size", 2))
        self.max_sequence_length = T5_MAX_SEQUENCE_LENGTH

    @classmethod
    def from_config(cls, model_cfg: Any, device: torch.device) -> SD3Adapter:
        """From ``model_cfg.path`` (a diffusers SD3.5 directory) or, with ``model_cfg.tiny``, the tiny model."""
        if model_cfg.tiny:
            from fastvideo.models.tiny_more import tiny_more_source

            source = tiny_more_source("sd3")
        else:
            command = download_command(SD3_REPO_ID, model_cfg.path, SD3_DEFAULT_DIR)
            source = directory_source(model_cfg.path, sd3_components(), SD3_REQUIRED_FILES, command)
        return cls(source, model_cfg, device, source.load_config("vae"), source.load_config("transformer"))

    # text ------------------------------------------------------------------------------------
    def text_pipeline(self) -> Any:
        """A ``StableDiffusion3Pipeline`` holding only the text encoders and tokenizers (for ``encode_prompt``)."""
        from diffusers import StableDiffusion3Pipeline

        parts = {name: self.component(name) for name in self.text_component_names}
        return StableDiffusion3Pipeline(transformer=None, scheduler=None, vae=None, **parts)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Cond:
        """(B, 77 + 256, D_t5) sequence and (B, D_l + D_g) pooled embedding, by the pipeline's ``encode_prompt``."""
        embeds, _, pooled, _ = self.text_pipeline().encode_prompt(
            list(prompts), None, None, device=self.device, do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": embeds.to(self.dtype), "pooled_prompt_embeds": pooled.to(self.dtype)}

    def encode_prompts(self, prompts: list[str]) -> Cond:
        """Text conditioning of ``prompts`` (the empty prompt is encoded first, once, for CFG)."""
        self.negative_cond()
        return self.encode_text(list(prompts))

    @property
    def cfg_scale(self) -> float:
        """Real CFG scale (``model_cfg.guidance_scale``; <= 1: off)."""
        return float(self.model_cfg.guidance_scale)

    # latents ---------------------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        """(latent channels, H / f, W / f); ValueError unless H and W are multiples of f x patch size."""
        step = self.vae_scale_factor * self.patch_size
        height, width = int(self.model_cfg.height), int(self.model_cfg.width)
        if height % step or width % step:
            raise ValueError(f"SD3 image size {height}x{width} must be divisible by {step} (VAE factor "
                             f"{self.vae_scale_factor} x patch size {self.patch_size})")
        f = self.vae_scale_factor
        return (int(self.vae_config["latent_channels"]), height // f, width // f)

    # denoiser --------------------------------------------------------------------------------
    def transformer_call(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """One transformer call at flow time sigma = ``timestep`` (B,): ``timestep = 1000 sigma``."""
        transformer = self.transformer
        dtype = unwrap_module(transformer).pos_embed.proj.weight.dtype  # the transformer's compute dtype
        device, batch = latents.device, latents.shape[0]
        sigma = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch).float()
        output = transformer(
            hidden_states=latents.to(dtype), timestep=sigma * TIMESTEP_SCALE,
            encoder_hidden_states=cond["prompt_embeds"].to(device=device, dtype=dtype),
            pooled_projections=cond["pooled_prompt_embeds"].to(device=device, dtype=dtype), return_dict=False,
        )[0]
        return output.float()

    def predict(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """Velocity (fp32) at sigma = ``timestep`` (B,) in [0, 1], with real CFG at ``guidance_scale`` > 1."""
        return self.guided(self.transformer_call, latents, timestep, cond)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> images (B, 3, H, W) in [0, 1] (fp32): x / scaling_factor + shift_factor, VAE decode."""
        vae = self.component("vae")
        x = latents.to(self.device, torch.float32) / self.vae_config["scaling_factor"]
        x = x + (self.vae_config.get("shift_factor") or 0.0)
        images = vae.decode(x.to(self.dtype), return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    def transformer_blocks(self) -> list[nn.Module]:
        """The joint (MMDiT) blocks (SD3.5-M: 24, the first 13 with dual attention)."""
        return list(unwrap_module(self.transformer).transformer_blocks)


register_adapter("sd3", SD3Adapter.from_config)

"""Qwen-Image (rectified flow, MMDiT) behind the ``ModelAdapter`` contract.

Latent format: FLUX-style *packed* tokens, (B, (h/2)*(w/2), 4*C), h, w = H/f, W/f with f = 2 ** (number
of temporal-downsample stages of the VAE) (Qwen-Image: 8) and C = the VAE's ``z_dim`` (16), exactly what
``QwenImagePipeline`` feeds its transformer; ``decode`` unpacks to the VAE's (B, C, 1, h, w).
H and W must be multiples of 2f (the pipeline would silently resize them).

Flow convention: x_sigma = (1 - sigma) x0 + sigma eps, v = eps - x0, Euler step x' = x + (sigma' - sigma) v.
The transformer is fed ``timestep = sigma`` (the pipeline passes its timesteps / 1000; the transformer's
time projection multiplies by 1000) and ``img_shapes = [(1, h/2, w/2)]`` per sample. Qwen-Image has no
guidance embedding: ``model_cfg.guidance_scale`` is not used.

Prompts are encoded by ``QwenImagePipeline.encode_prompt`` itself (a text-only pipeline over the adapter's
Qwen2.5-VL encoder and tokenizer): the prompt inside Qwen-Image's chat template, the last hidden state,
the template's first 34 tokens dropped, valid tokens only. The pipeline pads a batch to its longest
prompt; the cache needs one length, so the adapter stores ``prompt_embeds`` right-padded with zeros to
1024 tokens (the pipeline's maximum; DanceGRPO's preprocessing pads to the same) with the 0/1 mask
``prompt_embeds_mask``, and ``predict`` crops a batch back to its longest prompt and passes the mask
(``None`` when every token is valid, as the pipeline) -- the transformer's output equals the pipeline's.

True CFG (the stock pipeline's ``true_cfg_scale``, s = ``model_cfg.true_cfg_scale``; Qwen-Image's default
4.0; DanceGRPO trains without it): comb = v_u + s (v_c - v_u), rescaled per token to the conditional
output's norm, v = comb * ||v_c|| / ||comb|| (norms over each packed token's features), against the
negative prompt " " (the model card's choice; the pipeline runs true CFG only when given a negative
prompt), in one batched call on [uncond, cond] (``fastvideo.models.cfg``).

Decoding as the pipeline: unpack, x / (1 / latents_std) + latents_mean per channel, VAE decode, frame 0,
[-1, 1] -> [0, 1].
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.models.base import Cond, ModelAdapter, pack_2x2, unpack_2x2, unwrap_module
from fastvideo.models.cfg import NegativePromptCFG
from fastvideo.models.registry import register_adapter
from fastvideo.models.sources import (
    MODEL_WEIGHTS,
    ComponentSource,
    RequiredFiles,
    directory_source,
    download_command,
)

logger = logging.getLogger("fastvideo")

QWEN_IMAGE_REPO_ID = "Qwen/Qwen-Image"
QWEN_IMAGE_DEFAULT_DIR = "./data/Qwen-Image"
QWEN_MAX_SEQUENCE_LENGTH = 1024  # QwenImagePipeline's (maximum) max_sequence_length
QWEN_IMAGE_REQUIRED_FILES: RequiredFiles = (
    ("model_index.json", ()),
    ("transformer/", ("config.json",)), ("transformer/", MODEL_WEIGHTS),
    ("vae/", ("config.json",)), ("vae/", MODEL_WEIGHTS),
    ("text_encoder/", ("config.json",)), ("text_encoder/", MODEL_WEIGHTS),
    ("tokenizer/", ("tokenizer.json", "vocab.json")),
    ("scheduler/", ("scheduler_config.json",)),
)


def qwen_image_components() -> dict[str, tuple[Any, str]]:
    """(class, subfolder) of every component of a Qwen-Image diffusers directory."""
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    return {
        "transformer": (QwenImageTransformer2DModel, "transformer"), "vae": (AutoencoderKLQwenImage, "vae"),
        "text_encoder": (Qwen2_5_VLForConditionalGeneration, "text_encoder"),
        "tokenizer": (AutoTokenizer, "tokenizer"),
    }


class QwenImageAdapter(NegativePromptCFG, ModelAdapter):
    """Qwen-Image from a local diffusers directory or the tiny config."""

    name = "qwen_image"
    real_cfg_field = "true_cfg_scale"
    paradigm = "flow"
    default_lora_targets = ["to_q", "to_k", "to_v", "to_out.0"]  # diffusers' Qwen-Image LoRA recipe
    cond_batch_keys = ("prompt_embeds", "prompt_embeds_mask")
    pipeline_class_name = "QwenImagePipeline"
    transformer_subfolder = "transformer"
    text_component_names = ("text_encoder", "tokenizer")
    negative_prompt = " "

    def __init__(self, source: ComponentSource, model_cfg: Any, device: torch.device, vae_config: dict[str, Any]):
        super().__init__(source, model_cfg, device)
        self.vae_config = dict(vae_config)
        self.vae_scale_factor = 2 ** len(self.vae_config["temperal_downsample"])
        self.max_sequence_length = QWEN_MAX_SEQUENCE_LENGTH
        self._template_checked = False

    @classmethod
    def from_config(cls, model_cfg: Any, device: torch.device) -> QwenImageAdapter:
        """From ``model_cfg.path`` (a Qwen-Image diffusers directory) or the tiny model (``model_cfg.tiny``)."""
        if model_cfg.tiny:
            from fastvideo.models.tiny_more import tiny_more_source

            source = tiny_more_source("qwen_image")
        else:
            command = download_command(QWEN_IMAGE_REPO_ID, model_cfg.path, QWEN_IMAGE_DEFAULT_DIR)
            source = directory_source(model_cfg.path, qwen_image_components(), QWEN_IMAGE_REQUIRED_FILES, command)
        return cls(source, model_cfg, device, source.load_config("vae"))

    # text ------------------------------------------------------------------------------------
    def text_pipeline(self) -> Any:
        """A ``QwenImagePipeline`` holding only the text encoder and tokenizer (for ``encode_prompt``)."""
        from diffusers import QwenImagePipeline

        pipe = QwenImagePipeline(scheduler=None, vae=None, transformer=None, tokenizer=self.component("tokenizer"),
                                 text_encoder=self.component("text_encoder"))
        if not self._template_checked:
            self._template_checked = True
            prefix = pipe.prompt_template_encode.split("{}")[0]
            count = len(pipe.tokenizer(prefix).input_ids)
            if count != pipe.prompt_template_encode_start_idx:
                logger.warning("Qwen-Image's template prefix is %d tokens with this tokenizer, but the pipeline drops "
                               "%d: is this Qwen-Image's tokenizer?", count, pipe.prompt_template_encode_start_idx)
        return pipe

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Cond:
        """(B, 1024, D) embeddings (zero past each prompt) and their (B, 1024) 0/1 mask, by ``encode_prompt``."""
        embeds, mask = self.text_pipeline().encode_prompt(list(prompts), device=self.device,
                                                          max_sequence_length=self.max_sequence_length)
        batch, length = embeds.shape[:2]
        if mask is None:  # the pipeline drops an all-ones mask
            mask = torch.ones(batch, length, dtype=torch.long, device=embeds.device)
        pad = self.max_sequence_length - length
        padded = torch.cat([embeds, embeds.new_zeros(batch, pad, embeds.shape[2])], dim=1)
        mask = torch.cat([mask.long(), mask.new_zeros(batch, pad).long()], dim=1)
        return {"prompt_embeds": padded.to(self.dtype), "prompt_embeds_mask": mask}

    def encode_prompts(self, prompts: list[str]) -> Cond:
        """Text conditioning of ``prompts`` (the negative prompt is encoded first, once, for true CFG)."""
        self.negative_cond()
        return self.encode_text(list(prompts))

    @property
    def cfg_scale(self) -> float:
        """True CFG scale (``model_cfg.true_cfg_scale``; <= 1: off)."""
        return float(getattr(self.model_cfg, "true_cfg_scale", 1.0) or 1.0)

    # latents ---------------------------------------------------------------------------------
    def latent_hw(self) -> tuple[int, int]:
        """VAE latent height and width (both even) for the configured image size."""
        step = self.vae_scale_factor * 2
        height, width = int(self.model_cfg.height), int(self.model_cfg.width)
        if height % step or width % step:
            raise ValueError(f"Qwen-Image size {height}x{width} must be divisible by {step} (VAE factor "
                             f"{self.vae_scale_factor} x 2x2 patches); the pipeline would resize it")
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    def latent_shape(self) -> tuple[int, ...]:
        """Packed latents per sample: (tokens, 4 * z_dim)."""
        h, w = self.latent_hw()
        return ((h // 2) * (w // 2), 4 * int(self.vae_config["z_dim"]))

    def pack(self, latents: Tensor) -> Tensor:
        """(B, C, h, w) VAE latents -> (B, (h/2)*(w/2), 4C) tokens (``QwenImagePipeline._pack_latents``)."""
        return pack_2x2(latents)

    def unpack(self, latents: Tensor) -> Tensor:
        """Inverse of ``pack`` for the configured image size: (B, C, h, w)."""
        return unpack_2x2(latents, *self.latent_hw())

    def latent_grid(self):
        """Packed tokens <-> (B, C, h, w) VAE latents (block noise acts on the latent image)."""
        return self.unpack, self.pack

    # denoiser --------------------------------------------------------------------------------
    def transformer_call(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """One transformer call at sigma = ``timestep`` (B,), the text cropped to the batch's longest prompt."""
        transformer = self.transformer
        dtype = unwrap_module(transformer).img_in.weight.dtype  # the transformer's compute dtype
        device, batch = latents.device, latents.shape[0]
        mask = cond["prompt_embeds_mask"].to(device)
        if _is_fake(mask):  # the dry run (fastvideo.dryrun) has no mask values: plan for the full text length
            length, all_valid = mask.shape[1], False
        else:
            valid = mask.sum(dim=0).nonzero()
            length = int(valid.max()) + 1 if valid.numel() else 1
            all_valid = bool(mask[:, :length].all())
        mask = mask[:, :length]
        h, w = self.latent_hw()
        sigma = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch).float()
        output = transformer(
            hidden_states=latents.to(dtype), timestep=sigma.to(dtype),
            encoder_hidden_states=cond["prompt_embeds"][:, :length].to(device=device, dtype=dtype),
            encoder_hidden_states_mask=None if all_valid else mask,
            img_shapes=[[(1, h // 2, w // 2)]] * batch, return_dict=False,
        )[0]
        return output.float()

    def combine(self, uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
        """Qwen-Image's true CFG: ``u + s (c - u)`` rescaled per token to the norm of ``c``."""
        combined = uncond + scale * (cond - uncond)
        return combined * (cond.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))

    def predict(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """Velocity (fp32) at sigma = ``timestep`` (B,) in [0, 1] for packed ``latents``; true CFG when
        ``true_cfg_scale`` > 1."""
        return self.guided(self.transformer_call, latents, timestep, cond)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Packed latents -> images (B, 3, H, W) in [0, 1] (fp32) with the VAE's latents_mean / latents_std."""
        vae = self.component("vae")
        x = self.unpack(latents.to(self.device, torch.float32))[:, :, None]
        shape = (1, int(self.vae_config["z_dim"]), 1, 1, 1)
        mean = torch.tensor(self.vae_config["latents_mean"]).view(shape).to(x)
        inverse_std = 1.0 / torch.tensor(self.vae_config["latents_std"]).view(shape).to(x)
        images = vae.decode((x / inverse_std + mean).to(self.dtype), return_dict=False)[0][:, :, 0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    def transformer_blocks(self) -> list[nn.Module]:
        """The dual-stream (MMDiT) blocks (Qwen-Image: 60)."""
        return list(unwrap_module(self.transformer).transformer_blocks)


register_adapter("qwen_image", QwenImageAdapter.from_config)


def _is_fake(tensor: Tensor) -> bool:
    from torch._guards import detect_fake_mode

    return detect_fake_mode(tensor) is not None

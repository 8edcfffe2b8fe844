"""Stable Diffusion 1.x (epsilon-prediction DDPM, sampled with DDIM) behind the ``ModelAdapter`` contract.

Latents are the VAE's (B, 4, H/8, W/8). ``predict`` returns the epsilon prediction at the integer
DDPM timestep with real classifier-free guidance when ``model_cfg.guidance_scale`` > 1: one batched
UNet call on [uncond, cond], then ``uncond + s * (cond - uncond)`` (as StableDiffusionPipeline).
The unconditional branch uses the empty-prompt embedding, encoded once by the adapter; it is kept
when the text encoders are freed and stored in the embedding cache (``cache_extras``).

``alphas_cumprod`` / ``final_alpha_cumprod`` / ``num_train_timesteps`` come from the directory's
scheduler config read through ``DDIMScheduler`` (SD v1-4: scaled-linear betas, 1000 steps,
``set_alpha_to_one=False``, so the final alpha is alphas_cumprod[0]).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.models.base import Cond, ModelAdapter, unwrap_module
from fastvideo.models.registry import register_adapter
from fastvideo.models.sources import (
    MODEL_WEIGHTS,
    ComponentSource,
    RequiredFiles,
    directory_source,
    download_command,
    tiny_source,
)

SD_REPO_ID = "CompVis/stable-diffusion-v1-4"
SD_DEFAULT_DIR = "./data/stable-diffusion-v1-4"
NEGATIVE_KEY = "negative_prompt_embeds"
SD_REQUIRED_FILES: RequiredFiles = (
    ("model_index.json", ()),
    ("unet/", ("config.json",)), ("unet/", MODEL_WEIGHTS),
    ("vae/", ("config.json",)), ("vae/", MODEL_WEIGHTS),
    ("text_encoder/", ("config.json",)), ("text_encoder/", MODEL_WEIGHTS),
    ("tokenizer/", ("vocab.json", "tokenizer.json")),
    ("scheduler/", ("scheduler_config.json",)),
)


class SDAdapter(ModelAdapter):
    """Stable Diffusion v1.x from a local diffusers directory or the tiny config."""

    name = "sd"
    real_cfg_field = "guidance_scale"
    paradigm = "diffusion"
    default_lora_targets = ["to_q", "to_k", "to_v", "to_out.0"]
    cond_batch_keys = ("prompt_embeds",)
    pipeline_class_name = "StableDiffusionPipeline"
    transformer_subfolder = "unet"
    text_component_names = ("text_encoder", "tokenizer")

    def __init__(self, source: ComponentSource, model_cfg: Any, device: torch.device,
                 vae_config: dict[str, Any], scheduler_config: dict[str, Any]):
        from diffusers import DDIMScheduler

        super().__init__(source, model_cfg, device)
        self.vae_config = dict(vae_config)
        self.vae_scale_factor = 2 ** (len(self.vae_config["block_out_channels"]) - 1)
        scheduler = DDIMScheduler.from_config(scheduler_config)
        self.alphas_cumprod: Tensor = scheduler.alphas_cumprod.float().clone()
        self.final_alpha_cumprod: float = float(scheduler.final_alpha_cumprod)
        self.num_train_timesteps: int = int(scheduler.config.num_train_timesteps)
        self._negative_prompt_embeds: Tensor | None = None

    @classmethod
    def from_config(cls, model_cfg: Any, device: torch.device) -> SDAdapter:
        """From ``model_cfg.path`` (a diffusers SD 1.x directory) or, with ``model_cfg.tiny``, the tiny model."""
        if model_cfg.tiny:
            source = tiny_source("sd")
        else:
            from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
            from transformers import CLIPTextModel, CLIPTokenizer

            components = {
                "unet": (UNet2DConditionModel, "unet"), "vae": (AutoencoderKL, "vae"),
                "text_encoder": (CLIPTextModel, "text_encoder"), "tokenizer": (CLIPTokenizer, "tokenizer"),
                "scheduler": (DDIMScheduler, "scheduler"),
            }
            command = download_command(SD_REPO_ID, model_cfg.path, SD_DEFAULT_DIR)
            source = directory_source(model_cfg.path, components, SD_REQUIRED_FILES, command)
        scheduler_config = dict(source.load("scheduler", None).config)
        return cls(source, model_cfg, device, source.load_config("vae"), scheduler_config)

    # text ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> Tensor:
        tokenizer, encoder = self.component("tokenizer"), self.component("text_encoder")
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        return encoder(ids.to(self.device))[0].to(self.dtype)

    def encode_prompts(self, prompts: list[str]) -> Cond:
        """CLIP last hidden states (B, 77, D), like StableDiffusionPipeline.encode_prompt (no clip skip)."""
        if self._negative_prompt_embeds is None:
            self._negative_prompt_embeds = self._encode([""])
        return {"prompt_embeds": self._encode(list(prompts))}

    @property
    def negative_prompt_embeds(self) -> Tensor:
        """Embedding (1, 77, D) of the empty prompt for CFG (from the cache, or encoded once)."""
        if self._negative_prompt_embeds is None:
            self._negative_prompt_embeds = self._encode([""])
        return self._negative_prompt_embeds

    def cache_extras(self) -> dict[str, Tensor]:
        return {NEGATIVE_KEY: self.negative_prompt_embeds.cpu()}

    def load_cache_extras(self, extras: dict[str, Tensor]) -> None:
        if NEGATIVE_KEY not in extras:
            raise KeyError(f"the embedding cache has no '{NEGATIVE_KEY}' (needed for SD classifier-free "
                           "guidance); re-run the SD preprocessing")
        self._negative_prompt_embeds = extras[NEGATIVE_KEY].to(self.device, self.dtype)

    # latents ---------------------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        """(latent channels, H / f, W / f) with f the VAE's spatial factor (SD: 8)."""
        f, height, width = self.vae_scale_factor, self.model_cfg.height, self.model_cfg.width
        if height % f or width % f:
            raise ValueError(f"SD image size {height}x{width} must be divisible by the VAE factor {f}")
        return (self.vae_config["latent_channels"], height // f, width // f)

    def predict(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """Epsilon prediction (fp32) at integer DDPM timesteps (B,), with real CFG when the scale > 1."""
        unet = self.transformer
        dtype = unwrap_module(unet).conv_in.weight.dtype  # the UNet's compute dtype
        device, batch = latents.device, latents.shape[0]
        t = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch)
        text = cond["prompt_embeds"].to(device=device, dtype=dtype)
        scale = float(self.model_cfg.guidance_scale)
        if scale <= 1.0:
            return unet(latents.to(dtype), t, encoder_hidden_states=text, return_dict=False)[0].float()
        negative = self.negative_prompt_embeds.to(device=device, dtype=dtype).expand(batch, -1, -1)
        output = unet(torch.cat([latents, latents]).to(dtype), torch.cat([t, t]),
                      encoder_hidden_states=torch.cat([negative, text]), return_dict=False)[0]
        uncond, conditional = output.float().chunk(2)
        return uncond + scale * (conditional - uncond)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> images in [0, 1] (fp32), dividing by the VAE's own scaling factor."""
        vae = self.component("vae")
        x = latents.to(self.device, torch.float32) / self.vae_config["scaling_factor"]
        images = vae.decode(x.to(self.dtype), return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    def transformer_blocks(self) -> list[nn.Module]:
        """UNet down blocks, mid block and up blocks: the resolution stages FSDP shards one by one.

        SD's UNet has no uniform block list; these 9 stages (v1.x: 4 down, 1 mid, 4 up) hold almost
        all parameters, and the root module keeps the small conv_in/conv_out/time embedding.
        """
        unet = unwrap_module(self.transformer)
        blocks = list(unet.down_blocks) + ([unet.mid_block] if unet.mid_block is not None else [])
        return blocks + list(unet.up_blocks)


register_adapter("sd", SDAdapter.from_config)

"""Wan2.1 text-to-video (rectified flow) behind the ``ModelAdapter`` contract.

Latents are ``AutoencoderKLWan``'s (B, C, T', h, w) with T' = (num_frames - 1) / 4 + 1 latent frames and
h, w = H / 8, W / 8 (Wan2.1: C = 16). ``num_frames = 1`` is the text-to-image mode (DanceGRPO trains
Wan2.1-1.3B as an image model at 512x512): one latent frame, and ``decode`` returns images
(B, 3, H, W) instead of videos (B, T, 3, H, W). Frames must be 4k+1 and H, W multiples of 16 (VAE factor
8 x patch 2, the pipeline's check).

Flow convention: x_sigma = (1 - sigma) x0 + sigma eps, v = eps - x0, Euler step x' = x + (sigma' - sigma) v;
the transformer is fed ``timestep = 1000 sigma`` (``WanPipeline`` passes the scheduler's timesteps).

Prompts are encoded by ``WanPipeline.encode_prompt`` itself (a text-only pipeline over the adapter's
UMT5 encoder and tokenizer): the prompt is cleaned (ftfy if installed, HTML unescape, whitespace), UMT5's
last hidden state over 512 tokens (the pipeline's ``max_sequence_length``; Flow-GRPO and DanceGRPO use
the same) is kept for the prompt's tokens and zero beyond; no attention mask reaches the transformer.

Guidance: real CFG ``v = v_u + s (v_c - v_u)``, s = ``model_cfg.guidance_scale`` (Wan2.1: 5; DanceGRPO's
``--cfg_infer 5``), against the empty prompt (``WanPipeline``'s default negative prompt), in one batched
call on [uncond, cond] (``fastvideo.models.cfg``).

Decoding as the pipeline: x / (1 / latents_std) + latents_mean per channel (the VAE config's statistics),
VAE decode, [-1, 1] -> [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.models.base import Cond, ModelAdapter, unwrap_module
from fastvideo.models.cfg import NegativePromptCFG
from fastvideo.models.hunyuan import check_frame_size, check_num_frames
from fastvideo.models.registry import register_adapter
from fastvideo.models.sources import (
    MODEL_WEIGHTS,
    ComponentSource,
    RequiredFiles,
    directory_source,
    download_command,
)

WAN_REPO_ID = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN_DEFAULT_DIR = "./data/Wan2.1-T2V-1.3B-Diffusers"
UMT5_MAX_SEQUENCE_LENGTH = 512  # WanPipeline.__call__'s default max_sequence_length
TIMESTEP_SCALE = 1000.0
WAN_REQUIRED_FILES: RequiredFiles = (
    ("model_index.json", ()),
    ("transformer/", ("config.json",)), ("transformer/", MODEL_WEIGHTS),
    ("vae/", ("config.json",)), ("vae/", MODEL_WEIGHTS),
    ("text_encoder/", ("config.json",)), ("text_encoder/", MODEL_WEIGHTS),
    ("tokenizer/", ("tokenizer.json", "spiece.model")),
    ("scheduler/", ("scheduler_config.json",)),
)


def wan_components() -> dict[str, tuple[Any, str]]:
    """(class, subfolder) of every component of a Wan2.1 T2V diffusers directory."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    return {
        "transformer": (WanTransformer3DModel, "transformer"), "vae": (AutoencoderKLWan, "vae"),
        "text_encoder": (UMT5EncoderModel, "text_encoder"), "tokenizer": (AutoTokenizer, "tokenizer"),
    }


class WanAdapter(NegativePromptCFG, ModelAdapter):
    """Wan2.1 T2V (or T2I with num_frames = 1) from a local diffusers directory or the tiny config."""

    name = "wan"
    real_cfg_field = "guidance_scale"
    paradigm = "flow"
    default_lora_targets = ["to_q", "to_k", "to_v", "to_out.0"]  # self- and cross-attention projections
    cond_batch_keys = ("prompt_embeds",)
    pipeline_class_name = "WanPipeline"
    transformer_subfolder = "transformer"
    text_component_names = ("text_encoder", "tokenizer")
    negative_prompt = ""

    def __init__(self, source: ComponentSource, model_cfg: Any, device: torch.device,
                 vae_config: dict[str, Any], transformer_config: dict[str, Any]):
        super().__init__(source, model_cfg, device)
        self.vae_config = dict(vae_config)
        self.spatial_factor = int(self.vae_config.get("scale_factor_spatial") or 8)
        self.temporal_factor = int(self.vae_config.get("scale_factor_temporal") or 4)
        patch = transformer_config.get("patch_size", (1, 2, 2))
        if int(patch[0]) != 1:
            raise ValueError(f"Wan transformer patch_size {tuple(patch)}: only a temporal patch of 1 is supported")
        self.patch_size = int(patch[1])
        self.max_sequence_length = UMT5_MAX_SEQUENCE_LENGTH

    @classmethod
    def from_config(cls, model_cfg: Any, device: torch.device) -> WanAdapter:
        """From ``model_cfg.path`` (a Wan2.1 T2V diffusers directory) or the tiny model (``model_cfg.tiny``)."""
        if model_cfg.tiny:
            from fastvideo.models.tiny_more import tiny_more_source

            source = tiny_more_source("wan")
        else:
            command = download_command(WAN_REPO_ID, model_cfg.path, WAN_DEFAULT_DIR)
            source = directory_source(model_cfg.path, wan_components(), WAN_REQUIRED_FILES, command)
        return cls(source, model_cfg, device, source.load_config("vae"), source.load_config("transformer"))

    # text ------------------------------------------------------------------------------------
    def text_pipeline(self) -> Any:
        """A ``WanPipeline`` holding only the text encoder and tokenizer (for ``encode_prompt``)."""
        from diffusers import WanPipeline

        return WanPipeline(tokenizer=self.component("tokenizer"), text_encoder=self.component("text_encoder"),
                           vae=None, scheduler=None)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Cond:
        """UMT5 sequence (B, 512, D), zero past each prompt's tokens, by the pipeline's ``encode_prompt``."""
        embeds, _ = self.text_pipeline().encode_prompt(
            list(prompts), do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
            device=self.device)
        return {"prompt_embeds": embeds.to(self.dtype)}

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
        """(C, T', h, w) for the configured num_frames/height/width (validated, see the module docstring)."""
        frames = check_num_frames(int(self.model_cfg.num_frames), self.temporal_factor)
        h, w = check_frame_size(int(self.model_cfg.height), int(self.model_cfg.width), self.spatial_factor,
                                self.patch_size)
        return (int(self.vae_config["z_dim"]), frames, h, w)

    # denoiser --------------------------------------------------------------------------------
    def transformer_call(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """One transformer call at flow time sigma = ``timestep`` (B,): ``timestep = 1000 sigma``."""
        transformer = self.transformer
        dtype = unwrap_module(transformer).patch_embedding.weight.dtype  # the transformer's compute dtype
        device, batch = latents.device, latents.shape[0]
        sigma = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch).float()
        output = transformer(
            hidden_states=latents.to(dtype), timestep=sigma * TIMESTEP_SCALE,
            encoder_hidden_states=cond["prompt_embeds"].to(device=device, dtype=dtype), return_dict=False,
        )[0]
        return output.float()

    def predict(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """Velocity (fp32) at sigma = ``timestep`` (B,) in [0, 1], with real CFG at ``guidance_scale`` > 1."""
        return self.guided(self.transformer_call, latents, timestep, cond)

    def denormalize(self, latents: Tensor) -> Tensor:
        """Model latents -> VAE latents: x / (1 / std) + mean per channel, computed as ``WanPipeline`` does."""
        shape = (1, int(self.vae_config["z_dim"]), 1, 1, 1)
        mean = torch.tensor(self.vae_config["latents_mean"]).view(shape).to(latents)
        inverse_std = 1.0 / torch.tensor(self.vae_config["latents_std"]).view(shape).to(latents)
        return latents / inverse_std + mean

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> videos (B, T, 3, H, W) in [0, 1], fp32 (images (B, 3, H, W) when T = 1), one clip at a time."""
        vae = self.component("vae")
        x = self.denormalize(latents.to(self.device, torch.float32))
        clips = [vae.decode(clip.to(self.dtype), return_dict=False)[0] for clip in x.split(1)]
        videos = (torch.cat(clips).float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)
        return videos[:, 0] if videos.shape[1] == 1 else videos

    def transformer_blocks(self) -> list[nn.Module]:
        """The transformer blocks (Wan2.1-1.3B: 30, 14B: 40)."""
        return list(unwrap_module(self.transformer).blocks)


register_adapter("wan", WanAdapter.from_config)

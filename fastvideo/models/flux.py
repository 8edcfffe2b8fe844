"""FLUX.1 (rectified flow) behind the ``ModelAdapter`` contract.

Latent format: the adapter's public latents are FLUX's *packed* sequence, (B, (h/2)*(w/2), 4*C),
h, w = the VAE latent size (pixels / the VAE's spatial factor), C = the VAE's latent channels
(FLUX.1: 16, so 64 features per token). This is what the transformer consumes, so no repacking
happens per step; the rollout treats it as an opaque batch-first tensor. Image position ids
(``img_ids``) are built inside ``predict`` and the packing is undone inside ``decode``.

``predict`` feeds the transformer exactly as ``diffusers.FluxPipeline`` does: ``timestep = sigma``
(the transformer multiplies by 1000), zero ``txt_ids``, the pooled CLIP embedding as
``pooled_projections`` and, when the model has a guidance embedding, ``guidance =
model_cfg.guidance_scale`` (FLUX.1-dev: 3.5). There is no CFG branch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fastvideo.models.base import Cond, ModelAdapter, pack_2x2, unpack_2x2, unwrap_module
from fastvideo.models.registry import register_adapter
from fastvideo.models.sources import (
    MODEL_WEIGHTS,
    ComponentSource,
    RequiredFiles,
    directory_source,
    download_command,
    tiny_source,
)

FLUX_REPO_ID = "black-forest-labs/FLUX.1-dev"
FLUX_DEFAULT_DIR = "./data/flux"
T5_MAX_SEQUENCE_LENGTH = 512  # FluxPipeline's upper bound of max_sequence_length
FLUX_REQUIRED_FILES: RequiredFiles = (
    ("model_index.json", ()),
    ("transformer/", ("config.json",)), ("transformer/", MODEL_WEIGHTS),
    ("vae/", ("config.json",)), ("vae/", MODEL_WEIGHTS),
    ("text_encoder/", ("config.json",)), ("text_encoder/", MODEL_WEIGHTS),
    ("text_encoder_2/", ("config.json",)), ("text_encoder_2/", MODEL_WEIGHTS),
    ("tokenizer/", ("vocab.json", "tokenizer.json")),
    ("tokenizer_2/", ("tokenizer.json", "spiece.model")),
    ("scheduler/", ("scheduler_config.json",)),
)


class FluxAdapter(ModelAdapter):
    """FLUX.1-dev/schnell from a local diffusers directory or the tiny config."""

    name = "flux"
    paradigm = "flow"
    default_lora_targets = ["to_q", "to_k", "to_v", "to_out.0"]
    cond_batch_keys = ("prompt_embeds", "pooled_prompt_embeds")
    pipeline_class_name = "FluxPipeline"
    transformer_subfolder = "transformer"
    text_component_names = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")

    def __init__(self, source: ComponentSource, model_cfg: Any, device: torch.device,
                 vae_config: dict[str, Any]):
        super().__init__(source, model_cfg, device)
        self.vae_config = dict(vae_config)
        self.vae_scale_factor = 2 ** (len(self.vae_config["block_out_channels"]) - 1)
        self._guidance_embeds: bool | None = None

    @classmethod
    def from_config(cls, model_cfg: Any, device: torch.device) -> FluxAdapter:
        """From ``model_cfg.path`` (a diffusers FLUX directory) or, with ``model_cfg.tiny``, the tiny model."""
        if model_cfg.tiny:
            source = tiny_source("flux")
        else:
            from diffusers import AutoencoderKL, FluxTransformer2DModel
            from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

            components = {
                "transformer": (FluxTransformer2DModel, "transformer"), "vae": (AutoencoderKL, "vae"),
                "text_encoder": (CLIPTextModel, "text_encoder"),
                "text_encoder_2": (T5EncoderModel, "text_encoder_2"),
                "tokenizer": (CLIPTokenizer, "tokenizer"), "tokenizer_2": (T5TokenizerFast, "tokenizer_2"),
            }
            command = download_command(FLUX_REPO_ID, model_cfg.path, FLUX_DEFAULT_DIR)
            source = directory_source(model_cfg.path, components, FLUX_REQUIRED_FILES, command)
        return cls(source, model_cfg, device, source.load_config("vae"))

    # text ------------------------------------------------------------------------------------
    @property
    def max_sequence_length(self) -> int:
        """T5 tokens per prompt: the T5 tokenizer's model_max_length, at most 512 (FLUX.1-dev: 512)."""
        return min(int(self.component("tokenizer_2").model_max_length), T5_MAX_SEQUENCE_LENGTH)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Cond:
        """CLIP pooled embedding (B, D_clip) and T5 sequence (B, L, D_t5), like FluxPipeline.encode_prompt."""
        clip_tok, t5_tok = self.component("tokenizer"), self.component("tokenizer_2")
        clip_ids = clip_tok(prompts, padding="max_length", max_length=clip_tok.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
        pooled = self.component("text_encoder")(clip_ids.to(self.device), output_hidden_states=False).pooler_output
        t5_ids = t5_tok(prompts, padding="max_length", max_length=self.max_sequence_length,
                        truncation=True, return_tensors="pt").input_ids
        sequence = self.component("text_encoder_2")(t5_ids.to(self.device), output_hidden_states=False)[0]
        return {"prompt_embeds": sequence.to(self.dtype), "pooled_prompt_embeds": pooled.to(self.dtype)}

    # latents ---------------------------------------------------------------------------------
    def latent_hw(self) -> tuple[int, int]:
        """VAE latent height and width (both even) for the configured image size."""
        step = self.vae_scale_factor * 2
        height, width = self.model_cfg.height, self.model_cfg.width
        if height % step or width % step:
            raise ValueError(f"FLUX image size {height}x{width} must be divisible by {step} "
                             f"(VAE factor {self.vae_scale_factor} x 2x2 patches)")
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    def latent_shape(self) -> tuple[int, ...]:
        """Packed latents per sample: (tokens, 4 * latent channels)."""
        h, w = self.latent_hw()
        return ((h // 2) * (w // 2), 4 * self.vae_config["latent_channels"])

    def image_ids(self) -> Tensor:
        """Position ids of the packed image tokens, (tokens, 3): (0, row, column)."""
        h, w = self.latent_hw()
        ids = torch.zeros(h // 2, w // 2, 3)
        ids[..., 1] = torch.arange(h // 2)[:, None]
        ids[..., 2] = torch.arange(w // 2)[None, :]
        return ids.reshape(-1, 3)

    def pack(self, latents: Tensor) -> Tensor:
        """(B, C, h, w) VAE latents -> (B, (h/2)*(w/2), 4C) tokens (``FluxPipeline._pack_latents``)."""
        return pack_2x2(latents)

    def unpack(self, latents: Tensor) -> Tensor:
        """Inverse of ``pack`` for the configured image size: (B, C, h, w)."""
        return unpack_2x2(latents, *self.latent_hw())

    def latent_grid(self):
        """Packed tokens <-> (B, C, h, w) VAE latents (block noise acts on the latent image)."""
        return self.unpack, self.pack

    # denoiser --------------------------------------------------------------------------------
    def _on_transformer_loaded(self, module: nn.Module) -> None:
        self._guidance_embeds = bool(module.config.guidance_embeds)

    def predict(self, latents: Tensor, timestep: Tensor, cond: Cond) -> Tensor:
        """Velocity (fp32) at flow time sigma = ``timestep`` (B,) in [0, 1] for packed ``latents``."""
        transformer = self.transformer
        # the input projection's dtype: the transformer's compute dtype (FSDP2/autocast cast from there)
        dtype = unwrap_module(transformer).x_embedder.weight.dtype
        device, batch = latents.device, latents.shape[0]
        sigma = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch).to(dtype)
        guidance = None
        if self._guidance_embeds:
            guidance = torch.full((batch,), float(self.model_cfg.guidance_scale), device=device,
                                  dtype=torch.float32)
        text = cond["prompt_embeds"].to(device=device, dtype=dtype)
        output = transformer(
            hidden_states=latents.to(dtype), timestep=sigma, guidance=guidance,
            pooled_projections=cond["pooled_prompt_embeds"].to(device=device, dtype=dtype),
            encoder_hidden_states=text, txt_ids=torch.zeros(text.shape[1], 3, device=device, dtype=dtype),
            img_ids=self.image_ids().to(device=device, dtype=dtype), return_dict=False,
        )[0]
        return output.float()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Packed latents -> images in [0, 1] (fp32) with the VAE's own scaling and shift factors."""
        vae = self.component("vae")
        x = self.unpack(latents.to(self.device, torch.float32))
        x = x / self.vae_config["scaling_factor"] + (self.vae_config.get("shift_factor") or 0.0)
        images = vae.decode(x.to(self.dtype), return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    def transformer_blocks(self) -> list[nn.Module]:
        """The 19 double-stream then 38 single-stream blocks (FLUX.1)."""
        module = unwrap_module(self.transformer)
        return list(module.transformer_blocks) + list(module.single_transformer_blocks)


register_adapter("flux", FluxAdapter.from_config)

"""A toy adapter of the ModelAdapter contract: small enough to run the whole trainer in milliseconds.

It exercises every model-agnostic code path (rollout, update, FSDP2, checkpoints) without diffusers.
"""

from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn


class ToyBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h):
        return h + self.proj(torch.nn.functional.silu(self.norm(h)))


class ToyDenoiser(nn.Module):
    """Predicts a (B, C, H, W) output from latents, a timestep and a prompt embedding."""

    def __init__(self, latent_shape=(2, 4, 4), embed_dim: int = 8, hidden: int = 32, depth: int = 2):
        super().__init__()
        numel = int(torch.tensor(latent_shape).prod())
        self.latent_shape = latent_shape
        self.inp = nn.Linear(numel + embed_dim + 1, hidden)
        self.blocks = nn.ModuleList([ToyBlock(hidden) for _ in range(depth)])
        self.out = nn.Linear(hidden, numel)

    def forward(self, latents, timestep, embeds):
        b = latents.shape[0]
        h = self.inp(torch.cat([latents.reshape(b, -1), embeds, timestep.reshape(b, 1).float()], dim=1))
        for block in self.blocks:
            h = block(h)
        return self.out(h).reshape(latents.shape).clone()


def _prompt_embedding(prompt: str, dim: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little") >> 1
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed))


class ToyAdapter:
    """Flow (or diffusion) adapter around ToyDenoiser; decode = sigmoid of 3 channels, upsampled."""

    name = "toy"
    default_lora_targets = ["proj"]
    pipeline_class_name = "DiffusionPipeline"

    def __init__(self, paradigm: str = "flow", seed: int = 0, device="cpu"):
        torch.manual_seed(seed)
        self.paradigm = paradigm
        self.device = torch.device(device)
        self.transformer = ToyDenoiser().to(self.device)
        if paradigm == "diffusion":
            betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
            self.alphas_cumprod = torch.cumprod(1 - betas, 0)
            self.final_alpha_cumprod = float(self.alphas_cumprod[0])
            self.num_train_timesteps = 1000

    def load_text_encoders(self):
        return None

    def variant(self, *, transformer=None, **model_options):
        """The contract's view with another denoiser; the toy has no model options (guidance, size)."""
        if transformer is None:
            return self
        view = copy.copy(self)
        view.transformer = transformer
        return view

    def encode_prompts(self, prompts):
        return {"prompt_embeds": torch.stack([_prompt_embedding(p, 8) for p in prompts]).to(self.device)}

    def latent_shape(self):
        return (2, 4, 4)

    def predict(self, latents, timestep, cond):
        t = timestep.float() / (1000.0 if self.paradigm == "diffusion" else 1.0)
        return self.transformer(latents, t, cond["prompt_embeds"])

    def decode(self, latents):
        img = torch.sigmoid(torch.cat([latents, latents[:, :1]], dim=1))
        return nn.functional.interpolate(img.float(), scale_factor=2)

    def transformer_blocks(self):
        return list(self.transformer.blocks)


class BrightnessRewards:
    """RewardSet-like callable: mean pixel value (total) and its breakdown."""

    weights = {"brightness": 1.0}

    def __call__(self, images, prompts):
        r = images.float().flatten(1).mean(1).cpu()
        return r, {"brightness": r}

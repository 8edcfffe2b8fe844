"""Clean renders as training data: the world draws unlimited ground truth for any train prompt.

``clean_flow_loss`` is the pretraining objective of the shipped FLUX-style base (rectified flow on VAE
latents of fresh renders, ``fastvideo.shapes.pretrain.train_flux``) written against the framework's
adapter contract, so it trains exactly the module GRPO trains (``adapter.transformer``; the text
encoders and the VAE stay frozen):

    x0 = pack((vae.encode(render) - shift) * scale),   t ~ shift_3(logit-normal(0, 1)),   eps ~ N(0, I)
    x_t = (1 - t) x0 + t eps,   L = mean || adapter.predict(x_t, t, cond(prompt)) - (eps - x0) ||^2

``train_on_clean_renders`` spends a wall-clock budget on that loss alone: the *pretraining-only
control* of ``benchmarks/bench_learning.py`` (what the same minutes buy without any reward).
``CleanRenderLoss`` is the same loss as the trainer's supervised term (``train.supervised_coef``): RL plus
ground truth in every micro-batch, as InstructGPT mixes its pretraining loss into PPO.
Flow adapters with ``pack`` (FLUX layout) only.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from fastvideo.shapes.pretrain.data import scene_batch, step_generator
from fastvideo.shapes.pretrain.train_flux import sample_flow_time


@torch.no_grad()
def clean_latents(adapter, images: Tensor, generator: torch.Generator) -> Tensor:
    """VAE latents (B, C, h, w) of images in [-1, 1]: a posterior sample, normalised as the adapter decodes."""
    vae = adapter.component("vae")
    z = vae.encode(images.to(adapter.device, adapter.dtype)).latent_dist.sample(generator).float()
    shift = adapter.vae_config.get("shift_factor") or 0.0
    return (z - shift) * adapter.vae_config["scaling_factor"]


def clean_flow_loss(adapter, prompts: list[str], images: Tensor, generator: torch.Generator,
                    cond: dict | None = None) -> Tensor:
    """Rectified-flow loss of ``adapter.predict`` on clean renders (module docstring); the random draws
    (posterior sample, times, noise on the latent grid) are those of the pretraining loss."""
    z0 = clean_latents(adapter, images, generator)
    t = sample_flow_time(z0.shape[0], generator).to(z0.device)
    noise = adapter.pack(torch.randn(z0.shape, generator=generator).to(z0.device))
    x0 = adapter.pack(z0)
    xt = (1.0 - t.view(-1, 1, 1)) * x0 + t.view(-1, 1, 1) * noise
    if cond is None:
        with torch.no_grad():
            cond = adapter.encode_prompts(prompts)
    return (adapter.predict(xt, t, cond) - (noise - x0)).square().mean()


class CleanRenderLoss:
    """``GRPOTrainer(..., supervised_loss=CleanRenderLoss(batch_size, seed, rank))``: ``clean_flow_loss`` of the
    trained view on ``batch_size`` fresh renders of train prompts per call. The draws are a pure function of
    (seed, rank, iteration, call index), so a resumed run sees the batches it would have seen."""

    CALLS_PER_ITERATION = 1 << 16
    """Stride of the iteration in the data step index (more micro-batches than any update makes)."""

    def __init__(self, batch_size: int, seed: int, rank: int = 0):
        self.batch_size, self.seed = batch_size, int(seed) * 1000 + rank + 1  # never the pretraining stream

    def __call__(self, adapter, iteration: int, index: int) -> Tensor:
        if getattr(adapter.model_cfg, "num_frames", 1) > 1 or not hasattr(adapter, "pack"):
            raise ValueError("the clean-render loss (train.supervised_coef) renders still images for flow adapters "
                             f"with the FLUX layout; {type(adapter).__name__} is not one")
        step = iteration * self.CALLS_PER_ITERATION + index
        prompts, images = scene_batch(self.batch_size, self.seed, step, image_size=adapter.model_cfg.height)
        return clean_flow_loss(adapter, prompts, images, step_generator(self.seed, step, purpose=1))


def train_on_clean_renders(adapter, *, minutes: float, lr: float = 1e-5, batch_size: int = 32, seed: int = 0,
                           max_steps: int = 0, skill: str | None = None) -> dict:
    """Adam on ``clean_flow_loss`` until ``minutes`` of wall clock (or ``max_steps``) are spent.

    Data: skill-balanced *train* prompts (``skill``: of that skill only) and fresh renders per step
    (``scene_batch(seed, step)``), never the held-out compositions. Returns {"steps", "seconds",
    "loss_first", "loss_last"}.
    """
    module = adapter.transformer
    module.requires_grad_(True)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    started, step, losses = time.perf_counter(), 0, []
    while (max_steps <= 0 or step < max_steps) and time.perf_counter() - started < 60.0 * minutes:
        prompts, images = scene_batch(batch_size, seed, step, skill=skill)
        loss = clean_flow_loss(adapter, prompts, images, step_generator(seed, step, purpose=1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        step += 1
    return {"steps": step, "seconds": time.perf_counter() - started,
            "loss_first": losses[0] if losses else float("nan"),
            "loss_last": sum(losses[-10:]) / max(1, len(losses[-10:]))}

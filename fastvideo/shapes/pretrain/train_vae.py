"""Stage 1: the AutoencoderKL (64x64x3 <-> 16x16x4) and its latent statistics.

Loss: foreground-weighted L1 + MSE reconstruction of a posterior sample + a small KL. After training
the latent mean/std of fresh train scenes set ``scaling_factor``/``shift_factor``: FLUX normalises
latents as (z - shift) * scale, SD as z * scale (the stock SD pipeline ignores shift), so the two
pipeline directories get the same weights with different factors (see ``latent_factors``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from fastvideo.shapes.grammar import BACKGROUND
from fastvideo.shapes.pretrain.common import (
    LossLog,
    StageOptions,
    finish_step,
    load_state,
    make_optimizer,
)
from fastvideo.shapes.pretrain.components import IMAGE_SIZE, ModelSizes, build_vae
from fastvideo.shapes.pretrain.data import foreground_weight, scene_batch, step_generator
from fastvideo.training.optim import EMA

KL_WEIGHT = 1e-6
MSE_WEIGHT = 1.0
FOREGROUND_BOOST = 4.0
STATS_SAMPLES = 512
STATS_STEP_OFFSET = 10_000_000
"""Data steps used for statistics and checks are offset far beyond any training step."""


def background_tensor() -> torch.Tensor:
    return torch.tensor(BACKGROUND, dtype=torch.float32) / 127.5 - 1.0


def vae_loss(vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Reconstruction and KL terms for one batch of images in [-1, 1]."""
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    weight = foreground_weight(images, background_tensor(), FOREGROUND_BOOST)
    l1 = (weight * (recon - images).abs()).mean()
    mse = (weight * (recon - images).square()).mean()
    kl = posterior.kl().mean()
    return {"loss": l1 + MSE_WEIGHT * mse + KL_WEIGHT * kl, "l1": l1, "mse": mse, "kl": kl}


def train_vae(sizes: ModelSizes, options: StageOptions, work_dir: Path) -> AutoencoderKL:
    """Train (or resume) the VAE; returns the EMA model with latent factors set in its config."""
    torch.manual_seed(options.seed)
    vae = build_vae(sizes).train()
    ema = EMA(vae, options.ema_decay, warmup=True)
    optimizer = make_optimizer(vae, options)
    state_path = work_dir / "vae" / "state.pt"
    start = load_state(state_path, vae, ema, optimizer)
    log = LossLog("vae", options.steps, start, options.log_every)
    for step in range(start, options.steps):
        _, images = scene_batch(options.batch_size, options.seed, step, IMAGE_SIZE)
        terms = vae_loss(vae, images, step_generator(options.seed, step))
        finish_step(step, terms["loss"], vae, optimizer, ema, options, state_path)
        log.add(step, **{key: value.item() for key, value in terms.items()})
    seconds = log.close()
    model = ema.averaged_copy(vae)
    factors = latent_factors(model, options.seed)
    model.register_to_config(scaling_factor=factors["flux_scaling_factor"], shift_factor=factors["flux_shift_factor"])
    model.save_pretrained(work_dir / "vae" / "model")
    factors.update(reconstruction_check(model, options.seed), steps=options.steps,
                   wall_seconds_this_invocation=seconds)
    (work_dir / "vae" / "stats.json").write_text(json.dumps(factors, indent=2))
    return model


@torch.no_grad()
def encode_batches(vae: AutoencoderKL, num: int, seed: int, batch_size: int = 64) -> torch.Tensor:
    """Posterior means of ``num`` fresh train scenes, (num, 4, h, w)."""
    latents = []
    for index in range(0, num, batch_size):
        _, images = scene_batch(min(batch_size, num - index), seed, STATS_STEP_OFFSET + index, IMAGE_SIZE)
        latents.append(vae.encode(images).latent_dist.mode())
    return torch.cat(latents)


def latent_factors(vae: AutoencoderKL, seed: int) -> dict[str, float]:
    """FLUX: shift = mean, scale = 1/std; SD: scale = 1/rms (no shift), so both see unit-scale latents."""
    latents = encode_batches(vae.eval(), STATS_SAMPLES, seed)
    mean, std = latents.mean().item(), latents.std().item()
    rms = latents.square().mean().sqrt().item()
    return {"flux_scaling_factor": 1.0 / std, "flux_shift_factor": mean, "sd_scaling_factor": 1.0 / rms,
            "latent_mean": mean, "latent_std": std, "latent_rms": rms}


@torch.no_grad()
def reconstruction_check(vae: AutoencoderKL, seed: int, num: int = 128) -> dict[str, float]:
    """Mean absolute reconstruction error (in [0, 1] units) and, when the verifier exists, its accuracy
    on reconstructions of ground-truth renders of train prompts."""
    prompts, images = scene_batch(num, seed, STATS_STEP_OFFSET + 999_999, IMAGE_SIZE)
    recon = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
    result = {"recon_l1_01": ((recon - images).abs().mean() / 2).item()}
    try:
        from fastvideo.shapes.verifier import verify_batch
    except ImportError:
        return result
    _, correct_truth = verify_batch((images + 1) / 2, prompts)
    _, correct_recon = verify_batch((recon + 1) / 2, prompts)
    result["verifier_acc_ground_truth"] = correct_truth.float().mean().item()
    result["verifier_acc_reconstruction"] = correct_recon.float().mean().item()
    return result

"""Stage 3: an SD-1.x-style UNet (DDPM eps prediction) on the VAE latents, CLIP trained jointly.

Latents are z * sd_scaling_factor (the stock SD pipeline has no shift). Timesteps are uniform over
the 1000 training steps of the scaled_linear schedule; 10% of prompts are replaced by "" so that real
classifier-free guidance works at sampling (recommended scale ``SD_GUIDANCE``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline
from transformers import CLIPTokenizer

from fastvideo.shapes.pretrain.common import (
    LossLog,
    StageOptions,
    finish_step,
    load_state,
    make_optimizer,
    quiet_diffusers,
)
from fastvideo.shapes.pretrain.components import (
    IMAGE_SIZE,
    SD_GUIDANCE,
    ModelSizes,
    build_clip_text_encoder,
    build_ddim_scheduler,
    build_ddpm_scheduler,
    build_unet,
)
from fastvideo.shapes.pretrain.data import scene_batch, step_generator
from fastvideo.shapes.pretrain.text import sd_text
from fastvideo.training.optim import EMA

PROMPT_DROPOUT = 0.1


class SDBundle(torch.nn.Module):
    """Everything SD training updates: the UNet and its CLIP text encoder."""

    def __init__(self, sizes: ModelSizes, clip_tokenizer: CLIPTokenizer, latent_size: int):
        super().__init__()
        self.unet = build_unet(sizes, latent_size)
        self.clip = build_clip_text_encoder(sizes, clip_tokenizer)


def sd_vae(vae: AutoencoderKL, scaling_factor: float) -> AutoencoderKL:
    """A copy of the shared VAE whose config carries SD's factor and no shift."""
    copied = copy.deepcopy(vae)
    copied.register_to_config(scaling_factor=scaling_factor, shift_factor=None)
    return copied


def drop_prompts(prompts: list[str], generator: torch.Generator) -> list[str]:
    keep = torch.rand(len(prompts), generator=generator) >= PROMPT_DROPOUT
    return [text if kept else "" for text, kept in zip(prompts, keep.tolist())]


def sd_loss(bundle: SDBundle, tokenizer: CLIPTokenizer, x0: torch.Tensor, prompts: list[str],
            generator: torch.Generator, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Epsilon-prediction MSE at uniform DDPM timesteps."""
    timesteps = torch.randint(0, len(alphas_cumprod), (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy = alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise
    hidden = sd_text(bundle.clip, tokenizer, drop_prompts(prompts, generator))
    prediction = bundle.unet(noisy, timesteps, encoder_hidden_states=hidden, return_dict=False)[0]
    return (prediction - noise).square().mean()


def train_sd(sizes: ModelSizes, options: StageOptions, work_dir: Path, vae: AutoencoderKL,
             tokenizer: CLIPTokenizer) -> SDBundle:
    """Train (or resume) SD; ``vae`` must already carry SD's scaling factor (see ``sd_vae``)."""
    torch.manual_seed(options.seed)
    latent_size = IMAGE_SIZE // 2 ** (len(vae.config.block_out_channels) - 1)
    bundle = SDBundle(sizes, tokenizer, latent_size).train()
    ema = EMA(bundle, options.ema_decay, warmup=True)
    optimizer = make_optimizer(bundle, options)
    state_path = work_dir / "sd" / "state.pt"
    start = load_state(state_path, bundle, ema, optimizer)
    vae = vae.eval().requires_grad_(False)
    alphas_cumprod = build_ddpm_scheduler().alphas_cumprod.float()
    log = LossLog("sd", options.steps, start, options.log_every)
    for step in range(start, options.steps):
        prompts, images = scene_batch(options.batch_size, options.seed, step, IMAGE_SIZE)
        generator = step_generator(options.seed, step, purpose=2)
        with torch.no_grad():
            x0 = vae.encode(images).latent_dist.sample(generator) * vae.config.scaling_factor
        loss = sd_loss(bundle, tokenizer, x0, prompts, generator, alphas_cumprod)
        grad_norm = finish_step(step, loss, bundle, optimizer, ema, options, state_path,
                                snapshot=lambda done: save_sd_pipeline(
                                    ema.averaged_copy(bundle), vae, tokenizer,
                                    work_dir / "sd" / f"step_{done:06d}"))
        log.add(step, loss=loss.item(), grad_norm=grad_norm)
    log.close()
    return ema.averaged_copy(bundle)


def save_sd_pipeline(bundle: SDBundle, vae: AutoencoderKL, tokenizer: CLIPTokenizer, directory: Path,
                     dtype: torch.dtype = torch.float16) -> None:
    """A stock StableDiffusionPipeline directory (no safety checker, no feature extractor)."""
    with quiet_diffusers():
        pipe = StableDiffusionPipeline(
            vae=copy.deepcopy(vae).to(dtype), text_encoder=copy.deepcopy(bundle.clip).float(),
            tokenizer=tokenizer, unet=copy.deepcopy(bundle.unet).to(dtype), scheduler=build_ddim_scheduler(),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        pipe.save_pretrained(directory, safe_serialization=True)


def sd_sampling_kwargs() -> dict:
    return {"height": IMAGE_SIZE, "width": IMAGE_SIZE, "guidance_scale": SD_GUIDANCE}

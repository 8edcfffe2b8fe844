"""Stage 2: FLUX (rectified flow) on the VAE latents, text encoders trained jointly.

x_t = (1 - t) x0 + t eps, target v = eps - x0, timestep = t in [0, 1] (FLUX multiplies by 1000
inside), t drawn from a logit-normal pushed through the same shift (3) the sampler uses, so training
effort matches where a 16-25 step shifted Euler sampler spends its steps. The guidance embedding is
fed the constant ``FLUX_GUIDANCE``; there is no CFG branch.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FluxPipeline
from transformers import CLIPTokenizer, T5Tokenizer

from fastvideo.shapes.pretrain.common import (
    LossLog,
    StageOptions,
    finish_step,
    load_state,
    make_optimizer,
    quiet_diffusers,
)
from fastvideo.shapes.pretrain.components import (
    FLUX_GUIDANCE,
    FLUX_SHIFT,
    IMAGE_SIZE,
    T5_MAX_LENGTH,
    ModelSizes,
    build_clip_text_encoder,
    build_flow_scheduler,
    build_flux_transformer,
    build_t5_encoder,
    set_neighbour_heads,
)
from fastvideo.shapes.pretrain.data import SPLIT_SEED, scene_batch, step_generator
from fastvideo.shapes.pretrain.t5_sides import teach_sides
from fastvideo.shapes.pretrain.text import flux_text
from fastvideo.training.optim import EMA

logger = logging.getLogger("fastvideo.shapes.pretrain")


class FluxBundle(torch.nn.Module):
    """Everything FLUX training updates: transformer and both text encoders (one optimiser, one EMA)."""

    def __init__(self, sizes: ModelSizes, clip_tokenizer: CLIPTokenizer, t5_tokenizer: T5Tokenizer):
        super().__init__()
        self.transformer = build_flux_transformer(sizes)
        self.clip = build_clip_text_encoder(sizes, clip_tokenizer)
        self.t5 = build_t5_encoder(sizes, t5_tokenizer)


def sample_flow_time(batch: int, generator: torch.Generator, shift: float = FLUX_SHIFT) -> torch.Tensor:
    """Logit-normal(0, 1) times mapped through the SD3 shift s*u / (1 + (s - 1) u)."""
    u = torch.sigmoid(torch.randn(batch, generator=generator))
    return shift * u / (1.0 + (shift - 1.0) * u)


@torch.no_grad()
def flux_latents(vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Posterior sample normalised as FluxPipeline expects: (z - shift_factor) * scaling_factor."""
    z = vae.encode(images).latent_dist.sample(generator)
    return (z - vae.config.shift_factor) * vae.config.scaling_factor


def flux_loss(bundle: FluxBundle, tokenizers: tuple[CLIPTokenizer, T5Tokenizer], x0: torch.Tensor,
              prompts: list[str], generator: torch.Generator) -> torch.Tensor:
    """Flow-matching MSE in FLUX's packed token space."""
    batch, channels, height, width = x0.shape
    t = sample_flow_time(batch, generator)
    noise = torch.randn(x0.shape, generator=generator)
    xt = (1.0 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise
    pooled, sequence = flux_text(bundle.clip, tokenizers[0], bundle.t5, tokenizers[1], prompts)
    img_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, x0.device, x0.dtype)
    txt_ids = torch.zeros(sequence.shape[1], 3)
    prediction = bundle.transformer(
        hidden_states=FluxPipeline._pack_latents(xt, batch, channels, height, width),
        timestep=t, guidance=torch.full((batch,), FLUX_GUIDANCE), pooled_projections=pooled,
        encoder_hidden_states=sequence, txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
    )[0]
    target = FluxPipeline._pack_latents(noise - x0, batch, channels, height, width)
    return (prediction - target).square().mean()


def load_flux_bundle(bundle: FluxBundle, pipeline_dir: Path) -> FluxBundle:
    """Copy the transformer and text encoders of a saved ``FluxPipeline`` directory into ``bundle`` (fp32)."""
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    with quiet_diffusers():
        parts = {"transformer": FluxTransformer2DModel.from_pretrained(pipeline_dir, subfolder="transformer"),
                 "clip": CLIPTextModel.from_pretrained(pipeline_dir, subfolder="text_encoder"),
                 "t5": T5EncoderModel.from_pretrained(pipeline_dir, subfolder="text_encoder_2")}
    for name, module in parts.items():
        getattr(bundle, name).load_state_dict(module.float().state_dict(), strict=True)
    return bundle


def train_flux(sizes: ModelSizes, options: StageOptions, work_dir: Path, vae: AutoencoderKL,
               tokenizers: tuple[CLIPTokenizer, T5Tokenizer], init_from: Path | None = None,
               stage_name: str = "flux") -> FluxBundle:
    """Train (or resume) FLUX; writes pipeline snapshots to work_dir/<stage_name>/step_XXXXXX; returns the EMA.

    ``init_from``: start from the weights of a saved pipeline (continued pretraining with a fresh
    optimiser and schedule); a saved state in work_dir/<stage_name> still takes precedence (resume)."""
    torch.manual_seed(options.seed)
    bundle = FluxBundle(sizes, *tokenizers).train()
    if init_from is not None:
        load_flux_bundle(bundle, init_from)
    if options.extra.get("t5_neighbour_heads"):  # before load_state: a resumed run keeps what it learned
        set_neighbour_heads(bundle.t5, options.extra["t5_neighbour_heads"],
                            span=options.extra.get("t5_order_span", "neighbour"),
                            gain=options.extra.get("t5_order_gain", 1.0))
    state_path = work_dir / stage_name / "state.pt"
    if options.extra.get("t5_sides_steps") and not state_path.exists():  # a resumed run loads its T5 instead
        facts = teach_sides(bundle.t5, tokenizers[1], options.extra["t5_sides_steps"],
                            anchor=options.extra.get("t5_sides_anchor", 1.0), seed=options.seed, split_seed=SPLIT_SEED)
        logger.info("T5 taught the sides of position prompts: %s", facts)
    if options.extra.get("freeze_t5"):  # e.g. so that joint training cannot wash the word order out again
        bundle.t5.requires_grad_(False)
    ema = EMA(bundle, options.ema_decay, warmup=True)
    optimizer = make_optimizer(bundle, options)
    start = load_state(state_path, bundle, ema, optimizer)
    vae = vae.eval().requires_grad_(False)
    log = LossLog("flux", options.steps, start, options.log_every)
    for step in range(start, options.steps):
        prompts, images = scene_batch(options.batch_size, options.seed, step, IMAGE_SIZE,
                                      caption_noise=options.extra.get("caption_noise", 0.0),
                                      position_share=options.extra.get("position_share", 0.0))
        generator = step_generator(options.seed, step, purpose=1)
        loss = flux_loss(bundle, tokenizers, flux_latents(vae, images, generator), prompts, generator)
        grad_norm = finish_step(step, loss, bundle, optimizer, ema, options, state_path,
                                snapshot=lambda done: save_flux_pipeline(
                                    ema.averaged_copy(bundle), vae, tokenizers,
                                    work_dir / stage_name / f"step_{done:06d}"))
        log.add(step, loss=loss.item(), grad_norm=grad_norm)
    log.close()
    return ema.averaged_copy(bundle)


def save_flux_pipeline(bundle: FluxBundle, vae: AutoencoderKL, tokenizers: tuple[CLIPTokenizer, T5Tokenizer],
                       directory: Path, dtype: torch.dtype = torch.float16) -> None:
    """A stock FluxPipeline directory (safetensors); diffusers models stored in ``dtype`` (they load as
    fp32 by default), text encoders in fp32 (transformers keeps the stored dtype)."""
    with quiet_diffusers():
        pipe = FluxPipeline(
            scheduler=build_flow_scheduler(), vae=copy.deepcopy(vae).to(dtype),
            text_encoder=copy.deepcopy(bundle.clip).float(), tokenizer=tokenizers[0],
            text_encoder_2=copy.deepcopy(bundle.t5).float(), tokenizer_2=tokenizers[1],
            transformer=copy.deepcopy(bundle.transformer).to(dtype),
        )
        pipe.save_pretrained(directory, safe_serialization=True)


def flux_sampling_kwargs() -> dict:
    """The settings FluxPipeline needs to sample what training taught (64x64, T5 length 16)."""
    return {"height": IMAGE_SIZE, "width": IMAGE_SIZE, "guidance_scale": FLUX_GUIDANCE,
            "max_sequence_length": T5_MAX_LENGTH}

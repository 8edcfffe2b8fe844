"""Decoder-only fine-tuning of the shipped moving-shapes video VAE.

    python -m fastvideo.shapes.pretrain.video_decoder --pipelines assets/shapes_video/hunyuan \
        assets/shapes_video/skyreels_i2v --work_dir outputs/video_decoder --steps 2000 [--threads 1]
    python -m fastvideo.shapes.pretrain.video_decoder --pipelines ... --work_dir ... --ship

The encoder, its ``quant_conv`` and so the latent space every shipped transformer was trained on (and
the VAE's ``scaling_factor``) stay frozen; only the decoder and ``post_quant_conv`` learn, with the
video VAE loss of ``video.video_vae_loss`` (foreground-weighted L1 + MSE of the reconstruction of a
posterior sample, on fresh renders of train motion prompts each step; the KL term has no gradient here).
Every pipeline sharing that VAE therefore keeps working unchanged and decodes its latents more
crisply. Training resumes from ``<work_dir>/decoder/state.pt``; the EMA decoder is saved to
``<work_dir>/decoder/model`` with ``stats.json``: reconstruction L1 and the motion verifier's accuracy on
reconstructed ground-truth clips, before (``base``) and after.

``--ship`` writes that VAE (in the pipelines' own dtype) into every ``--pipelines`` directory's ``vae/``
and records the fine-tuning in its ``pretrain.json``; their ``eval.json`` is removed (it described the
old decoder; ``python -m fastvideo.shapes.pretrain.video --stage eval`` / ``video_i2v --stage eval``
re-measure it). Only pipelines whose VAE encoder equals the one trained against are accepted.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKLHunyuanVideo
from safetensors import safe_open

from fastvideo.shapes.pretrain.common import (
    LossLog,
    StageOptions,
    finish_step,
    load_state,
    make_optimizer,
    quiet_diffusers,
)
from fastvideo.shapes.pretrain.data import step_generator
from fastvideo.shapes.pretrain.video import STATS_SAMPLES, video_latent_stats, video_vae_loss
from fastvideo.shapes.pretrain.video_components import motion_batch
from fastvideo.training.optim import EMA

logger = logging.getLogger("fastvideo.shapes.pretrain")

FROZEN_PREFIXES = ("encoder.", "quant_conv.")
"""Parameters that define the latent space: never trained here."""


def load_vae(pipeline_dir: Path) -> AutoencoderKLHunyuanVideo:
    """The fp32 VAE of a saved video pipeline, encoder frozen, decoder trainable."""
    if not (pipeline_dir / "vae" / "config.json").exists():
        raise FileNotFoundError(f"{pipeline_dir} has no vae/: --pipelines takes saved video pipelines "
                                "(e.g. assets/shapes_video/hunyuan)")
    vae = AutoencoderKLHunyuanVideo.from_pretrained(pipeline_dir / "vae", dtype=torch.float32)
    for name, param in vae.named_parameters():
        param.requires_grad_(not name.startswith(FROZEN_PREFIXES))
    return vae


def encoder_state(vae: AutoencoderKLHunyuanVideo) -> dict[str, torch.Tensor]:
    """The frozen part of the VAE, in fp32 (to check that a pipeline shares the latent space)."""
    return {k: v.float() for k, v in vae.state_dict().items() if k.startswith(FROZEN_PREFIXES)}


def sampling_shape(pipeline_dir: Path) -> tuple[int, int]:
    """(frame size, number of frames) the pipeline was trained for, from its ``pretrain.json``."""
    sampling = json.loads((pipeline_dir / "pretrain.json").read_text())["sampling"]
    return int(sampling["height"]), int(sampling["num_frames"])


def reconstruction_stats(vae: AutoencoderKLHunyuanVideo, seed: int, size: int, num_frames: int, num: int) -> dict:
    """``video_latent_stats`` of the same ground-truth clips the VAE stage measured, without its
    scaling factor (the VAE keeps the one in its config: the encoder does not change)."""
    stats = video_latent_stats(vae, seed, size, num_frames, num)
    stats.pop("scaling_factor")
    return stats


def train_decoder(pipeline_dir: Path, options: StageOptions, work_dir: Path, stats_samples: int = STATS_SAMPLES
                  ) -> tuple[AutoencoderKLHunyuanVideo, dict]:
    """Fine-tune (or resume) the decoder of ``pipeline_dir``'s VAE; saves the EMA VAE and stats.json."""
    size, num_frames = sampling_shape(pipeline_dir)
    stage_dir = work_dir / "decoder"
    torch.manual_seed(options.seed)
    vae = load_vae(pipeline_dir).train()
    stats_path = stage_dir / "stats.json"
    base = json.loads(stats_path.read_text())["base"] if stats_path.exists() else \
        reconstruction_stats(vae.eval(), options.seed, size, num_frames, stats_samples)
    vae.train()
    ema, optimizer = EMA(vae, options.ema_decay), make_optimizer(vae, options)
    start = load_state(stage_dir / "state.pt", vae, ema, optimizer)
    log = LossLog("video_decoder", options.steps, start, options.log_every)
    for step in range(start, options.steps):
        _, videos = motion_batch(options.batch_size, options.seed, step, size, num_frames)
        terms = video_vae_loss(vae, videos, step_generator(options.seed, step))
        terms.pop("kl")
        finish_step(step, terms["loss"], vae, optimizer, ema, options, stage_dir / "state.pt")
        log.add(step, **{key: value.item() for key, value in terms.items()})
    seconds = log.close()
    model = ema.averaged_copy(vae)
    after = reconstruction_stats(model, options.seed, size, num_frames, stats_samples)
    model.save_pretrained(stage_dir / "model")
    stats = {"base": base, "finetuned": after, "steps": options.steps, "lr": options.lr,
             "batch_size": options.batch_size, "seed": options.seed, "source": str(pipeline_dir),
             "wall_seconds_this_invocation": seconds}
    stats_path.write_text(json.dumps(stats, indent=2))
    logger.info("verifier accuracy on reconstructions: %.3f -> %.3f (L1 %.4f -> %.4f)",
                base["verifier_acc_reconstruction"], after["verifier_acc_reconstruction"],
                base["recon_l1_01"], after["recon_l1_01"])
    return model, stats


def stored_dtype(model_dir: Path) -> torch.dtype:
    """The dtype the weights of a saved diffusers model are stored in (``from_pretrained`` casts to fp32)."""
    with safe_open(model_dir / "diffusion_pytorch_model.safetensors", framework="pt") as weights:
        return weights.get_tensor(next(iter(weights.keys()))).dtype


def ship(work_dir: Path, pipelines: list[Path]) -> None:
    """Write the fine-tuned VAE into every pipeline whose encoder it shares (checked first, for all).
    ``pretrain.json`` gets its settings and statistics; those of an earlier shipped fine-tune move to
    ``vae_decoder_finetune_history``."""
    stage_dir = work_dir / "decoder"
    if not (stage_dir / "model").exists():
        raise FileNotFoundError(f"no fine-tuned decoder in {stage_dir}: train it first (without --ship)")
    tuned = AutoencoderKLHunyuanVideo.from_pretrained(stage_dir / "model", dtype=torch.float32)
    stats = json.loads((stage_dir / "stats.json").read_text())
    frozen = encoder_state(tuned)
    for directory in pipelines:
        theirs = encoder_state(load_vae(directory))
        if theirs.keys() != frozen.keys() or any(not torch.equal(theirs[k], frozen[k]) for k in frozen):
            raise ValueError(f"{directory}'s VAE encoder differs from the one the decoder was tuned against "
                             f"({stats['source']}): its latent space is another one")
    for directory in pipelines:
        with quiet_diffusers():
            tuned.to(stored_dtype(directory / "vae")).save_pretrained(directory / "vae", safe_serialization=True)
        info_path = directory / "pretrain.json"
        info = json.loads(info_path.read_text())
        info["vae_stats"] = {**info.get("vae_stats", {}), **stats["finetuned"]}
        if "vae_decoder_finetune" in info:  # an earlier fine-tune: this one started from it
            info.setdefault("vae_decoder_finetune_history", []).append(info["vae_decoder_finetune"])
        info["vae_decoder_finetune"] = {key: stats[key] for key in ("steps", "lr", "batch_size", "seed", "base")}
        info_path.write_text(json.dumps(info, indent=2))
        (directory / "eval.json").unlink(missing_ok=True)
        logger.info("shipped the fine-tuned decoder into %s", directory)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", nargs="+", required=True,
                        help="video pipeline directories sharing one VAE; the first one's is trained")
    parser.add_argument("--work_dir", default="outputs/video_decoder", help="state, model and stats.json")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--final_lr_fraction", type=float, default=0.1)
    parser.add_argument("--checkpoint_every", type=int, default=100)
    parser.add_argument("--stats_samples", type=int, default=STATS_SAMPLES,
                        help="ground-truth clips the before/after reconstruction accuracy is measured on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--ship", action="store_true", help="write the trained VAE into --pipelines; no training")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    pipelines, work_dir = [Path(p) for p in args.pipelines], Path(args.work_dir)
    if args.ship:
        ship(work_dir, pipelines)
        return
    options = StageOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=20,
                           final_lr_fraction=args.final_lr_fraction, ema_decay=0.99,
                           checkpoint_every=min(args.checkpoint_every, args.steps), seed=args.seed,
                           log_every=min(50, args.steps))
    train_decoder(pipelines[0], options, work_dir, args.stats_samples)


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)

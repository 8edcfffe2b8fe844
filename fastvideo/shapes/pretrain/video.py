"""Pretraining of a tiny HunyuanVideo-style text-to-video pipeline on the moving-shapes world.

    python -m fastvideo.shapes.pretrain.video --stage {vae,hunyuan,all,eval} --output_dir assets/shapes_video \
        [--size 32] [--num_frames 9] [--steps N] [--smoke]

Stages (components in ``video_components.py``; data: fresh renders of TRAIN motion prompts each step):

- ``vae``: ``AutoencoderKLHunyuanVideo`` with loss ``(1 + 4 fg) * (|x' - x| + (x' - x)^2)`` averaged,
  plus 1e-6 KL (``fg``: pixels differing from the background; shapes cover a few % of a frame). Its
  scaling factor is then 1 / rms of the posterior means of fresh clips (the pipeline has no shift:
  latents = z * scaling_factor). Saved to ``<work_dir>/vae``.
- ``hunyuan``: rectified flow on those latents, ``x_t = (1 - t) x0 + t eps``, target ``eps - x0``,
  timestep ``1000 t`` with t logit-normal pushed through a shift (``--train_shift``; 5, the shipped
  scheduler's, by default: then under 1% of the steps fall below t = 0.3, where a shape's kind is drawn); the
  Llama and CLIP text encoders are trained jointly, the guidance embedding sees the constant 6.0.
  Writes ``<output_dir>`` (a stock ``HunyuanVideoPipeline`` directory + ``pretrain.json`` with the
  sampling settings) and snapshots ``<work_dir>/hunyuan/step_XXXXXX``.
- ``eval``: held-out accuracy of ``<output_dir>`` with ``shapes.motion_verifier`` (``eval.json``).

Training resumes from ``<work_dir>/<stage>/state.pt`` unless ``--fresh``. ``--text_dropout p`` (0.1)
replaces prompts by "" with probability p, so the pipeline can sample with real CFG against the empty
prompt (``pretrain.json``'s ``true_cfg_scale``, ``--cfg_scale``); ``--patch_size 1`` gives 4x the tokens
of the default 2 (64 per latent frame at 32 px); ``--init_from DIR`` warm-starts the flow stage from a
saved pipeline, repatching its transformer (``video_components.repatch_transformer``). The shipped
model: 5000 steps at patch 2 without dropout, then 2500 at patch 1 with dropout
(``assets/shapes_video/MODEL_CARD.md``).

Cost (one CPU thread, 32 px, 9 frames): ~1.25 s per VAE step (batch 8), ~0.85 s per flow step
(batch 16, patch 2; patch 1 on 2 threads: 0.83 s); at 64 px ~5 s and ~2.1 s. A 600-step VAE check reached reconstruction L1 0.027 but
only 7% verifier accuracy on reconstructions (still falling), hence 4000 VAE steps by default;
``stats.json``'s ``verifier_acc_reconstruction`` should approach 1 before the flow stage is worth
running. ``--device cuda`` trains on a GPU (data is still rendered on the CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoPipeline

from fastvideo.shapes.grammar import BACKGROUND
from fastvideo.shapes.heldout import EVAL_SEED, proportion
from fastvideo.shapes.motion import MOTION_SKILLS, motion_vocabulary, sample_motion_prompts
from fastvideo.shapes.motion_render import check_num_frames, check_video_size
from fastvideo.shapes.motion_verifier import verify_video
from fastvideo.shapes.pretrain.common import (
    LossLog,
    StageOptions,
    finish_step,
    load_state,
    make_optimizer,
    quiet_diffusers,
    stage_tokenizers,
)
from fastvideo.shapes.pretrain.components import build_clip_tokenizer
from fastvideo.shapes.pretrain.data import step_generator, step_rng
from fastvideo.shapes.pretrain.train_flux import sample_flow_time
from fastvideo.shapes.pretrain.video_components import (
    LLAMA_MAX_LENGTH,
    TEXT_DROPOUT,
    VIDEO_FULL,
    VIDEO_GUIDANCE,
    VIDEO_SHIFT,
    VIDEO_SMOKE,
    VideoSizes,
    build_llama_encoder,
    build_llama_tokenizer,
    build_video_clip_encoder,
    build_video_scheduler,
    build_video_transformer,
    build_video_vae,
    clip_pooled,
    drop_prompts,
    llama_text,
    motion_batch,
    repatch_transformer,
)
from fastvideo.training.optim import EMA

logger = logging.getLogger("fastvideo.shapes.pretrain")

KL_WEIGHT = 1e-6
FOREGROUND_BOOST = 4.0
STATS_SAMPLES = 256
STATS_STEP_OFFSET = 10_000_000
DEFAULTS: dict[str, StageOptions] = {
    "vae": StageOptions(steps=4000, batch_size=8, lr=8e-4, warmup=50, ema_decay=0.99, checkpoint_every=250),
    "hunyuan": StageOptions(steps=4000, batch_size=16, lr=5e-4, warmup=100, ema_decay=0.995, checkpoint_every=250),
}


class VideoBundle(torch.nn.Module):
    """Everything the flow stage updates: the transformer and both text encoders."""

    def __init__(self, sizes: VideoSizes, tokenizers: tuple, patch_size: int = 2):
        super().__init__()
        self.transformer = build_video_transformer(sizes, patch_size)
        self.llama = build_llama_encoder(sizes, tokenizers[0])
        self.clip = build_video_clip_encoder(sizes, tokenizers[1])

    @torch.no_grad()
    def warm_start(self, pipeline_dir: Path) -> None:
        """Copy the transformer and text encoders of a saved pipeline (same sizes; the transformer is
        repatched to this bundle's patch size with ``repatch_transformer``)."""
        pipe = HunyuanVideoPipeline.from_pretrained(pipeline_dir, torch_dtype=torch.float32)
        patch = int(self.transformer.config["patch_size"])
        self.transformer.load_state_dict(repatch_transformer(pipe.transformer.float(), patch).state_dict())
        self.llama.load_state_dict(pipe.text_encoder.state_dict())
        self.clip.load_state_dict(pipe.text_encoder_2.state_dict())
        logger.info("warm start from %s (patch %d -> %d)", pipeline_dir, pipe.transformer.config["patch_size"], patch)


def video_tokenizers() -> tuple:
    """(Llama-style WordPiece tokenizer, CLIP BPE tokenizer), both from the motion grammar's words."""
    words = motion_vocabulary()
    return build_llama_tokenizer(words), build_clip_tokenizer(words)


def video_vae_loss(vae: AutoencoderKLHunyuanVideo, videos: torch.Tensor, generator: torch.Generator) -> dict:
    """Foreground-weighted L1 + MSE of a posterior sample's reconstruction, plus a small KL; videos (B,3,T,H,W)."""
    posterior = vae.encode(videos).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    background = torch.tensor(BACKGROUND, dtype=torch.float32, device=videos.device).view(1, 3, 1, 1, 1) / 127.5 - 1.0
    weight = 1.0 + FOREGROUND_BOOST * ((videos - background).abs().amax(1, keepdim=True) > 0.02).float()
    l1 = (weight * (recon - videos).abs()).mean()
    mse = (weight * (recon - videos).square()).mean()
    kl = posterior.kl().mean()
    return {"loss": l1 + mse + KL_WEIGHT * kl, "l1": l1, "mse": mse, "kl": kl}


def train_video_vae(sizes: VideoSizes, options: StageOptions, work_dir: Path, size: int, num_frames: int,
                    device: str = "cpu", stats_samples: int = STATS_SAMPLES) -> AutoencoderKLHunyuanVideo:
    """Train (or resume) the video VAE; saves the EMA model with its scaling factor and stats.json."""
    torch.manual_seed(options.seed)
    vae = build_video_vae(sizes).to(device).train()
    ema, optimizer = EMA(vae, options.ema_decay, warmup=True), make_optimizer(vae, options)
    state_path = work_dir / "vae" / "state.pt"
    start = load_state(state_path, vae, ema, optimizer)
    log = LossLog("video_vae", options.steps, start, options.log_every)
    for step in range(start, options.steps):
        _, videos = motion_batch(options.batch_size, options.seed, step, size, num_frames)
        terms = video_vae_loss(vae, videos.to(device), step_generator(options.seed, step))
        finish_step(step, terms["loss"], vae, optimizer, ema, options, state_path)
        log.add(step, **{key: value.item() for key, value in terms.items()})
    seconds = log.close()
    model = ema.averaged_copy(vae)
    stats = video_latent_stats(model, options.seed, size, num_frames, stats_samples)
    model.register_to_config(scaling_factor=stats["scaling_factor"])
    model.save_pretrained(work_dir / "vae" / "model")
    stats.update(steps=options.steps, size=size, num_frames=num_frames, wall_seconds_this_invocation=seconds)
    (work_dir / "vae" / "stats.json").write_text(json.dumps(stats, indent=2))
    return model


@torch.no_grad()
def video_latent_stats(vae: AutoencoderKLHunyuanVideo, seed: int, size: int, num_frames: int,
                       num: int = STATS_SAMPLES, batch_size: int = 16) -> dict[str, float]:
    """scaling_factor = 1 / rms of posterior means of fresh clips; reconstruction L1 and verifier accuracy."""
    latents, l1, correct = [], [], []
    for index in range(0, num, batch_size):
        prompts, videos = motion_batch(min(batch_size, num - index), seed, STATS_STEP_OFFSET + index, size, num_frames)
        videos = videos.to(vae.device)
        mean = vae.encode(videos).latent_dist.mode()
        recon = vae.decode(mean).sample.clamp(-1, 1)
        latents.append(mean)
        l1.append(((recon - videos).abs().mean() / 2).item())
        clips = ((recon + 1) / 2).permute(0, 2, 1, 3, 4).cpu()  # (B, T, 3, H, W)
        correct += [float(verify_video(clip, text).correct) for clip, text in zip(clips, prompts)]
    latents = torch.cat(latents).float()
    rms = latents.square().mean().sqrt().item()
    return {"scaling_factor": 1.0 / rms, "latent_mean": latents.mean().item(), "latent_rms": rms,
            "recon_l1_01": float(np.mean(l1)), "verifier_acc_reconstruction": float(np.mean(correct))}


def flow_loss(bundle: VideoBundle, tokenizers: tuple, x0: torch.Tensor, prompts: list[str],
              generator: torch.Generator, condition: torch.Tensor | None = None,
              guidance: float = VIDEO_GUIDANCE, shift: float = VIDEO_SHIFT) -> torch.Tensor:
    """Rectified-flow MSE ``|v(x_t, 1000 t) - (eps - x0)|^2`` on latents (B, C, T', h, w).

    t is logit-normal pushed through ``shift`` (``s u / (1 + (s - 1) u)``): 5 (the shipped scheduler's)
    puts the median t at 0.83 and under 1% of the steps below t = 0.3, where a shape's kind is drawn.

    ``condition`` (B, C', T', h, w), if given, is concatenated after x_t on the channel axis (the
    image-to-video input, ``video_i2v``); ``guidance`` is the embedded guidance value (x 1000).
    """
    batch, device = x0.shape[0], x0.device
    t = sample_flow_time(batch, generator, shift).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    xt = (1.0 - t.view(-1, 1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1, 1) * noise
    sequence, mask = llama_text(bundle.llama, tokenizers[0], prompts)
    prediction = bundle.transformer(
        hidden_states=xt if condition is None else torch.cat([xt, condition], dim=1), timestep=t * 1000.0,
        encoder_hidden_states=sequence, encoder_attention_mask=mask,
        pooled_projections=clip_pooled(bundle.clip, tokenizers[1], prompts),
        guidance=torch.full((batch,), guidance * 1000.0, device=device), return_dict=False,
    )[0]
    return (prediction - (noise - x0)).square().mean()


def train_hunyuan(sizes: VideoSizes, options: StageOptions, work_dir: Path, vae: AutoencoderKLHunyuanVideo,
                  tokenizers: tuple, size: int, num_frames: int, device: str = "cpu") -> VideoBundle:
    """Train (or resume) the flow stage; writes pipeline snapshots; returns the EMA bundle.

    ``options.extra``: ``patch_size`` (2), ``text_dropout`` (0: no CFG branch) and ``init_from`` (a
    pipeline directory to warm-start from when there is no saved state).
    """
    torch.manual_seed(options.seed)
    bundle = VideoBundle(sizes, tokenizers, options.extra.get("patch_size", 2))
    state_path = work_dir / "hunyuan" / "state.pt"
    if options.extra.get("init_from") and not state_path.exists():
        bundle.warm_start(Path(options.extra["init_from"]))
    bundle = bundle.to(device).train()
    ema, optimizer = EMA(bundle, options.ema_decay, warmup=True), make_optimizer(bundle, options)
    start = load_state(state_path, bundle, ema, optimizer)
    text_dropout = float(options.extra.get("text_dropout", 0.0))
    shift = float(options.extra.get("train_shift", VIDEO_SHIFT))
    vae = vae.to(device).eval().requires_grad_(False)
    log = LossLog("hunyuan", options.steps, start, options.log_every)
    for step in range(start, options.steps):
        prompts, videos = motion_batch(options.batch_size, options.seed, step, size, num_frames)
        generator = step_generator(options.seed, step, purpose=3)
        with torch.no_grad():
            x0 = vae.encode(videos.to(device)).latent_dist.sample(generator) * vae.config.scaling_factor
        texts = drop_prompts(prompts, step_rng(options.seed, step, purpose=4), text_dropout)
        loss = flow_loss(bundle, tokenizers, x0, texts, generator, shift=shift)
        grad_norm = finish_step(step, loss, bundle, optimizer, ema, options, state_path,
                                snapshot=lambda done: save_video_pipeline(
                                    ema.averaged_copy(bundle), vae, tokenizers,
                                    work_dir / "hunyuan" / f"step_{done:06d}",
                                    scheduler_shift=options.extra.get("sample_shift", VIDEO_SHIFT)))
        log.add(step, loss=loss.item(), grad_norm=grad_norm)
    log.close()
    return ema.averaged_copy(bundle)


def save_video_pipeline(bundle: VideoBundle, vae: AutoencoderKLHunyuanVideo, tokenizers: tuple, directory: Path,
                        dtype: torch.dtype = torch.float16, pipeline_class: type = HunyuanVideoPipeline,
                        scheduler_shift: float = VIDEO_SHIFT) -> None:
    """A stock ``pipeline_class`` (HunyuanVideoPipeline layout) directory: diffusers models in ``dtype``,
    text encoders in fp32, the Euler scheduler with ``scheduler_shift``."""
    with quiet_diffusers():
        pipe = pipeline_class(
            text_encoder=copy.deepcopy(bundle.llama).float(), tokenizer=tokenizers[0],
            transformer=copy.deepcopy(bundle.transformer).to(dtype), vae=copy.deepcopy(vae).to(dtype),
            scheduler=build_video_scheduler(scheduler_shift), text_encoder_2=copy.deepcopy(bundle.clip).float(),
            tokenizer_2=tokenizers[1],
        )
        pipe.save_pretrained(directory, safe_serialization=True)


def video_sampling_kwargs(size: int, num_frames: int, cfg_scale: float = 1.0) -> dict:
    """Settings the pipeline was trained for (max_sequence_length 16 is equivalent to the default 256);
    ``cfg_scale`` > 1 adds the stock pipeline's real CFG against the empty prompt (needs text dropout)."""
    kwargs = {"height": size, "width": size, "num_frames": num_frames, "guidance_scale": VIDEO_GUIDANCE,
              "max_sequence_length": LLAMA_MAX_LENGTH}
    if cfg_scale > 1.0:
        kwargs.update(true_cfg_scale=cfg_scale, negative_prompt="")
    return kwargs


@torch.no_grad()
def evaluate_video(model_dir: Path, num: int = 200, steps: int = 16, seed: int = EVAL_SEED,
                   batch_size: int = 25) -> dict:
    """Held-out accuracy: ``num`` skill-balanced held-out prompts, video i sampled with seed ``seed + i``."""
    started = time.time()
    pipe = HunyuanVideoPipeline.from_pretrained(model_dir).to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    kwargs = json.loads((model_dir / "pretrain.json").read_text())["sampling"]
    prompts = sample_motion_prompts(num, np.random.default_rng(seed), split="heldout")
    records = []
    for start in range(0, num, batch_size):
        batch = prompts[start:start + batch_size]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(batch))]
        frames = pipe([p.text for p in batch], num_inference_steps=steps, generator=generators,
                      output_type="pt", **kwargs).frames  # (B, T, 3, H, W) in [0, 1]
        for clip, prompt in zip(frames.float().cpu(), batch):
            verdict = verify_video(clip, prompt.text)
            records.append({"skill": prompt.skill, "correct": float(verdict.correct), "score": verdict.score})
    result = {"overall": proportion([r["correct"] for r in records])}
    result["overall"]["mean_score"] = float(np.mean([r["score"] for r in records]))
    for skill in MOTION_SKILLS:
        result[skill] = proportion([r["correct"] for r in records if r["skill"] == skill])
    result["settings"] = {"num_prompts": num, "num_inference_steps": steps, "seed": seed, **kwargs}
    result["seconds"] = time.time() - started
    return result


def stage_options(stage: str, args: argparse.Namespace, defaults: StageOptions | None = None) -> StageOptions:
    """``defaults`` (else ``DEFAULTS[stage]``) with the CLI's overrides (smoke: 2 steps of batch 2)."""
    options = StageOptions(**{**(defaults or DEFAULTS[stage]).__dict__})
    if args.smoke:
        options.steps, options.batch_size, options.warmup, options.log_every = 2, 2, 1, 1
    for name in ("steps", "batch_size", "lr"):
        if getattr(args, name) is not None:
            setattr(options, name, getattr(args, name))
    options.checkpoint_every = args.checkpoint_every or min(options.checkpoint_every, options.steps)
    options.seed = args.seed
    options.extra = {key: getattr(args, key) for key in ("patch_size", "text_dropout", "init_from", "train_shift",
                                                         "sample_shift")
                     if getattr(args, key, None) is not None}
    return options


def run_stage(stage: str, args: argparse.Namespace) -> None:
    work_dir, output_dir = Path(args.work_dir), Path(args.output_dir)
    size, num_frames = check_video_size(args.size), check_num_frames(args.num_frames)
    if stage == "eval":
        result = evaluate_video(output_dir, args.eval_num, args.eval_steps)
        print(json.dumps(result, indent=2))
        (output_dir / "eval.json").write_text(json.dumps(result, indent=2))
        return
    options, sizes = stage_options(stage, args), (VIDEO_SMOKE if args.smoke else VIDEO_FULL)
    if args.fresh and (work_dir / stage).exists():
        shutil.rmtree(work_dir / stage)
    if stage == "vae":
        train_video_vae(sizes, options, work_dir, size, num_frames, args.device, 8 if args.smoke else STATS_SAMPLES)
        return
    if not (work_dir / "vae" / "model").exists():
        raise FileNotFoundError(f"no trained video VAE in {work_dir / 'vae'}: run --stage vae first")
    vae = AutoencoderKLHunyuanVideo.from_pretrained(work_dir / "vae" / "model").float()
    init_from = Path(options.extra["init_from"]) if options.extra.get("init_from") else None
    tokenizers = stage_tokenizers(work_dir / stage, video_tokenizers, init_from)
    bundle = train_hunyuan(sizes, options, work_dir, vae, tokenizers, size, num_frames, args.device)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    save_video_pipeline(bundle, vae, tokenizers, output_dir, scheduler_shift=args.sample_shift)
    cfg_scale = args.cfg_scale if args.text_dropout > 0 else 1.0
    info = {"sampling": video_sampling_kwargs(size, num_frames, cfg_scale), "seed": args.seed,
            "steps": options.steps, "batch_size": options.batch_size, "lr": options.lr, **options.extra,
            "vae_stats": json.loads((work_dir / "vae" / "stats.json").read_text())}
    (output_dir / "pretrain.json").write_text(json.dumps(info, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["vae", "hunyuan", "all", "eval"], default="all")
    parser.add_argument("--output_dir", default="assets/shapes_video/hunyuan")
    parser.add_argument("--work_dir", default="outputs/pretrain_shapes_video", help="states and snapshots")
    parser.add_argument("--size", type=int, default=32, help="frame height = width (32 or 64)")
    parser.add_argument("--num_frames", type=int, default=9, help="4k+1")
    parser.add_argument("--steps", type=int, default=None, help="override every selected stage's steps")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--checkpoint_every", type=int, default=None)
    parser.add_argument("--patch_size", type=int, default=2, help="transformer spatial patch (1: 4x the tokens)")
    parser.add_argument("--text_dropout", type=float, default=TEXT_DROPOUT,
                        help="probability of training on the empty prompt (the CFG branch); 0 disables CFG")
    parser.add_argument("--cfg_scale", type=float, default=4.0, help="real CFG scale written to pretrain.json")
    parser.add_argument("--init_from", default=None, help="warm-start from this pipeline directory")
    parser.add_argument("--train_shift", type=float, default=VIDEO_SHIFT,
                        help="shift of the training time distribution (lower: more steps at low noise)")
    parser.add_argument("--sample_shift", type=float, default=VIDEO_SHIFT, help="shift of the saved scheduler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="training device, e.g. cuda (data is rendered on the CPU)")
    parser.add_argument("--eval_num", type=int, default=200)
    parser.add_argument("--eval_steps", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="tiny models, 2 steps: a plumbing check")
    parser.add_argument("--fresh", action="store_true", help="ignore saved training state")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    for stage in (["vae", "hunyuan"] if args.stage == "all" else [args.stage]):
        run_stage(stage, args)


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)

"""Image-to-video variant of the tiny shapes HunyuanVideo, derived as SkyReels-V1 derived its I2V model.

    python -m fastvideo.shapes.pretrain.video_i2v --t2v_dir assets/shapes_video/hunyuan \\
        --output_dir assets/shapes_video/skyreels_i2v --work_dir outputs/pretrain_shapes_video_i2v \\
        [--stage train|eval|all] [--steps N] [--smoke] [--threads 1]

- Init: the T2V transformer's config with ``in_channels`` doubled, every weight copied, and the new
  input channels of the patch embedding (``x_embedder.proj``) zero, so at step 0 the I2V transformer
  computes exactly the T2V output whatever the image latents (``expand_input_channels``).
- Conditioning, as ``fastvideo.models.skyreels_i2v`` consumes it: the first frame of the clip ([-1, 1])
  -> VAE encode of that one frame -> posterior mode x scaling factor, zero-padded over the latent frames
  and concatenated after the noisy latents on the channel axis; embedded guidance ``EMBEDDED_GUIDANCE``
  (1.0). Sampling uses real CFG against the empty prompt (scale 5), so the prompt is replaced by ""
  with probability ``TEXT_DROPOUT`` (0.1); the image conditioning is always kept.
- Training: ``video.flow_loss`` (rectified flow, logit-normal time with shift ``--train_shift``, 5 by
  default, target eps - x0) on
  posterior samples of fresh ``motion_batch`` renders of TRAIN prompts, at the T2V dir's size and frame
  count (its ``pretrain.json``). VAE and text encoders are frozen; only the transformer trains. State
  ``<work_dir>/i2v/state.pt`` (resumed unless ``--fresh``), snapshots ``<work_dir>/i2v/step_XXXXXX``.
- Output: a stock ``HunyuanSkyreelsImageToVideoPipeline`` directory (the T2V components + the new
  transformer) with ``pretrain.json`` (``sampling``: kwargs of the stock pipeline's ``__call__``;
  ``adapter``: settings of our ``skyreels_i2v`` adapter).
- ``eval``: held-out accuracy through our adapter (``evaluate_i2v``): video.py's held-out prompts and
  seed, first frame = frame 0 of a ground-truth render of each prompt, Euler ODE sampling with CFG;
  ``eval.json`` also carries the T2V model's accuracy when its ``eval.json`` has the same settings
  (or ``--eval_t2v`` computes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    HunyuanSkyreelsImageToVideoPipeline,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)

from fastvideo.models.skyreels_i2v import EMBEDDED_GUIDANCE
from fastvideo.shapes.heldout import EVAL_SEED, proportion
from fastvideo.shapes.motion import MOTION_SKILLS, sample_motion_prompts
from fastvideo.shapes.motion_frames import indexed_first_frames
from fastvideo.shapes.motion_verifier import verify_video
from fastvideo.shapes.pretrain.common import (
    LossLog,
    StageOptions,
    finish_step,
    load_state,
    make_optimizer,
)
from fastvideo.shapes.pretrain.data import step_generator, step_rng
from fastvideo.shapes.pretrain.video import evaluate_video, flow_loss, save_video_pipeline, stage_options
from fastvideo.shapes.pretrain.video_components import (
    LLAMA_MAX_LENGTH,
    TEXT_DROPOUT,
    VIDEO_SHIFT,
    drop_prompts,
    motion_batch,
)
from fastvideo.training.optim import EMA

logger = logging.getLogger("fastvideo.shapes.pretrain")

CFG_SCALE = 5.0
"""Real classifier-free guidance scale against the empty prompt at sampling (SkyReels-V1: 5)."""
DEFAULTS = StageOptions(steps=600, batch_size=16, lr=2e-4, warmup=50, ema_decay=0.99, checkpoint_every=100)


class I2VBundle(torch.nn.Module):
    """The I2V transformer (trained) and the T2V text encoders (frozen), with ``VideoBundle``'s names."""

    def __init__(self, transformer: HunyuanVideoTransformer3DModel, llama: torch.nn.Module, clip: torch.nn.Module):
        super().__init__()
        self.transformer = transformer
        self.llama = llama.eval().requires_grad_(False)
        self.clip = clip.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> I2VBundle:
        """Train mode for the transformer only; the frozen text encoders stay in eval mode."""
        self.transformer.train(mode)
        self.training = mode
        return self


def expand_input_channels(t2v: HunyuanVideoTransformer3DModel) -> HunyuanVideoTransformer3DModel:
    """Same config with ``in_channels`` doubled, all weights copied, the new patch-embedding inputs zero.

    The output is the T2V output for any content of the extra (image) channels, until they are trained.
    """
    config = dict(t2v.config)
    channels = int(config["in_channels"])
    config.update(in_channels=2 * channels, out_channels=config.get("out_channels") or channels)
    i2v = HunyuanVideoTransformer3DModel.from_config(config)
    state = t2v.state_dict()
    weight = state["x_embedder.proj.weight"]  # (inner_dim, C, p_t, p, p)
    state["x_embedder.proj.weight"] = torch.cat([weight, torch.zeros_like(weight)], dim=1)
    i2v.load_state_dict(state, strict=True)
    return i2v.to(weight.dtype)


@torch.no_grad()
def first_frame_latents(vae: AutoencoderKLHunyuanVideo, videos: torch.Tensor) -> torch.Tensor:
    """Clips (B, 3, T, H, W) in [-1, 1] -> their first frame's latents (B, C, 1, h, w): posterior mode x scaling."""
    return vae.encode(videos[:, :, :1]).latent_dist.mode() * vae.config.scaling_factor


def pad_image_latents(image_latents: torch.Tensor, num_latent_frames: int) -> torch.Tensor:
    """(B, C, 1, h, w) -> (B, C, num_latent_frames, h, w), zeros after the first frame (as the pipeline)."""
    pad = image_latents.new_zeros(*image_latents.shape[:2], num_latent_frames - 1, *image_latents.shape[3:])
    return torch.cat([image_latents, pad], dim=2)


def load_t2v(t2v_dir: Path) -> tuple[HunyuanVideoPipeline, dict]:
    """The T2V pipeline (fp32) and its ``pretrain.json``."""
    pipe = HunyuanVideoPipeline.from_pretrained(t2v_dir, dtype=torch.float32)
    return pipe, json.loads((t2v_dir / "pretrain.json").read_text())


def train_i2v(t2v: HunyuanVideoPipeline, options: StageOptions, work_dir: Path, size: int, num_frames: int,
              device: str = "cpu", text_dropout: float = TEXT_DROPOUT, shift: float = VIDEO_SHIFT) -> I2VBundle:
    """Train (or resume) the I2V transformer from the T2V one; writes snapshots; returns the EMA bundle.
    ``shift``: of the training time distribution (``video.flow_loss``)."""
    torch.manual_seed(options.seed)
    bundle = I2VBundle(expand_input_channels(t2v.transformer.float()), t2v.text_encoder, t2v.text_encoder_2)
    bundle = bundle.to(device).train()
    ema, optimizer = EMA(bundle, options.ema_decay, warmup=True), make_optimizer(bundle, options)
    state_path = work_dir / "i2v" / "state.pt"
    start = load_state(state_path, bundle, ema, optimizer)
    vae = t2v.vae.to(device).float().eval().requires_grad_(False)
    tokenizers = (t2v.tokenizer, t2v.tokenizer_2)
    log = LossLog("i2v", options.steps, start, options.log_every)
    for step in range(start, options.steps):
        prompts, videos = motion_batch(options.batch_size, options.seed, step, size, num_frames)
        videos, generator = videos.to(device), step_generator(options.seed, step, purpose=3)
        with torch.no_grad():
            x0 = vae.encode(videos).latent_dist.sample(generator) * vae.config.scaling_factor
            condition = pad_image_latents(first_frame_latents(vae, videos), x0.shape[2])
        texts = drop_prompts(prompts, step_rng(options.seed, step, purpose=4), text_dropout)
        loss = flow_loss(bundle, tokenizers, x0, texts, generator, condition=condition, guidance=EMBEDDED_GUIDANCE,
                         shift=shift)
        grad_norm = finish_step(step, loss, bundle, optimizer, ema, options, state_path,
                                snapshot=lambda done: save_i2v_pipeline(
                                    ema.averaged_copy(bundle), vae, tokenizers,
                                    work_dir / "i2v" / f"step_{done:06d}"))
        log.add(step, loss=loss.item(), grad_norm=grad_norm)
    log.close()
    return ema.averaged_copy(bundle)


def save_i2v_pipeline(bundle: I2VBundle, vae: AutoencoderKLHunyuanVideo, tokenizers: tuple, directory: Path) -> None:
    """A stock HunyuanSkyreelsImageToVideoPipeline directory (transformer/VAE fp16, text encoders fp32)."""
    save_video_pipeline(bundle, vae, tokenizers, directory, pipeline_class=HunyuanSkyreelsImageToVideoPipeline)


def i2v_sampling_kwargs(size: int, num_frames: int, cfg_scale: float = CFG_SCALE) -> dict:
    """Stock ``HunyuanSkyreelsImageToVideoPipeline.__call__`` settings (plus ``image``) the model was trained for."""
    return {"height": size, "width": size, "num_frames": num_frames, "guidance_scale": EMBEDDED_GUIDANCE,
            "true_cfg_scale": cfg_scale, "negative_prompt": "", "max_sequence_length": LLAMA_MAX_LENGTH}


@torch.no_grad()
def sample_i2v(adapter, texts: list[str], first_frames: torch.Tensor, seeds: list[int], steps: int) -> torch.Tensor:
    """Euler ODE samples of our adapter, (B, T, 3, H, W) in [0, 1]; video i's noise from ``seeds[i]``."""
    from fastvideo.grpo.rollout import seeded_normal
    from fastvideo.grpo.sampler import FlowSampler
    from fastvideo.inference.sampling import generate

    sampler = FlowSampler.build(steps, VIDEO_SHIFT, "ode", 0.0)
    adapter.set_first_frame_source(lambda prompts: first_frames)
    init = seeded_normal(adapter.latent_shape(), seeds, adapter.device)
    return generate(adapter, adapter.encode_prompts(texts), init, sampler, mixed_precision="fp32")


def build_i2v_adapter(model_dir: Path, device: str = "cpu", cfg_scale: float = CFG_SCALE):
    """Our ``skyreels_i2v`` adapter on ``model_dir`` at its trained size (fp32)."""
    from fastvideo.config import ModelConfig
    from fastvideo.models import build_adapter

    sampling = json.loads((model_dir / "pretrain.json").read_text())["sampling"]
    cfg = ModelConfig(name="skyreels_i2v", tiny=False, path=str(model_dir), height=sampling["height"],
                      width=sampling["width"], num_frames=sampling["num_frames"], guidance_scale=cfg_scale,
                      dtype="fp32")
    return build_adapter(cfg, device)


def evaluate_i2v(model_dir: Path, num: int = 200, steps: int = 16, seed: int = EVAL_SEED, batch_size: int = 25,
                 device: str = "cpu", cfg_scale: float = CFG_SCALE) -> dict:
    """Held-out accuracy (± s.e., per skill) of the I2V model through our adapter (see the module docstring)."""
    started = time.time()
    adapter = build_i2v_adapter(model_dir, device, cfg_scale)
    size, num_frames = int(adapter.model_cfg.height), int(adapter.model_cfg.num_frames)
    prompts = sample_motion_prompts(num, np.random.default_rng(seed), split="heldout")
    records = []
    for start in range(0, num, batch_size):
        batch = prompts[start:start + batch_size]
        texts, indices = [p.text for p in batch], list(range(start, start + len(batch)))
        frames = indexed_first_frames(texts, indices, seed, size)
        videos = sample_i2v(adapter, texts, frames, [seed + i for i in indices], steps)
        for clip, prompt in zip(videos, batch):
            verdict = verify_video(clip, prompt.text)
            records.append({"skill": prompt.skill, "correct": float(verdict.correct), "score": verdict.score})
    result = {"overall": proportion([r["correct"] for r in records])}
    result["overall"]["mean_score"] = float(np.mean([r["score"] for r in records]))
    for skill in MOTION_SKILLS:
        result[skill] = proportion([r["correct"] for r in records if r["skill"] == skill])
    result["settings"] = {"num_prompts": num, "num_inference_steps": steps, "seed": seed, "sampler": "euler_ode",
                          "shift": VIDEO_SHIFT, "cfg_scale": cfg_scale, "embedded_guidance": EMBEDDED_GUIDANCE,
                          "first_frame": "frame 0 of a ground-truth render, rng [seed, index]",
                          "height": size, "width": size, "num_frames": num_frames}
    result["seconds"] = time.time() - started
    return result


def t2v_reference(t2v_dir: Path, num: int, steps: int, compute: bool) -> dict | None:
    """The T2V model's held-out accuracy on the same prompts and seeds: its eval.json if the settings
    match, else computed with ``video.evaluate_video`` when ``compute``, else None."""
    path = t2v_dir / "eval.json"
    if path.exists():
        result = json.loads(path.read_text())
        settings = result.get("settings", {})
        if (settings.get("num_prompts"), settings.get("num_inference_steps"), settings.get("seed")) == (
                num, steps, EVAL_SEED):
            return result
    return evaluate_video(t2v_dir, num, steps) if compute else None


def write_output(bundle: I2VBundle, t2v: HunyuanVideoPipeline, t2v_info: dict, options: StageOptions,
                 args: argparse.Namespace) -> None:
    """The I2V pipeline directory and its ``pretrain.json``."""
    output_dir = Path(args.output_dir)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    save_i2v_pipeline(bundle, t2v.vae, (t2v.tokenizer, t2v.tokenizer_2), output_dir)
    sampling = t2v_info["sampling"]
    info = {"sampling": i2v_sampling_kwargs(sampling["height"], sampling["num_frames"], args.cfg_scale),
            "adapter": {"name": "skyreels_i2v", "guidance_scale": args.cfg_scale,
                        "first_frame_latents": "posterior mode x scaling_factor"},
            "t2v_dir": str(args.t2v_dir), "seed": options.seed, "steps": options.steps,
            "batch_size": options.batch_size, "lr": options.lr, "text_dropout": args.text_dropout,
            "train_shift": args.train_shift, "t2v_pretrain": t2v_info}
    (output_dir / "pretrain.json").write_text(json.dumps(info, indent=2))


def run_train(args: argparse.Namespace) -> None:
    """Derive, train and save the I2V pipeline from ``--t2v_dir``."""
    t2v_dir, output_dir, work_dir = Path(args.t2v_dir), Path(args.output_dir), Path(args.work_dir)
    if output_dir.resolve() == t2v_dir.resolve():
        raise ValueError("--output_dir must differ from --t2v_dir (it is replaced)")
    options = stage_options("i2v", args, DEFAULTS)
    if args.fresh and (work_dir / "i2v").exists():
        shutil.rmtree(work_dir / "i2v")
    t2v, t2v_info = load_t2v(t2v_dir)
    sampling = t2v_info["sampling"]
    bundle = train_i2v(t2v, options, work_dir, sampling["height"], sampling["num_frames"], args.device,
                       args.text_dropout, args.train_shift)
    write_output(bundle, t2v, t2v_info, options, args)


def run_eval(args: argparse.Namespace) -> dict:
    """Held-out accuracy of ``--output_dir`` (and the T2V reference) into ``<output_dir>/eval.json``."""
    num, steps = (4, 2) if args.smoke else (args.eval_num, args.eval_steps)
    output_dir = Path(args.output_dir)
    result = evaluate_i2v(output_dir, num, steps, batch_size=args.eval_batch, device=args.device,
                          cfg_scale=args.cfg_scale)
    result["t2v"] = t2v_reference(Path(args.t2v_dir), num, steps, args.eval_t2v)
    print(json.dumps(result, indent=2))
    (output_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["train", "eval", "all"], default="all")
    parser.add_argument("--t2v_dir", default="assets/shapes_video/hunyuan", help="trained HunyuanVideoPipeline dir")
    parser.add_argument("--output_dir", default="assets/shapes_video/skyreels_i2v")
    parser.add_argument("--work_dir", default="outputs/pretrain_shapes_video_i2v", help="state and snapshots")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--checkpoint_every", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text_dropout", type=float, default=TEXT_DROPOUT)
    parser.add_argument("--train_shift", type=float, default=VIDEO_SHIFT,
                        help="shift of the training time distribution (lower: more steps at low noise)")
    parser.add_argument("--cfg_scale", type=float, default=CFG_SCALE, help="real CFG scale recorded / evaluated")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval_num", type=int, default=200)
    parser.add_argument("--eval_steps", type=int, default=16)
    parser.add_argument("--eval_batch", type=int, default=25)
    parser.add_argument("--eval_t2v", action="store_true", help="evaluate the T2V dir too if its eval.json "
                        "is missing or has other settings")
    parser.add_argument("--smoke", action="store_true", help="2 steps of batch 2, eval on 4 prompts x 2 steps")
    parser.add_argument("--fresh", action="store_true", help="ignore saved training state")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.stage in ("train", "all"):
        run_train(args)
    if args.stage in ("eval", "all"):
        run_eval(args)


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)

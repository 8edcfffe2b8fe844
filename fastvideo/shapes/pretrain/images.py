"""CLI: pretrain the shapes-world pipelines.

    python -m fastvideo.shapes.pretrain.images --stage {vae,flux,sd,all} --output_dir assets/shapes [--steps N] [--smoke]

Stages: ``vae`` (AutoencoderKL + latent factors, saved to ``<work_dir>/vae``), ``flux`` and ``sd`` (need
the VAE; write ``<output_dir>/flux`` / ``<output_dir>/sd`` and periodic pipeline snapshots
``<work_dir>/<model>/step_XXXXXX``). Training resumes from ``<work_dir>/<stage>/state.pt`` unless
``--fresh``. ``--ship flux:3000`` copies a snapshot into ``<output_dir>/flux`` instead of training.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from fastvideo.shapes.grammar import vocabulary
from fastvideo.shapes.pretrain.common import StageOptions, stage_tokenizers
from fastvideo.shapes.pretrain.components import (
    FULL,
    ORDER_SPANS,
    SMOKE,
    ModelSizes,
    build_clip_tokenizer,
    build_t5_tokenizer,
)
from fastvideo.shapes.pretrain.train_flux import flux_sampling_kwargs, save_flux_pipeline, train_flux
from fastvideo.shapes.pretrain.train_sd import save_sd_pipeline, sd_sampling_kwargs, sd_vae, train_sd
from fastvideo.shapes.pretrain.train_vae import train_vae

logger = logging.getLogger("fastvideo.shapes.pretrain")

DEFAULTS: dict[str, StageOptions] = {
    "vae": StageOptions(steps=800, batch_size=16, lr=8e-4, warmup=50, ema_decay=0.99, checkpoint_every=200),
    "flux": StageOptions(steps=3000, batch_size=32, lr=1e-3, warmup=100, ema_decay=0.995, checkpoint_every=200),
    "sd": StageOptions(steps=4000, batch_size=16, lr=5e-4, warmup=100, ema_decay=0.995, checkpoint_every=200),
}


FLUX_EXTRAS: dict = {"caption_noise": 0.0, "t5_neighbour_heads": 0.0, "t5_order_span": "neighbour",
                     "t5_order_gain": 1.0, "t5_sides_steps": 0, "t5_sides_anchor": 1.0, "freeze_t5": False,
                     "position_share": 0.0}
"""Flux-stage options (CLI flags of the same names) carried in ``StageOptions.extra`` when set, and their
defaults, recorded in the pipeline's ``pretrain.json``."""


def stage_options(stage: str, args: argparse.Namespace) -> StageOptions:
    """Defaults for ``stage`` with the CLI's overrides (smoke: 2 steps of batch 4)."""
    options = StageOptions(**{**DEFAULTS[stage].__dict__})
    if args.smoke:
        options.steps, options.batch_size, options.warmup, options.log_every = 2, 4, 1, 1
    if args.steps is not None:
        options.steps = args.steps
    if args.batch_size is not None:
        options.batch_size = args.batch_size
    if args.lr is not None:
        options.lr = args.lr
    if args.final_lr_fraction is not None:
        options.final_lr_fraction = args.final_lr_fraction
    options.extra.update({name: getattr(args, name) for name in FLUX_EXTRAS if getattr(args, name)})
    options.checkpoint_every = args.checkpoint_every or min(options.checkpoint_every, options.steps)
    options.seed = args.seed
    return options


def tokenizers():
    words = vocabulary()
    return build_clip_tokenizer(words), build_t5_tokenizer(words)


def load_vae(work_dir: Path) -> tuple[AutoencoderKL, dict]:
    directory = work_dir / "vae"
    if not (directory / "model").exists():
        raise FileNotFoundError(f"no trained VAE in {directory}: run --stage vae first")
    stats = json.loads((directory / "stats.json").read_text())
    return AutoencoderKL.from_pretrained(directory / "model").float(), stats


def load_pipeline_vae(pipeline_dir: Path) -> tuple[AutoencoderKL, dict]:
    """The VAE of a saved shapes pipeline (fp32) and the VAE statistics its ``pretrain.json`` recorded."""
    info_path = pipeline_dir / "pretrain.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{pipeline_dir} has no pretrain.json: --init_from takes a pipeline this "
                                "command wrote (e.g. assets/shapes/flux)")
    stats = json.loads(info_path.read_text())["vae_stats"]
    return AutoencoderKL.from_pretrained(pipeline_dir / "vae").float(), stats


def write_sampling_json(directory: Path, kwargs: dict, extra: dict) -> None:
    """Record the settings the model was trained for next to the pipeline (diffusers ignores the file)."""
    (directory / "pretrain.json").write_text(json.dumps({"sampling": kwargs, **extra}, indent=2))


def clear_target(directory: Path) -> None:
    """Remove a previous pipeline (its eval.json and sample grid would describe another model)."""
    if directory.exists():
        shutil.rmtree(directory)


def run_stage(stage: str, args: argparse.Namespace, sizes: ModelSizes) -> None:
    work_dir, output_dir = Path(args.work_dir), Path(args.output_dir)
    options = stage_options(stage, args)
    if args.fresh and (work_dir / stage).exists():
        shutil.rmtree(work_dir / stage)
    if stage == "vae":
        train_vae(sizes, options, work_dir)
        return
    init_from = Path(args.init_from) if args.init_from else None
    if init_from and stage != "flux":
        raise ValueError(f"--init_from continues the flux stage only, not {stage!r}: use --stage flux")
    vae, stats = load_pipeline_vae(init_from) if init_from else load_vae(work_dir)
    extra = {"seed": args.seed, "steps": options.steps, "batch_size": options.batch_size, "lr": options.lr,
             "final_lr_fraction": options.final_lr_fraction,
             **{name: options.extra.get(name, default) for name, default in FLUX_EXTRAS.items()}, "vae_stats": stats}
    if init_from:
        extra["init_from"] = {"path": str(init_from), **json.loads((init_from / "pretrain.json").read_text())}
    if stage == "flux":
        stage_name = "flux_continued" if init_from else "flux"
        toks = stage_tokenizers(work_dir / stage_name, tokenizers, init_from)
        bundle = train_flux(sizes, options, work_dir, vae, toks, init_from=init_from, stage_name=stage_name)
        clear_target(output_dir / "flux")
        save_flux_pipeline(bundle, vae, toks, output_dir / "flux")
        write_sampling_json(output_dir / "flux", flux_sampling_kwargs(), extra)
    else:
        clip_tokenizer = stage_tokenizers(work_dir / "sd", lambda: tokenizers()[:1])[0]
        vae = sd_vae(vae, stats["sd_scaling_factor"])
        bundle = train_sd(sizes, options, work_dir, vae, clip_tokenizer)
        clear_target(output_dir / "sd")
        save_sd_pipeline(bundle, vae, clip_tokenizer, output_dir / "sd")
        write_sampling_json(output_dir / "sd", sd_sampling_kwargs(), extra)


def ship_snapshot(spec: str, work_dir: Path, output_dir: Path) -> Path:
    """Copy ``<work_dir>/<model>/step_<N>`` (spec "model:N") to ``<output_dir>/<model>``.

    The target's ``pretrain.json`` is carried over with its step count updated; a stale ``eval.json``
    (it described another checkpoint) is dropped.
    """
    model, step = spec.split(":")
    source = work_dir / model / f"step_{int(step):06d}"
    target = output_dir / model
    info_path = target / "pretrain.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    info["steps"] = int(step)
    info_path.write_text(json.dumps(info, indent=2))
    logger.info("shipped %s -> %s", source, target)
    return target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["vae", "flux", "sd", "all"], default="all")
    parser.add_argument("--output_dir", default="assets/shapes")
    parser.add_argument("--work_dir", default="outputs/pretrain_shapes", help="states and snapshots")
    parser.add_argument("--steps", type=int, default=None, help="override every selected stage's steps")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--checkpoint_every", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--smoke", action="store_true", help="tiny models, 2 steps: a plumbing check")
    parser.add_argument("--fresh", action="store_true", help="ignore saved training state")
    parser.add_argument("--ship", default=None, help="model:step - copy that snapshot to output_dir, no training")
    parser.add_argument("--init_from", default=None,
                        help="flux stage: continue pretraining from a saved pipeline directory (e.g. assets/shapes/flux) "
                             "with a fresh optimiser; state and snapshots go to <work_dir>/flux_continued")
    parser.add_argument("--caption_noise", type=float, default=0.0,
                        help="flux stage: fraction of captions replaced by a train prompt wrong about one colour or "
                             "shape (the image is rendered from the true prompt): a base with an alignment gap")
    parser.add_argument("--t5_neighbour_heads", type=float, default=0.0,
                        help="flux stage: set T5's relative attention bias so that head 0 attends to the previous "
                             "token and head 1 to the next with this strength (components.set_neighbour_heads): "
                             "word order for the relations of position prompts; 0 = leave the bias as it is")
    parser.add_argument("--t5_order_span", choices=ORDER_SPANS, default="neighbour",
                        help="with --t5_neighbour_heads: the two heads attend to the adjacent word ('neighbour') "
                             "or to every word on their side ('context')")
    parser.add_argument("--t5_order_gain", type=float, default=1.0,
                        help="with --t5_neighbour_heads: scale the two heads' output projection by this (a larger "
                             "share of word order in every T5 state)")
    parser.add_argument("--t5_sides_steps", type=int, default=0,
                        help="flux stage: before training, teach T5 for this many steps on which side of the image "
                             "each object of a position prompt goes (t5_sides.teach_sides; use with --freeze_t5)")
    parser.add_argument("--t5_sides_anchor", type=float, default=1.0,
                        help="with --t5_sides_steps: weight of the term that keeps T5's states where they were")
    parser.add_argument("--freeze_t5", action="store_true",
                        help="flux stage: train the transformer and CLIP but keep T5 as it starts (e.g. after "
                             "--t5_neighbour_heads, which joint training otherwise washes out)")
    parser.add_argument("--position_share", type=float, default=0.0,
                        help="flux stage: replace each prompt by a position prompt with this probability "
                             "(more relation examples; 0 = the skill-balanced stream)")
    parser.add_argument("--final_lr_fraction", type=float, default=None,
                        help="learning rate at the last step as a fraction of the peak (cosine; default 0.1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.ship:
        ship_snapshot(args.ship, Path(args.work_dir), Path(args.output_dir))
        return
    sizes = SMOKE if args.smoke else FULL
    stages = ["vae", "flux", "sd"] if args.stage == "all" else [args.stage]
    for stage in stages:
        run_stage(stage, args, sizes)


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)

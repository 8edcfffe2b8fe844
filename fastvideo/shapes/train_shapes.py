"""GRPO fine-tuning of a shapes-world pipeline on the verifier reward, with held-out evaluation.

    torchrun --nproc_per_node=N -m fastvideo.shapes.train_shapes --config configs/shapes/flux_grpo.yaml
        --output_dir outputs/shapes_flux_grpo [--eval.num_prompts 400] [--section.field value ...]
    ... --config configs/shapes_video/hunyuan_t2v_nft.yaml       (moving shapes, text-to-video; _grpo: DanceGRPO)
    ... --config configs/shapes_video/skyreels_i2v_nft.yaml      (moving shapes, image-to-video; _grpo: DanceGRPO)

The world (``fastvideo.shapes.worlds``) follows the adapter: image models are evaluated on the
grammar's held-out prompts with ``shapes.verifier``, video models (``model.num_frames`` > 1) on the
held-out motion prompts with ``shapes.motion_verifier`` (``--eval.world image|motion`` forces one).
An image-to-video adapter without a configured first-frame file conditions every prompt on the first
frame of its ground-truth render (``fastvideo.shapes.motion_frames``), in training and evaluation.

Steps: build ``GRPOTrainer(cfg)`` -> evaluate the base policy on the held-out prompts -> ``train()``
-> evaluate the final policy (and its EMA weights when ``train.ema_decay`` > 0) -> write, into the
run directory (``--output_dir``): ``metrics.jsonl`` (the trainer's), ``reward_curve.png`` and
``training_curves.png``, ``before_after.png`` (+ ``.txt`` legend; rows base / final [/ final_ema],
columns fixed held-out prompts and seeds; images: upscaled, each column's prompt above it and each
tile framed green / red by its verdict; videos: first / middle / last frames per cell, and the
animated ``before_after.gif``), ``eval_<policy>.jsonl`` (per-sample verdicts) and ``summary.json``
(per-skill accuracy ± s.e., mean score, no-shape fraction, paired gains, times).

Evaluation flags (everything else is a config override, see ``python -m fastvideo.train --help``):
``--eval.num_prompts`` (image 400, motion 200), ``--eval.seed`` (1234), ``--eval.batch_size`` (100),
``--eval.grid_per_skill`` (image 2, motion 4), ``--eval.world`` (auto). Ranks share the evaluation
(see ``fastvideo.shapes.policy_eval``); rank 0 writes the files. On resume the base evaluation is read back from ``eval_base.json`` (it must
describe the weights before training, which are gone once a checkpoint is loaded).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("fastvideo")

EVAL_FLAG_PREFIX = "eval."
BASE_CACHE = "eval_base.json"
BASE_GRID_CACHE = "eval_base_grid.pt"


def split_eval_args(argv: list[str]):
    """Separate ``--eval.<field> value`` flags (EvalSettings) from the trainer's arguments."""
    from fastvideo.config import split_overrides
    from fastvideo.shapes.policy_eval import EvalSettings
    from fastvideo.shapes.worlds import get_world

    settings, rest, index = EvalSettings(), [], 0
    fields = {f.name: f for f in dataclasses.fields(EvalSettings)}
    while index < len(argv):
        token = argv[index]
        body = token[2:] if token.startswith("--") else ""
        if not body.startswith(EVAL_FLAG_PREFIX):
            rest.append(token)
            index += 1
            continue
        has_inline = "=" in body
        pair = split_overrides([token] if has_inline else argv[index:index + 2])[0]
        index += 1 if has_inline else 2
        name = pair[0][len(EVAL_FLAG_PREFIX):]
        if name not in fields or pair[1] is None:
            raise SystemExit(f"unknown or incomplete evaluation flag {token!r}; known: "
                             + ", ".join(f"--eval.{n}" for n in fields))
        setattr(settings, name, type(getattr(settings, name))(pair[1]))
    try:
        get_world(settings.world)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    return settings, rest


def _json_safe(value):
    """NaN/inf -> None, recursively (summary.json stays strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def evaluate(trainer, settings, name: str, *, use_ema: bool = False, world=None):
    """Evaluate the trainer's current policy (or its EMA weights) on the held-out prompts, with the trainer's
    evaluation sampler (``sampler.eval_num_steps`` steps; 0 = the rollouts' ``num_steps``)."""
    from fastvideo.shapes.policy_eval import evaluate_policy

    if use_ema:
        trainer.ema.swap(trainer.model)
    try:
        return evaluate_policy(trainer.adapter, trainer.eval_sampler, trainer.env, settings,
                               mixed_precision=trainer.cfg.train.mixed_precision, desc=f"eval {name}",
                               progress_bar=trainer.cfg.logging.progress_bar, world=world)
    finally:
        if use_ema:
            trainer.ema.swap(trainer.model)


def base_evaluation(trainer, settings, world=None):
    """The base policy's evaluation: computed before any update, or read back on resume."""
    import torch

    from fastvideo.shapes.policy_eval import EvalResult, world_of

    world = world or world_of(settings, getattr(trainer, "adapter", None))
    run_dir, cache = trainer.run_dir, trainer.run_dir / BASE_CACHE
    if trainer.iteration == 0:
        result = evaluate(trainer, settings, "base", world=world)
        if trainer.env.is_main:
            cache.write_text(json.dumps({"settings": dataclasses.asdict(settings), "records": result.records}))
            torch.save(result.grid_images, run_dir / BASE_GRID_CACHE)
        return result
    saved = json.loads(cache.read_text()) if cache.exists() else None
    if saved is None or saved["settings"] != dataclasses.asdict(settings):
        logger.warning("resumed at iteration %d without a matching %s: no base evaluation", trainer.iteration,
                       cache)
        return None
    return EvalResult(saved["records"], torch.load(run_dir / BASE_GRID_CACHE, weights_only=True), world.skills)


def write_artefacts(trainer, results: dict, settings, seconds: dict, world=None) -> dict:
    """summary.json, eval_*.jsonl, before_after.png (+ .gif for videos) and the curves (rank 0)."""
    from fastvideo.plots import plot_training_curves
    from fastvideo.shapes.policy_eval import (
        build_summary,
        eval_prompts,
        format_comparison,
        grid_indices,
        save_before_after,
        world_of,
        write_records,
    )

    world = world or world_of(settings, trainer.adapter)
    settings = settings.resolved(world)
    run_dir = trainer.run_dir
    for name, result in results.items():
        if result is not None:
            write_records(result.records, run_dir / f"eval_{name}.jsonl")
    prompts = eval_prompts(settings, world)
    picks = grid_indices([s for _, s in prompts], settings.grid_per_skill, world.skills)
    columns = [prompts[i][0] for i in picks]
    save_before_after(results, columns, run_dir / "before_after.png", world, picks)
    extra = {"grid_prompts": columns, "iterations": trainer.iteration, "seconds": seconds,
             "model": trainer.cfg.model.path or ("tiny " + trainer.cfg.model.name),
             "world_size": trainer.env.world_size}
    summary = _json_safe(build_summary(results, settings, extra, world))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if (run_dir / "metrics.jsonl").exists():
        smooth = max(1, trainer.iteration // 15)  # raw values drawn faintly under a moving average
        plot_training_curves([run_dir], run_dir / "reward_curve.png", keys=("reward",), smooth=smooth)
        plot_training_curves([run_dir], run_dir / "training_curves.png", smooth=smooth)
    logger.info("held-out evaluation (%d prompts):\n%s", settings.num_prompts, format_comparison(summary))
    return summary


def prepare_world(trainer, settings):
    """(world, settings with its defaults) for the trainer's adapter; a motion world's image-to-video
    adapter gets the rendered ground-truth first frames unless a first-frame file is configured."""
    from fastvideo.shapes.motion_frames import use_motion_first_frames
    from fastvideo.shapes.policy_eval import world_of

    world = world_of(settings, trainer.adapter)
    if world.name == "motion" and use_motion_first_frames(trainer.adapter, iteration=trainer.iteration):
        logger.info("first frames: ground-truth renders of the prompts (fastvideo.shapes.motion_frames)")
    return world, settings.resolved(world)


def run(cfg, settings, env) -> dict | None:
    """Base evaluation, GRPO training, final evaluation(s), artefacts. Returns the summary on rank 0."""
    from fastvideo.training.trainer import GRPOTrainer

    started = time.perf_counter()
    supervised = None
    if cfg.train.supervised_coef > 0:  # ground truth in every update: fresh clean renders of train prompts
        from fastvideo.shapes.clean_renders import CleanRenderLoss

        supervised = CleanRenderLoss(cfg.train.supervised_batch_size, cfg.train.seed, env.rank)
    trainer = GRPOTrainer(cfg, env, supervised_loss=supervised)
    world, settings = prepare_world(trainer, settings)
    seconds = {"setup": time.perf_counter() - started}
    clock = time.perf_counter()
    results = {"base": base_evaluation(trainer, settings, world)}
    seconds["eval_base"], clock = time.perf_counter() - clock, time.perf_counter()
    trainer.train()
    seconds["train"], clock = time.perf_counter() - clock, time.perf_counter()
    results["final"] = evaluate(trainer, settings, "final", world=world)
    if trainer.ema is not None:
        results["final_ema"] = evaluate(trainer, settings, "final_ema", use_ema=True, world=world)
    seconds["eval_final"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - started
    if not env.is_main:
        return None
    return write_artefacts(trainer, results, settings, seconds, world)


def main(argv: list[str] | None = None) -> dict | None:
    from fastvideo.config import parse_args

    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(__doc__)
    settings, rest = split_eval_args(args)
    cfg = parse_args(rest)  # a ConfigError is a UserError: run_cli prints it
    from fastvideo.distributed import destroy_distributed, init_distributed

    env = init_distributed()
    logging.basicConfig(level=logging.INFO if env.is_main else logging.WARNING,
                        format=f"[%(asctime)s rank{env.rank}] %(message)s", datefmt="%H:%M:%S")
    try:
        return run(cfg, settings, env)
    finally:
        destroy_distributed()


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)

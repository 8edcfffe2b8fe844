"""Held-out verifier accuracy of a shipped shapes pipeline (stock diffusers, ODE sampling).

    python -m fastvideo.shapes.pretrain.base_eval --model_dir assets/shapes/flux [--num 400] [--steps 16]

Prompts: ``num`` skill-balanced draws from the grammar's HELD-OUT split (fixed seed), one image each
with a fixed per-image seed. Reports, per skill and overall, binary accuracy with its standard error
sqrt(p (1 - p) / n), the mean fractional score, and the fraction of images where the verifier finds no
shape at all. Writes ``<model_dir>/eval.json`` unless ``--no_write``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline

from fastvideo.shapes.heldout import EVAL_SEED, heldout_prompts, summarize
from fastvideo.shapes.verifier import verify


def sampling_kwargs(model_dir: Path, pipe: DiffusionPipeline) -> dict:
    """Settings recorded at pretraining (pretrain.json), else the pipeline family's defaults."""
    info_path = model_dir / "pretrain.json"
    if info_path.exists():
        return dict(json.loads(info_path.read_text())["sampling"])
    if type(pipe).__name__.startswith("Flux"):
        return {"height": 64, "width": 64, "guidance_scale": 3.5, "max_sequence_length": 16}
    return {"height": 64, "width": 64, "guidance_scale": 5.0}


@torch.no_grad()
def sample_images(pipe: DiffusionPipeline, prompts: list[str], steps: int, kwargs: dict, seed: int,
                  batch_size: int) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1]; image i uses generator seed ``seed + i`` whatever the batching."""
    chunks = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(batch))]
        out = pipe(batch, num_inference_steps=steps, generator=generators, output_type="pt", **kwargs)
        chunks.append(out.images.float().clamp(0, 1).cpu())
    return torch.cat(chunks)


def evaluate(model_dir: Path, num: int = 400, steps: int = 16, seed: int = EVAL_SEED,
             batch_size: int = 50, save_grid: bool = True) -> dict:
    """Sample held-out prompts with the stock pipeline in ``model_dir`` and verify every image."""
    started = time.time()
    pipe = DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    kwargs = sampling_kwargs(model_dir, pipe)
    prompts = heldout_prompts(num, seed)
    images = sample_images(pipe, [text for text, _ in prompts], steps, kwargs, seed, batch_size)
    records = []
    for image, (text, skill) in zip(images, prompts):
        verdict = verify(image, text)
        records.append({"skill": skill, "correct": float(verdict.correct), "score": verdict.score,
                        "num_detected": verdict.num_detected})
    result = summarize(records)
    result["settings"] = {"num_prompts": num, "num_inference_steps": steps, "seed": seed,
                          "split": "heldout", "pipeline": type(pipe).__name__, **kwargs}
    result["seconds"] = time.time() - started
    if save_grid:
        save_image_grid(images[:64], [t for t, _ in prompts[:64]], model_dir / "eval_samples.png")
    return result


def save_image_grid(images: torch.Tensor, prompts: list[str], path: Path, columns: int = 8) -> None:
    """An 8-column PNG of the first samples (row-major, same order as eval prompts); captions to .txt."""
    from PIL import Image

    array = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    rows = [np.concatenate(list(array[i:i + columns]), axis=1) for i in range(0, len(array), columns)]
    rows[-1] = np.pad(rows[-1], ((0, 0), (0, rows[0].shape[1] - rows[-1].shape[1]), (0, 0)), constant_values=255)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    path.with_suffix(".txt").write_text("\n".join(prompts) + "\n")


def format_table(result: dict) -> str:
    lines = [f"{'skill':<14} {'acc':>6} {'s.e.':>6} {'score':>6} {'none':>6} {'n':>5}"]
    for name, stats in [*result["per_skill"].items(), ("overall", result["overall"])]:
        lines.append(f"{name:<14} {stats['acc']:6.3f} {stats['se']:6.3f} {stats['mean_score']:6.3f} "
                     f"{stats['no_shape_frac']:6.3f} {stats['n']:5d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--num", type=int, default=400)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no_write", action="store_true", help="print only; do not write eval.json / grid")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = Path(args.model_dir)
    result = evaluate(model_dir, args.num, args.steps, args.seed, args.batch_size, save_grid=not args.no_write)
    print(format_table(result))
    if not args.no_write:
        (model_dir / "eval.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)

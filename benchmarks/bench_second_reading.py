"""Agreement of the verifier with a second, differently built reading, and the crisp reward's view.

    python benchmarks/bench_second_reading.py [--model_dir assets/shapes/flux] [--num_base 300]
        [--num_gt 200] [--threads 2] [--save_disagreements out.png]

1. Ground truth: ``--num_gt`` renders per skill (all prompts, seed 0) at 64 px, clean and after
   Gaussian blur sigma 0.7 + noise std 0.05: fraction passing ``verifier.verify``, passing
   ``second_reading.second_verify``, passing both, and agreement of the two verdicts.
2. The shipped base: ``--num_base`` held-out draws sampled as ``fastvideo.shapes.pretrain.base_eval``
   (same prompts, seeds, steps and sampling settings as its model card's evaluation): per skill
   agreement and the 2x2 table (ours, second), plus the mean ``crisp`` / ``score`` of the images both
   accept, either accepts, neither accepts.

Measured (2 shared CPU cores, torch 1 thread; ~55 s in all, ~25 s of it sampling the base):

    ground truth, 64 px, 200 per skill: clean: both pass 100% in every skill (agreement 100%);
        blur 0.7 + noise 0.05: ours 100% everywhere; second 100% single and counting,
        99.5% two_objects, 99% color_binding and position
    base assets/shapes/flux, 300 held-out draws: agreement 87.0% (single 77.3%, counting 90.4%,
        two_objects 71.7%, color_binding 95.2%, position 98.5%); accuracy ours 33.0%, second 30.0%;
        (ours, second) = (ok, ok) 75, (ok, wrong) 24, (wrong, ok) 15, (wrong, wrong) 186;
        mean crisp of (ok, ok) 0.861, of (ok, wrong) 0.821

Disagreements (``--save_disagreements``) are nearly all ambiguous blobs: rounded squares / squarish
discs, lumpy or two-tone triangles, a blob fused from two colours, on which one reading names the kind
on a near tie. At 32 px this reading is weaker than the verifier (binary masks of 6-10 px shapes):
~95-98% on clean ground truth, ~65-80% after blur 0.7 + noise 0.05.
"""

from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from fastvideo.shapes.grammar import SKILLS, sample_prompts  # noqa: E402
from fastvideo.shapes.quality import crisp_verdict  # noqa: E402
from fastvideo.shapes.render import render_prompt  # noqa: E402
from fastvideo.shapes.second_reading import second_verify  # noqa: E402
from fastvideo.shapes.verifier import verify  # noqa: E402


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    blurred = ndimage.gaussian_filter(image.astype(np.float32) / 255.0, (0.7, 0.7, 0))
    return np.clip(blurred + rng.normal(0.0, 0.05, blurred.shape), 0.0, 1.0).astype(np.float32)


def ground_truth(num: int, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    print(f"ground truth at {size} px, {num} per skill: ours / second / both / agreement")
    for name in ("clean", "blur 0.7 + noise 0.05"):
        for skill in SKILLS:
            rows = []
            for prompt in sample_prompts(num, rng, split="all", skill=skill):
                image = render_prompt(prompt.text, rng, size)
                if name != "clean":
                    image = degrade(image, rng)
                rows.append((verify(image, prompt.text).correct, second_verify(image, prompt.text).correct))
            ours, second = np.array(rows).T
            print(f"  {name:<22} {skill:<14} {ours.mean():6.3f} {second.mean():6.3f} {(ours & second).mean():6.3f}"
                  f" {(ours == second).mean():6.3f}")


def base_samples(model_dir: Path, num: int) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    from diffusers import DiffusionPipeline

    from fastvideo.shapes.heldout import EVAL_SEED, heldout_prompts
    from fastvideo.shapes.pretrain.base_eval import sample_images, sampling_kwargs

    pipe = DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    prompts = heldout_prompts(num, EVAL_SEED)
    images = sample_images(pipe, [t for t, _ in prompts], 16, sampling_kwargs(model_dir, pipe), EVAL_SEED, 50)
    return images, prompts


def base(model_dir: Path, num: int, save: Path | None) -> None:
    images, prompts = base_samples(model_dir, num)
    rows, wrong = [], []
    for index, (image, (text, skill)) in enumerate(zip(images, prompts)):
        ours, second = verify(image, text).correct, second_verify(image, text).correct
        crisp = crisp_verdict(image, text)
        rows.append((skill, ours, second, crisp.crisp, crisp.score))
        if ours != second:
            wrong.append((index, text, ours, second))
    agree = np.array([r[1] == r[2] for r in rows])
    print(f"base {model_dir}, {num} held-out draws: agreement {agree.mean():.3f}; accuracy ours "
          f"{np.mean([r[1] for r in rows]):.3f}, second {np.mean([r[2] for r in rows]):.3f}")
    for skill in SKILLS:
        picked = [r[1] == r[2] for r in rows if r[0] == skill]
        print(f"  {skill:<14} n={len(picked):<4} agreement {np.mean(picked):.3f}")
    table = collections.Counter((r[1], r[2]) for r in rows)
    print("  (ours, second) counts:", dict(table))
    for key in sorted(table, reverse=True):
        picked = [r for r in rows if (r[1], r[2]) == key]
        print(f"  ours={key[0]!s:<5} second={key[1]!s:<5} mean crisp {np.mean([r[3] for r in picked]):.3f}"
              f" mean score {np.mean([r[4] for r in picked]):.3f}")
    if save is not None and wrong:
        save_disagreements(images, wrong, save)


def save_disagreements(images: torch.Tensor, wrong: list[tuple], path: Path, per_row: int = 8) -> None:
    """The images the readings disagree on, 8 per block, framed by our verdict (second's in the header)."""
    from PIL import Image

    from fastvideo.shapes.figure import FigureLabels, annotated_grid

    blocks = []
    for start in range(0, len(wrong), per_row):
        chunk = wrong[start:start + per_row]
        labels = FigureLabels(columns=[text for _, text, _, _ in chunk], rows=["ours"],
                              verdicts=[[float(ours) for _, _, ours, _ in chunk]],
                              skills=[f"#{i}: second {'ok' if second else 'wrong'}" for i, _, _, second in chunk])
        blocks.append(annotated_grid([images[[i for i, *_ in chunk]]], labels))
    width = max(b.size[0] for b in blocks)
    canvas = Image.new("RGB", (width, sum(b.size[1] for b in blocks)), "white")
    top = 0
    for block in blocks:
        canvas.paste(block, (0, top))
        top += block.size[1]
    canvas.save(path)
    print("disagreements:", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", type=Path, default=Path("assets/shapes/flux"))
    parser.add_argument("--num_base", type=int, default=300)
    parser.add_argument("--num_gt", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save_disagreements", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ground_truth(args.num_gt)
    if args.num_base and (args.model_dir / "model_index.json").exists():
        base(args.model_dir, args.num_base, args.save_disagreements)


if __name__ == "__main__":
    main()

"""Independent check of front-door gains: the stock ``FluxPipeline``, other seeds, two verifiers.

    python benchmarks/bench_independent_check.py --runs outputs/shapes_flux_grpo [more run dirs]
        [--base assets/shapes/flux] [--num 400] [--seed 20261201] [--steps 16] [--threads 2]
        [--out outputs/independent_check.jsonl]

A front-door run's held-out gain is measured by ``train_shapes`` with our adapter and sampler, the
evaluation seed ``EVAL_SEED`` and our verifier. This re-measures it with nothing of that: the base
pipeline's stock ``FluxPipeline`` (its own scheduler, ``--steps`` steps, the sampling settings of its
``pretrain.json``) and the run's exported transformer (``<run>/export/transformer``) swapped into it;
``--num`` skill-balanced held-out prompts drawn with ``--seed`` (not ``EVAL_SEED``: other prompt draws
and other noise), image i with generator seed ``seed + i``; every image read by ``verifier.verify``
(ours) and by ``second_reading.second_verify`` (the separately written reading). Prints, per run and
reading, base and fine-tuned accuracy and the paired gain with s.e. std(c_run - c_base) / sqrt(n), per
skill too; one JSON line per run and reading goes to ``--out``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fastvideo.shapes.grammar import SKILLS  # noqa: E402
from fastvideo.shapes.heldout import EVAL_SEED, heldout_prompts  # noqa: E402
from fastvideo.shapes.policy_eval import append_records  # noqa: E402
from fastvideo.shapes.pretrain.base_eval import sample_images, sampling_kwargs  # noqa: E402
from fastvideo.shapes.second_reading import second_verify  # noqa: E402
from fastvideo.shapes.verifier import verify  # noqa: E402

READINGS = {"ours": lambda image, text: verify(image, text).correct,
            "second": lambda image, text: second_verify(image, text).correct}


def verdicts(images: torch.Tensor, texts: list[str]) -> dict[str, np.ndarray]:
    """{reading: (N,) 0/1 array} for every reading."""
    return {name: np.array([float(read(image, text)) for image, text in zip(images, texts)])
            for name, read in READINGS.items()}


def paired(base: np.ndarray, run: np.ndarray) -> dict:
    diff = run - base
    return {"base": float(base.mean()), "run": float(run.mean()), "gain": float(diff.mean()),
            "se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan"), "n": len(diff)}


def load_finetuned(pipe, run_dir: Path):
    """The base pipeline with ``<run_dir>/export/transformer`` in place of its transformer."""
    from diffusers import FluxTransformer2DModel

    export = run_dir / "export" / "transformer"
    if not export.exists():
        raise FileNotFoundError(f"{run_dir} has no export/transformer: run the front door with "
                                "checkpoint.export_at_end true (its default)")
    pipe.transformer = FluxTransformer2DModel.from_pretrained(export, dtype=pipe.transformer.dtype)
    return pipe


def check(runs: list[Path], base_dir: Path, num: int, seed: int, steps: int, batch_size: int = 50) -> list[dict]:
    from diffusers import FluxPipeline

    if seed == EVAL_SEED:
        raise ValueError(f"--seed {seed} is the training evaluation's seed: the check needs other draws")
    pipe = FluxPipeline.from_pretrained(base_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    kwargs = sampling_kwargs(base_dir, pipe)
    prompts = heldout_prompts(num, seed)
    texts, skills = [t for t, _ in prompts], np.array([s for _, s in prompts])
    base = verdicts(sample_images(pipe, texts, steps, kwargs, seed, batch_size), texts)
    rows = []
    for run_dir in runs:
        tuned = verdicts(sample_images(load_finetuned(pipe, run_dir), texts, steps, kwargs, seed, batch_size), texts)
        for reading in READINGS:
            row = {"run": str(run_dir), "reading": reading, "seed": seed, "steps": steps,
                   "pipeline": "FluxPipeline", "overall": paired(base[reading], tuned[reading]),
                   "per_skill": {s: paired(base[reading][skills == s], tuned[reading][skills == s])
                                 for s in SKILLS if (skills == s).any()}}
            rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'run':40s} {'reading':7s} {'base':>6s} {'tuned':>6s} {'gain':>14s}  per-skill gain (points)"]
    for row in rows:
        o = row["overall"]
        skills = " ".join(f"{s} {100 * v['gain']:+.1f}" for s, v in row["per_skill"].items())
        lines.append(f"{row['run'][-40:]:40s} {row['reading']:7s} {o['base']:6.3f} {o['run']:6.3f} "
                     f"{100 * o['gain']:+6.2f} ± {100 * o['se']:4.2f}  {skills}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="front-door output directories")
    parser.add_argument("--base", type=Path, default=Path("assets/shapes/flux"))
    parser.add_argument("--num", type=int, default=400)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--steps", type=int, default=16, help="the model card's stock-pipeline steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/independent_check.jsonl"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = check(args.runs, args.base, args.num, args.seed, args.steps)
    print(format_rows(rows))
    append_records(rows, args.out)
    return rows


if __name__ == "__main__":
    main()

"""Side-by-side samples of a base model and trained checkpoints, same prompts and seeds.

    torchrun --nproc_per_node=N -m fastvideo.inference.visualize --model.name flux --model.path ./data/flux \
        --checkpoints outputs/flux_grpo outputs/flux_grpo@ema --prompt_file prompts.txt --seeds 0 1 \
        --num_steps 28 --height 512 --width 512 --output_dir outputs/vis

Writes ``<out>/<model label>/p<prompt index>_s<seed>.png`` for every (prompt, seed, model) and, on
rank 0, ``<out>/grid.png``: one row per (prompt, seed) — prompts in file order, seeds inner — and one
column per model (base first, then the checkpoints in the given order); every cell is H x W pixels,
no margins. ``grid.txt`` / ``grid.json`` name the rows and columns. Ranks take prompts round-robin;
images reach rank 0 through the process group (no shared filesystem needed).

Video models (``--model.name hunyuan --num_frames 33``) write ``p<prompt>_s<seed>.mp4`` and ``.gif``
per sample (``--fps``), the animated ``grid.gif`` / ``grid.mp4`` (same layout, every frame the grid of
that frame) and ``grid.png``, where every cell is the first, middle and last frame side by side
(H x 3W). See ``fastvideo.inference.video``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from fastvideo.distributed import DistEnv, destroy_distributed, init_distributed
from fastvideo.inference.checkpoints import apply_checkpoint
from fastvideo.inference.cli import (
    ModelEntry,
    base_parser,
    model_entries,
    parse,
    read_prompts,
    safe_name,
    sampling_kwargs,
)
from fastvideo.inference.sampling import PromptEncodings, sample
from fastvideo.inference.video import to_uint8, write_grids, write_sample

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
logger = logging.getLogger("fastvideo")

Cell = tuple[int, int, int]
"""(prompt index, seed, model column)."""


def sample_stem(out_dir: Path, entry: ModelEntry, prompt_index: int, seed: int) -> Path:
    """``<out>/<model>/p<prompt>_s<seed>`` (+ .png for images, .mp4 / .gif for videos)."""
    return out_dir / safe_name(entry.label) / f"p{prompt_index:04d}_s{seed}"


def render_rank(adapter, entries: list[ModelEntry], prompts: list[str], indices: list[int], seeds: list[int],
                out_dir: Path, kwargs: dict, dtype: str, fps: float = 8.0) -> dict[Cell, np.ndarray]:
    """Sample this rank's prompts with every model; write the per-sample files; return the pixels."""
    pairs = [(i, s) for i in indices for s in seeds]
    texts = [prompts[i] for i, _ in pairs]
    encodings = PromptEncodings(adapter, texts) if texts else None
    adapter.free_text_encoders()
    cells: dict[Cell, np.ndarray] = {}
    for column, entry in enumerate(entries):
        apply_checkpoint(adapter, entry.checkpoint, entry.which, dtype=dtype)
        samples = sample(adapter, texts, [s for _, s in pairs], encodings=encodings, **kwargs)
        for (index, seed), pixels in zip(pairs, samples):
            pixels = to_uint8(pixels)
            write_sample(pixels, sample_stem(out_dir, entry, index, seed), fps)
            cells[(index, seed, column)] = pixels
    return cells


def gather_cells(cells: dict[Cell, np.ndarray], env: DistEnv) -> dict[Cell, np.ndarray]:
    """Every rank's cells on rank 0 (others get {})."""
    if not env.distributed:
        return cells
    import torch.distributed as dist

    gathered: list[dict | None] = [None] * env.world_size if env.is_main else []
    dist.gather_object(cells, gathered if env.is_main else None, dst=0)
    merged: dict[Cell, np.ndarray] = {}
    for part in gathered:
        merged.update(part or {})
    return merged


def write_grid(cells: dict[Cell, np.ndarray], out_dir: Path, prompts: list[str], seeds: list[int],
               entries: list[ModelEntry], fps: float = 8.0) -> Path:
    """grid.png (+ grid.gif / grid.mp4 for videos) plus its legend (grid.txt, grid.json)."""
    path = write_grids(cells, [(i, s) for i in range(len(prompts)) for s in seeds], len(entries), out_dir, fps)[0]
    rows = [{"prompt_index": i, "prompt": p, "seed": s} for i, p in enumerate(prompts) for s in seeds]
    columns = [{"label": e.label, "checkpoint": e.checkpoint, "which": e.which} for e in entries]
    (out_dir / "grid.json").write_text(json.dumps({"rows": rows, "columns": columns}, indent=2) + "\n")
    legend = ["columns: " + " | ".join(e.label for e in entries), "rows:"]
    legend += [f"  {r}: seed {row['seed']}  {row['prompt']}" for r, row in enumerate(rows)]
    (out_dir / "grid.txt").write_text("\n".join(legend) + "\n")
    return path


def main(argv: list[str] | None = None) -> Path | None:
    parser = base_parser("Side-by-side samples of the base model and trained checkpoints.")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="run/export/DCP dirs; PATH@ema for EMA")
    parser.add_argument("--labels", nargs="*", default=None, help="column names (base first)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second of the MP4 / GIF (videos)")
    args, cfg = parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    env = init_distributed()
    prompts, entries = read_prompts(args), model_entries(args.checkpoints, labels=args.labels)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from fastvideo.models import build_adapter

    adapter = build_adapter(cfg.model, env.device)
    mine = list(range(env.rank, len(prompts), env.world_size))
    logger.info("rank %d of %d: %d of %d prompts", env.rank, env.world_size, len(mine), len(prompts))
    cells = render_rank(adapter, entries, prompts, mine, args.seeds, out_dir, sampling_kwargs(args, cfg), args.dtype,
                        args.fps)
    cells = gather_cells(cells, env)
    path = None
    if env.is_main:
        path = write_grid(cells, out_dir, prompts, args.seeds, entries, args.fps)
        logger.info("wrote %s (%d rows x %d columns)", path, len(prompts) * len(args.seeds), len(entries))
    destroy_distributed()
    return path


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)

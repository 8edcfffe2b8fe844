"""Side-by-side samples of a base model and trained checkpoints, same prompts and seeds.

    torchrun --nproc_per_node=N -m fastvideo.inference.visualize --model.name flux --model.path ./data/flux \
        --checkpoints outputs/flux_grpo outputs/flux_grpo@ema --prompt_file prompts.txt --seeds 0 1 \
        --num_steps 28 --height 512 --width 512 --output_dir outputs/vis

Writes ``<out>/<model label>/p<prompt index>_s<seed>.png`` for every (prompt, seed, model) and, on
rank 0, ``<out>/grid.png``: one row per (prompt, seed) — prompts in file order, seeds inner — and one
column per model (base first, then the checkpoints in the given order); every cell is H x W pixels,
no margins. ``grid.txt`` / ``grid.json`` name the rows and columns. Ranks take prompts round-robin;
images reach rank 0 through the process group (no shared filesystem needed).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
logger = logging.getLogger("fastvideo")

Cell = tuple[int, int, int]
"""(prompt index, seed, model column)."""


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def image_path(out_dir: Path, entry: ModelEntry, prompt_index: int, seed: int) -> Path:
    return out_dir / safe_name(entry.label) / f"p{prompt_index:04d}_s{seed}.png"


def render_rank(adapter, entries: list[ModelEntry], prompts: list[str], indices: list[int], seeds: list[int],
                out_dir: Path, kwargs: dict, dtype: str) -> dict[Cell, np.ndarray]:
    """Sample this rank's prompts with every model; write the per-image PNGs; return the pixels."""
    pairs = [(i, s) for i in indices for s in seeds]
    texts = [prompts[i] for i, _ in pairs]
    encodings = PromptEncodings(adapter, texts) if texts else None
    adapter.free_text_encoders()
    cells: dict[Cell, np.ndarray] = {}
    for column, entry in enumerate(entries):
        apply_checkpoint(adapter, entry.checkpoint, entry.which, dtype=dtype)
        images = sample(adapter, texts, [s for _, s in pairs], encodings=encodings, **kwargs)
        for (index, seed), image in zip(pairs, images):
            pixels = to_uint8(image)
            path = image_path(out_dir, entry, index, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
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


def assemble_grid(cells: dict[Cell, np.ndarray], num_prompts: int, seeds: list[int], num_models: int) -> np.ndarray:
    """(rows * H, columns * W, 3) uint8: row = (prompt, seed), column = model."""
    height, width, _ = next(iter(cells.values())).shape
    rows = [(i, s) for i in range(num_prompts) for s in seeds]
    grid = np.full((len(rows) * height, num_models * width, 3), 255, dtype=np.uint8)
    for r, (index, seed) in enumerate(rows):
        for c in range(num_models):
            grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = cells[(index, seed, c)]
    return grid


def write_grid(grid: np.ndarray, out_dir: Path, prompts: list[str], seeds: list[int],
               entries: list[ModelEntry]) -> Path:
    """grid.png plus its legend (grid.txt, grid.json)."""
    path = out_dir / "grid.png"
    Image.fromarray(grid).save(path)
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
    args, cfg = parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    env = init_distributed()
    prompts, entries = read_prompts(args), model_entries(args.checkpoints, labels=args.labels)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from fastvideo.models import build_adapter

    adapter = build_adapter(cfg.model, env.device)
    mine = list(range(env.rank, len(prompts), env.world_size))
    cells = render_rank(adapter, entries, prompts, mine, args.seeds, out_dir, sampling_kwargs(args, cfg), args.dtype)
    cells = gather_cells(cells, env)
    path = None
    if env.is_main:
        grid = assemble_grid(cells, len(prompts), args.seeds, len(entries))
        path = write_grid(grid, out_dir, prompts, args.seeds, entries)
        logger.info("wrote %s (%d rows x %d columns)", path, len(prompts) * len(args.seeds), len(entries))
    destroy_distributed()
    return path


if __name__ == "__main__":
    main()

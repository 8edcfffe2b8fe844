"""Measure the dry run's memory estimate against a real GPU (not run in CI; needs CUDA).

    python benchmarks/gpu_memory_check.py [--out gpu_memory_check.json]

1. One real-dimension FLUX.1 double-stream and one single-stream block (hidden 3072, 24 heads, 2025 image +
   512 text tokens = 720x720), bf16 autocast, forward + backward: ``torch.cuda.max_memory_allocated`` vs the
   peak ``MemTracker`` reports for the same block on fake tensors (``fastvideo.dryrun``'s method).
2. The tiny debug recipes (``configs/debug/*_tiny.yaml``): one real training iteration on the GPU vs the
   dry run's per-GPU peak of the same config (world size 1).

Prints ratio = measured / estimated per row and writes them as JSON, so the estimate's error can be stated
next to the README's memory table the first time a GPU is available.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FLUX_BLOCK = dict(dim=3072, num_attention_heads=24, attention_head_dim=128)


def _block_inputs(device):
    """A 720x720 FLUX block's inputs: 2025 image and 512 text tokens, their rotary embedding."""
    image, text = torch.randn(1, 2025, 3072, device=device), torch.randn(1, 512, 3072, device=device)
    temb = torch.randn(1, 3072, device=device)
    rope = (torch.randn(2537, 128, device=device), torch.randn(2537, 128, device=device))
    return dict(hidden_states=image, encoder_hidden_states=text, temb=temb, image_rotary_emb=rope)


def _run_block(block, inputs) -> None:
    with torch.autocast(inputs["temb"].device.type, dtype=torch.bfloat16):
        text, image = block(**inputs)
    (text.float().pow(2).mean() + image.float().pow(2).mean()).backward()


def block_rows() -> list[dict]:
    from diffusers.models.transformers.transformer_flux import (
        FluxSingleTransformerBlock,
        FluxTransformerBlock,
    )
    from torch.distributed._tools.mem_tracker import MemTracker

    from fastvideo.dryrun.fake import fake_tensors

    rows = []
    for name, cls in (("flux double block", FluxTransformerBlock), ("flux single block", FluxSingleTransformerBlock)):
        with fake_tensors():
            block = cls(**FLUX_BLOCK)
            tracker = MemTracker()
            tracker.track_external(block)
            with tracker:
                _run_block(block, _block_inputs("cpu"))
            estimate = next(iter(tracker.get_tracker_snapshot("peak").values()))["Total"]
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        block = cls(**FLUX_BLOCK).cuda()
        inputs = _block_inputs("cuda")
        base = torch.cuda.memory_allocated() - sum(t.numel() * t.element_size() for t in inputs.values()
                                                   if isinstance(t, torch.Tensor))
        _run_block(block, inputs)
        measured = torch.cuda.max_memory_allocated() - base
        rows.append({"what": name, "estimated_gib": estimate / 2**30, "measured_gib": measured / 2**30})
        del block, inputs
    return rows


def recipe_rows() -> list[dict]:
    from fastvideo.config import load_config
    from fastvideo.distributed import DistEnv
    from fastvideo.dryrun import dry_run
    from fastvideo.training.trainer import GRPOTrainer

    rows = []
    for path in sorted((ROOT / "configs/debug").glob("*_tiny.yaml")):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(str(path), [f"--output_dir={tmp}", "--train.max_iterations=1",
                                          "--checkpoint.export_at_end=false", "--logging.progress_bar=false"])
            estimate = dry_run(cfg, world_size=1, device_type="cuda").peak_bytes
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            GRPOTrainer(cfg, DistEnv(device=torch.device("cuda"))).train()
            measured = torch.cuda.max_memory_allocated()
        rows.append({"what": path.stem, "estimated_gib": estimate / 2**30, "measured_gib": measured / 2**30})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="gpu_memory_check.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: this check measures a GPU; none is visible")
    rows = block_rows() + recipe_rows()
    for row in rows:
        row["ratio"] = row["measured_gib"] / max(row["estimated_gib"], 1e-9)
        print(f"{row['what']:28s} estimated {row['estimated_gib']:8.3f} GiB  measured {row['measured_gib']:8.3f} GiB"
              f"  ratio {row['ratio']:.2f}")
    Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(0), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""The README's memory table: each real recipe's dry run (memory trackers on) at several GPU counts.

    python benchmarks/dry_run_table.py [--out outputs/dry_run_table.jsonl] [--only flux_full,sd]

Each row is one ``fastvideo.dryrun.dry_run`` (fake tensors, a fake process group of N ranks); the table
prints the per-GPU peak, the phase it occurs in and the training state per GPU, as markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = [  # (row name, config, overrides, GPU counts)
    ("FLUX.1-dev full (DanceGRPO)", "configs/flux_grpo.yaml", [], (8, 16)),
    ("FLUX.1-dev MixGRPO-Flash", "configs/flux_grpo_mixgrpo_flash.yaml", [], (16,)),
    ("SD 1.4 full", "configs/sd_grpo.yaml", [], (8,)),
    ("HunyuanVideo T2V full", "configs/hunyuan_grpo.yaml", [], (32,)),
    ("SkyReels-V1 I2V full", "configs/skyreels_i2v_grpo.yaml", [], (32,)),
    ("Wan2.1-1.3B full", "configs/wan_grpo.yaml", [], (8,)),
    ("Qwen-Image full", "configs/qwen_image_grpo.yaml", [], (16,)),
]
SLOW_ROWS = [  # unsharded runs (LoRA recipes, 1 GPU): torch's MemTracker path takes 15+ min each on one core
    ("FLUX.1-dev LoRA r128", "configs/flux_lora_grpo.yaml", [], (8,)),
    ("SD3.5-M LoRA r32 (Flow-GRPO)", "configs/sd3_grpo.yaml", [], (8,)),
    ("SD 1.4 full, 1 GPU", "configs/sd_grpo.yaml", [], (1,)),
]


def main() -> None:
    from fastvideo.config import load_config
    from fastvideo.dryrun import dry_run
    from fastvideo.dryrun.run import gib

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/dry_run_table.jsonl")
    parser.add_argument("--only", default="", help="comma-separated substrings of row names")
    parser.add_argument("--slow", action="store_true", help="also the unsharded rows (LoRA, 1 GPU)")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print("| recipe | GPUs | peak GiB / GPU | in phase | params + grads + optimizer GiB / GPU | fits 80 GB |")
    print("|---|---|---|---|---|---|")
    for name, config, overrides, worlds in ROWS + (SLOW_ROWS if args.slow else []):
        if args.only and not any(part.lower() in name.lower() for part in args.only.split(",")):
            continue
        cfg = load_config(str(ROOT / config), overrides)
        for world in worlds:
            report = dry_run(cfg, world_size=world, recipe=name)
            peak = max(report.phases, key=lambda p: p.peak_bytes)
            state = sum(v for k, v in report.state.items() if k.split()[0] in ("parameters", "gradients", "optimizer"))
            row = {"recipe": name, "config": config, "overrides": overrides, "gpus": world,
                   "peak_gib": gib(peak.peak_bytes), "phase": peak.name, "state_gib": gib(state),
                   "fits_80": report.peak_bytes <= 80 * 2**30, "seconds": report.wall_seconds}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"| {name} | {world} | {row['peak_gib']:.1f} | {peak.name} | {row['state_gib']:.1f} | "
                  f"{'yes' if row['fits_80'] else 'no'} |", flush=True)


if __name__ == "__main__":
    main()

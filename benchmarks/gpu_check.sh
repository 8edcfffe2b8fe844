#!/usr/bin/env bash
# On a machine with a GPU (not run in CI): the dry run's memory estimates against the real peaks.
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Writes OUT_DIR/gpu_memory_check.json (estimated vs measured GiB per row, and their ratio) and the dry-run
# report of the FLUX reference recipe planned for this GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
OUT=${1:-outputs/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python benchmarks/gpu_memory_check.py --out "$OUT/gpu_memory_check.json" | tee "$OUT/gpu_memory_check.txt"
python -m fastvideo.train --config configs/flux_grpo.yaml --dry_run --dry_run.world_size 16 \
    | tee "$OUT/flux_grpo_dry_run.txt" || true

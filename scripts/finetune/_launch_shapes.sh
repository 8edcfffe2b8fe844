#!/usr/bin/env bash
# torchrun launcher of fastvideo.shapes.train_shapes (GRPO on the shapes verifier + held-out evaluation).
# Same environment as _launch.sh: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, and
# NPROC_PER_NODE / GPU_NUM (default: all visible GPUs, or 1 process on a CPU machine).
# OMP_NUM_THREADS defaults to the CPU cores per process. Usage: _launch_shapes.sh CONFIG OUTPUT_DIR [overrides]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
CONFIG=$1; OUTPUT_DIR=$2; shift 2
if [[ -z "${NPROC_PER_NODE:-${GPU_NUM:-}}" ]]; then
    NPROC_PER_NODE=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
NPROC_PER_NODE=${NPROC_PER_NODE:-$GPU_NUM}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC_PER_NODE > 0 ? $(nproc) / NPROC_PER_NODE : 1 ))}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
[[ -f assets/shapes/prompts/train.txt && -f assets/shapes/prompts/train_balanced.txt ]] || python -m fastvideo.shapes.prompt_files
exec torchrun --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$NPROC_PER_NODE" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
    -m fastvideo.shapes.train_shapes --config "$CONFIG" --output_dir "$OUTPUT_DIR" "$@"

#!/usr/bin/env bash
# Shared torchrun launcher. Multi-node through the standard environment (nothing hard-coded):
#   NNODES (default 1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), MASTER_PORT (29500),
#   GPU_NUM / NPROC_PER_NODE (GPUs on this node, default: all visible GPUs, or 1 on a CPU machine).
# Usage: _launch.sh CONFIG OUTPUT_DIR [--section.field value ...]
# With --dry_run (e.g. --dry_run --dry_run.world_size 16) one process plans the run on fake tensors
# instead of training: no GPU needed (fastvideo/dryrun).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
CONFIG=$1; OUTPUT_DIR=$2; shift 2
if [[ -z "${NPROC_PER_NODE:-${GPU_NUM:-}}" ]]; then
    NPROC_PER_NODE=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
NPROC_PER_NODE=${NPROC_PER_NODE:-$GPU_NUM}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
for arg in "$@"; do
    if [[ "$arg" == --dry_run || "$arg" == --dry_run=* ]]; then
        exec python -m fastvideo.train --config "$CONFIG" --output_dir "$OUTPUT_DIR" "$@"
    fi
done
exec torchrun --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$NPROC_PER_NODE" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
    -m fastvideo.train --config "$CONFIG" --output_dir "$OUTPUT_DIR" "$@"

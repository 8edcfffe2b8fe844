#!/usr/bin/env bash
# Pretrain the shapes-world pipelines on the CPU and evaluate them on held-out prompts.
#
#   bash scripts/pretrain/pretrain_shapes.sh [extra args for fastvideo.shapes.pretrain.images, e.g. --smoke]
#
# Writes assets/shapes/{flux,sd} (stock diffusers pipelines) and their eval.json; training states and
# periodic pipeline snapshots go to outputs/pretrain_shapes (resumable: rerun the same command).
# Pick another snapshot with: python -m fastvideo.shapes.pretrain.images --ship flux:<step>
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHON=${PYTHON:-python}
OUTPUT_DIR=${OUTPUT_DIR:-assets/shapes}

"$PYTHON" -m fastvideo.shapes.pretrain.images --stage all --output_dir "$OUTPUT_DIR" --seed 0 "$@"
# ODE sampling: FLUX 16 Euler steps (shift 3), SD 20 DDIM steps (CFG 5)
"$PYTHON" -m fastvideo.shapes.pretrain.base_eval --model_dir "$OUTPUT_DIR/flux" --num 400 --steps 16
"$PYTHON" -m fastvideo.shapes.pretrain.base_eval --model_dir "$OUTPUT_DIR/sd" --num 400 --steps 20

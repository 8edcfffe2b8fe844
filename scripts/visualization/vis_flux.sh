#!/usr/bin/env bash
# Side-by-side FLUX samples: the base model and trained checkpoints, same prompts, same seeds.
# Writes $OUTPUT_DIR/<model>/p<prompt>_s<seed>.png and $OUTPUT_DIR/grid.png (rows: prompt x seed,
# columns: base then each checkpoint; legend in grid.txt / grid.json).
# Overrides (environment): MODEL_PATH (./data/flux), CHECKPOINTS (space-separated run / export / DCP
# directories, PATH@ema for EMA weights; default outputs/flux_grpo), PROMPT_FILE (./prompts.txt),
# SEEDS ("0 1"), NUM_STEPS (28), HEIGHT / WIDTH (1024), GUIDANCE (3.5), SHIFT (3.0), BATCH_SIZE (4),
# OUTPUT_DIR (outputs/vis_flux), GPU_NUM (1; prompts are split over the GPUs), MASTER_PORT (29511).
# Extra arguments go to python -m fastvideo.inference.visualize, e.g. --max_prompts 8 --sampler dpm2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
read -r -a CHECKPOINT_LIST <<< "${CHECKPOINTS-outputs/flux_grpo}"
read -r -a SEED_LIST <<< "${SEEDS:-0 1}"

torchrun --nproc_per_node="${GPU_NUM:-1}" --master_port="${MASTER_PORT:-29511}" \
    -m fastvideo.inference.visualize \
    --model.name flux \
    --model.path "${MODEL_PATH:-./data/flux}" \
    --checkpoints ${CHECKPOINT_LIST[@]+"${CHECKPOINT_LIST[@]}"} \
    --prompt_file "${PROMPT_FILE:-./prompts.txt}" \
    --seeds "${SEED_LIST[@]}" \
    --num_steps "${NUM_STEPS:-28}" \
    --height "${HEIGHT:-1024}" --width "${WIDTH:-1024}" \
    --guidance_scale "${GUIDANCE:-3.5}" \
    --shift "${SHIFT:-3.0}" \
    --batch_size "${BATCH_SIZE:-4}" \
    --output_dir "${OUTPUT_DIR:-outputs/vis_flux}" \
    "$@"

#!/usr/bin/env bash
# Side-by-side HunyuanVideo samples: the base model and trained checkpoints, same prompts, same seeds.
# Writes $OUTPUT_DIR/<model>/p<prompt>_s<seed>.mp4 and .gif per sample, and the grid (rows: prompt x seed,
# columns: base then each checkpoint; legend in grid.txt / grid.json) as the animated grid.gif / grid.mp4
# and grid.png (every cell: the first, middle and last frame side by side).
# Overrides (environment): MODEL_PATH (./data/HunyuanVideo), CHECKPOINTS (space-separated run / export /
# DCP directories, PATH@ema for EMA weights; default outputs/hunyuan_grpo), PROMPT_FILE (./prompts.txt),
# SEEDS ("0 1"), NUM_STEPS (50), HEIGHT / WIDTH (480, multiples of 16), NUM_FRAMES (53, 4k+1),
# GUIDANCE (6.0, embedded guidance), SHIFT (5.0), FPS (15), BATCH_SIZE (1), OUTPUT_DIR
# (outputs/vis_hunyuanvideo), GPU_NUM (1; prompts are split over the GPUs), MASTER_PORT (29515).
# Extra arguments go to python -m fastvideo.inference.visualize, e.g. --max_prompts 4 --dtype bf16,
# or --model.tiny true for the tiny random model (CPU smoke test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
read -r -a CHECKPOINT_LIST <<< "${CHECKPOINTS-outputs/hunyuan_grpo}"
read -r -a SEED_LIST <<< "${SEEDS:-0 1}"

torchrun --nproc_per_node="${GPU_NUM:-1}" --master_port="${MASTER_PORT:-29515}" \
    -m fastvideo.inference.visualize \
    --model.name hunyuan \
    --model.path "${MODEL_PATH:-./data/HunyuanVideo}" \
    --checkpoints ${CHECKPOINT_LIST[@]+"${CHECKPOINT_LIST[@]}"} \
    --prompt_file "${PROMPT_FILE:-./prompts.txt}" \
    --seeds "${SEED_LIST[@]}" \
    --num_steps "${NUM_STEPS:-50}" \
    --height "${HEIGHT:-480}" --width "${WIDTH:-480}" \
    --num_frames "${NUM_FRAMES:-53}" \
    --guidance_scale "${GUIDANCE:-6.0}" \
    --shift "${SHIFT:-5.0}" \
    --fps "${FPS:-15}" \
    --batch_size "${BATCH_SIZE:-1}" \
    --output_dir "${OUTPUT_DIR:-outputs/vis_hunyuanvideo}" \
    "$@"

#!/usr/bin/env bash
# Side-by-side Wan2.1 T2V samples: the base model and trained checkpoints, same prompts, same seeds.
# NUM_FRAMES 1 (the default, DanceGRPO's image mode) writes $OUTPUT_DIR/<model>/p<prompt>_s<seed>.png and
# grid.png; 4k+1 frames write .mp4 / .gif per sample and the animated grid.gif / grid.mp4 plus grid.png
# (rows: prompt x seed, columns: base then each checkpoint; legend in grid.txt / grid.json).
# Overrides (environment): MODEL_PATH (./data/Wan2.1-T2V-1.3B-Diffusers), CHECKPOINTS (space-separated run /
# export / DCP directories, PATH@ema for EMA weights; default outputs/wan_grpo), PROMPT_FILE (./prompts.txt),
# SEEDS ("0 1"), NUM_STEPS (50), HEIGHT / WIDTH (512, multiples of 16), NUM_FRAMES (1; e.g. 81 for video),
# GUIDANCE (5.0, real CFG), SHIFT (3.0), FPS (16), BATCH_SIZE (2), OUTPUT_DIR (outputs/vis_wan),
# GPU_NUM (1; prompts are split over the GPUs), MASTER_PORT (29517).
# Extra arguments go to python -m fastvideo.inference.visualize, e.g. --max_prompts 4 --dtype bf16,
# or --model.tiny true for the tiny random model (CPU smoke test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
read -r -a CHECKPOINT_LIST <<< "${CHECKPOINTS-outputs/wan_grpo}"
read -r -a SEED_LIST <<< "${SEEDS:-0 1}"

torchrun --nproc_per_node="${GPU_NUM:-1}" --master_port="${MASTER_PORT:-29517}" \
    -m fastvideo.inference.visualize \
    --model.name wan \
    --model.path "${MODEL_PATH:-./data/Wan2.1-T2V-1.3B-Diffusers}" \
    --checkpoints ${CHECKPOINT_LIST[@]+"${CHECKPOINT_LIST[@]}"} \
    --prompt_file "${PROMPT_FILE:-./prompts.txt}" \
    --seeds "${SEED_LIST[@]}" \
    --num_steps "${NUM_STEPS:-50}" \
    --height "${HEIGHT:-512}" --width "${WIDTH:-512}" \
    --num_frames "${NUM_FRAMES:-1}" \
    --guidance_scale "${GUIDANCE:-5.0}" \
    --shift "${SHIFT:-3.0}" \
    --fps "${FPS:-16}" \
    --batch_size "${BATCH_SIZE:-2}" \
    --output_dir "${OUTPUT_DIR:-outputs/vis_wan}" \
    "$@"

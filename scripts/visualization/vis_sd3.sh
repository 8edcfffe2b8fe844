#!/usr/bin/env bash
# Side-by-side SD3.5 samples: the base model and trained checkpoints (LoRA exports included), same prompts, same
# seeds. Writes $OUTPUT_DIR/<model>/p<prompt>_s<seed>.png and $OUTPUT_DIR/grid.png (rows: prompt x seed,
# columns: base then each checkpoint; legend in grid.txt / grid.json).
# Overrides (environment): MODEL_PATH (./data/stable-diffusion-3.5-medium), CHECKPOINTS (space-separated run /
# export / DCP directories, PATH@ema for EMA weights; default outputs/sd3_grpo), PROMPT_FILE (./prompts.txt),
# SEEDS ("0 1"), NUM_STEPS (40, Flow-GRPO's evaluation steps), HEIGHT / WIDTH (512), GUIDANCE (4.5, real CFG),
# SHIFT (3.0), BATCH_SIZE (4), OUTPUT_DIR (outputs/vis_sd3), GPU_NUM (1; prompts are split over the GPUs),
# MASTER_PORT (29516).
# Extra arguments go to python -m fastvideo.inference.visualize, e.g. --max_prompts 8, or --model.tiny true
# for the tiny random model (CPU smoke test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
read -r -a CHECKPOINT_LIST <<< "${CHECKPOINTS-outputs/sd3_grpo}"
read -r -a SEED_LIST <<< "${SEEDS:-0 1}"

torchrun --nproc_per_node="${GPU_NUM:-1}" --master_port="${MASTER_PORT:-29516}" \
    -m fastvideo.inference.visualize \
    --model.name sd3 \
    --model.path "${MODEL_PATH:-./data/stable-diffusion-3.5-medium}" \
    --checkpoints ${CHECKPOINT_LIST[@]+"${CHECKPOINT_LIST[@]}"} \
    --prompt_file "${PROMPT_FILE:-./prompts.txt}" \
    --seeds "${SEED_LIST[@]}" \
    --num_steps "${NUM_STEPS:-40}" \
    --height "${HEIGHT:-512}" --width "${WIDTH:-512}" \
    --guidance_scale "${GUIDANCE:-4.5}" \
    --shift "${SHIFT:-3.0}" \
    --batch_size "${BATCH_SIZE:-4}" \
    --output_dir "${OUTPUT_DIR:-outputs/vis_sd3}" \
    "$@"

#!/usr/bin/env bash
# Side-by-side Qwen-Image samples: the base model and trained checkpoints, same prompts, same seeds.
# Writes $OUTPUT_DIR/<model>/p<prompt>_s<seed>.png and $OUTPUT_DIR/grid.png (rows: prompt x seed,
# columns: base then each checkpoint; legend in grid.txt / grid.json).
# Overrides (environment): MODEL_PATH (./data/Qwen-Image), CHECKPOINTS (space-separated run / export / DCP
# directories, PATH@ema for EMA weights; default outputs/qwen_image_grpo), PROMPT_FILE (./prompts.txt),
# SEEDS ("0 1"), NUM_STEPS (50), HEIGHT / WIDTH (720, multiples of 16), TRUE_CFG (4.0, the pipeline's true
# CFG against " "; 1 = the conditional branch only, as DanceGRPO trains), SHIFT (3.0), BATCH_SIZE (2),
# OUTPUT_DIR (outputs/vis_qwen_image), GPU_NUM (1; prompts are split over the GPUs), MASTER_PORT (29518).
# Extra arguments go to python -m fastvideo.inference.visualize, e.g. --max_prompts 8 --dtype bf16,
# or --model.tiny true for the tiny random model (CPU smoke test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
read -r -a CHECKPOINT_LIST <<< "${CHECKPOINTS-outputs/qwen_image_grpo}"
read -r -a SEED_LIST <<< "${SEEDS:-0 1}"

torchrun --nproc_per_node="${GPU_NUM:-1}" --master_port="${MASTER_PORT:-29518}" \
    -m fastvideo.inference.visualize \
    --model.name qwen_image \
    --model.path "${MODEL_PATH:-./data/Qwen-Image}" \
    --model.true_cfg_scale "${TRUE_CFG:-4.0}" \
    --checkpoints ${CHECKPOINT_LIST[@]+"${CHECKPOINT_LIST[@]}"} \
    --prompt_file "${PROMPT_FILE:-./prompts.txt}" \
    --seeds "${SEED_LIST[@]}" \
    --num_steps "${NUM_STEPS:-50}" \
    --height "${HEIGHT:-720}" --width "${WIDTH:-720}" \
    --shift "${SHIFT:-3.0}" \
    --batch_size "${BATCH_SIZE:-2}" \
    --output_dir "${OUTPUT_DIR:-outputs/vis_qwen_image}" \
    "$@"

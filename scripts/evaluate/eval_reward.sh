#!/usr/bin/env bash
# Score a model (the base, or a trained checkpoint) on a prompt file with one or more rewards:
# mean ± std and 95% CI per reward, per-skill accuracy for shapes prompts scored with shapes_verifier.
# Resumable: run it again with the same settings and only the prompts not yet scored are sampled.
# Overrides (environment): CONFIG (the training config giving model and sampler; default
# configs/shapes/flux_grpo.yaml), CHECKPOINT (run / export / DCP directory, PATH@ema for EMA weights;
# empty = the base model; default outputs/shapes_flux_grpo), PROMPT_FILE (assets/shapes/prompts/heldout.txt),
# REWARDS ("shapes_verifier"; NAME>THRESHOLD for a binary reward), REWARD_KWARGS (JSON {"NAME": {...}} or a
# JSON/YAML file), SAMPLES_PER_PROMPT (4), BATCH_SIZE (32), SEED (0), OUTPUT_DIR (outputs/eval_reward),
# GPU_NUM (1; prompts are split over the GPUs), MASTER_PORT (29513).
# Extra arguments go to python -m fastvideo.inference.evaluate, e.g. --num_steps 28 --model.path DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
read -r -a REWARD_LIST <<< "${REWARDS:-shapes_verifier}"
CHECKPOINT=${CHECKPOINT-outputs/shapes_flux_grpo}
EXTRA=()
[[ -n "$CHECKPOINT" ]] && EXTRA+=(--checkpoint "$CHECKPOINT")
[[ -n "${REWARD_KWARGS:-}" ]] && EXTRA+=(--reward_kwargs "$REWARD_KWARGS")

torchrun --nproc_per_node="${GPU_NUM:-1}" --master_port="${MASTER_PORT:-29513}" \
    -m fastvideo.inference.evaluate \
    --config "${CONFIG:-configs/shapes/flux_grpo.yaml}" \
    ${EXTRA[@]+"${EXTRA[@]}"} \
    --prompt_file "${PROMPT_FILE:-assets/shapes/prompts/heldout.txt}" \
    --rewards "${REWARD_LIST[@]}" \
    --samples_per_prompt "${SAMPLES_PER_PROMPT:-4}" \
    --batch_size "${BATCH_SIZE:-32}" \
    --seed "${SEED:-0}" \
    --output_dir "${OUTPUT_DIR:-outputs/eval_reward}" \
    "$@"

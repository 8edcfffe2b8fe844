#!/usr/bin/env bash
# Best-of-N inference scaling: N_MAX samples per prompt (fixed seeds, the same for every model), scored
# once with one reward; the expected best-of-N reward for N = 1, 2, 4, ..., N_MAX, for the base model and
# each checkpoint -> $OUTPUT_DIR/best_of_n.{json,md,png}. Resumable like eval_reward.sh.
# Overrides (environment): CONFIG (configs/shapes/flux_grpo.yaml), CHECKPOINTS (space-separated run /
# export / DCP directories, PATH@ema for EMA weights; default outputs/shapes_flux_grpo), PROMPT_FILE
# (assets/shapes/prompts/heldout.txt), REWARD (shapes_verifier), REWARD_KWARGS (JSON {"NAME": {...}}),
# N_MAX (16), ESTIMATOR (unbiased | first), BATCH_SIZE (64), SEED (0), OUTPUT_DIR (outputs/best_of_n),
# GPU_NUM (1; prompts are split over the GPUs), MASTER_PORT (29514).
# Extra arguments go to python -m fastvideo.inference.best_of_n, e.g. --max_prompts 100 --no_base.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
read -r -a CHECKPOINT_LIST <<< "${CHECKPOINTS-outputs/shapes_flux_grpo}"
EXTRA=()
[[ -n "${REWARD_KWARGS:-}" ]] && EXTRA+=(--reward_kwargs "$REWARD_KWARGS")

torchrun --nproc_per_node="${GPU_NUM:-1}" --master_port="${MASTER_PORT:-29514}" \
    -m fastvideo.inference.best_of_n \
    --config "${CONFIG:-configs/shapes/flux_grpo.yaml}" \
    --checkpoints ${CHECKPOINT_LIST[@]+"${CHECKPOINT_LIST[@]}"} \
    --prompt_file "${PROMPT_FILE:-assets/shapes/prompts/heldout.txt}" \
    --reward "${REWARD:-shapes_verifier}" \
    ${EXTRA[@]+"${EXTRA[@]}"} \
    --n_max "${N_MAX:-16}" \
    --estimator "${ESTIMATOR:-unbiased}" \
    --batch_size "${BATCH_SIZE:-64}" \
    --seed "${SEED:-0}" \
    --output_dir "${OUTPUT_DIR:-outputs/best_of_n}" \
    "$@"

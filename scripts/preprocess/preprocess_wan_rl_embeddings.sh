#!/usr/bin/env bash
# Encode a prompt file into the Wan2.1 (UMT5-XXL text encoder only, ~11 GB in bf16) prompt-embedding
# cache, on GPU_NUM GPUs. Writes $OUTPUT_DIR/<cache key>/shard-<rank>.safetensors and index.json; training reads it
# with --data.embeddings_dir $OUTPUT_DIR (configs/wan_grpo.yaml does).
# Each prompt stores 512 UMT5 tokens x 4096 (zero past the prompt); the empty prompt (the CFG branch) goes
# into extras.safetensors.
# Overrides: GPU_NUM (default 1), MODEL_PATH, PROMPT_FILE, OUTPUT_DIR, BATCH_SIZE; extra arguments pass through.
set -euo pipefail

GPU_NUM=${GPU_NUM:-1}
MODEL_PATH=${MODEL_PATH:-./data/Wan2.1-T2V-1.3B-Diffusers}
PROMPT_FILE=${PROMPT_FILE:-./prompts.txt}
OUTPUT_DIR=${OUTPUT_DIR:-./data/rl_embeddings}
BATCH_SIZE=${BATCH_SIZE:-8}

torchrun --nproc_per_node="$GPU_NUM" -m fastvideo.data.preprocess \
    --model.name wan \
    --model.path "$MODEL_PATH" \
    --prompt_file "$PROMPT_FILE" \
    --output_dir "$OUTPUT_DIR" \
    --batch_size "$BATCH_SIZE" \
    "$@"

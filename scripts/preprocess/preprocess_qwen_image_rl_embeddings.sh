#!/usr/bin/env bash
# Encode a prompt file into the Qwen-Image (Qwen2.5-VL-7B text encoder only, ~16 GB in bf16) prompt-embedding
# cache, on GPU_NUM GPUs. Writes $OUTPUT_DIR/<cache key>/shard-<rank>.safetensors and index.json; training reads it
# with --data.embeddings_dir $OUTPUT_DIR (configs/qwen_image_grpo.yaml does).
# Each prompt stores 1024 tokens x 3584 (zero-padded, with their mask; ~7 MB in bf16); the negative prompt
# " " (true CFG) goes into extras.safetensors.
# Overrides: GPU_NUM (default 1), MODEL_PATH, PROMPT_FILE, OUTPUT_DIR, BATCH_SIZE; extra arguments pass through.
set -euo pipefail

GPU_NUM=${GPU_NUM:-1}
MODEL_PATH=${MODEL_PATH:-./data/Qwen-Image}
PROMPT_FILE=${PROMPT_FILE:-./prompts.txt}
OUTPUT_DIR=${OUTPUT_DIR:-./data/rl_embeddings}
BATCH_SIZE=${BATCH_SIZE:-8}

torchrun --nproc_per_node="$GPU_NUM" -m fastvideo.data.preprocess \
    --model.name qwen_image \
    --model.path "$MODEL_PATH" \
    --prompt_file "$PROMPT_FILE" \
    --output_dir "$OUTPUT_DIR" \
    --batch_size "$BATCH_SIZE" \
    "$@"

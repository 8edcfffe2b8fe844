#!/usr/bin/env bash
# GRPO LoRA fine-tuning of FLUX.1-dev (DanceGRPO reference: 8 GPUs, rank 128, alpha 256, lr 3e-4, 12 steps).
exec "$(dirname "$0")/_launch.sh" configs/flux_lora_grpo.yaml "${OUTPUT_DIR:-outputs/flux_lora_grpo}" "$@"

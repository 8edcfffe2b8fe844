#!/usr/bin/env bash
# GRPO fine-tuning of Stable Diffusion 1.4 with DDIM-SDE rollouts (DanceGRPO reference: 8 GPUs, lr 1e-5,
# G=16, 50 DDIM steps, eta 1.0, CFG 5, 512x512) against HPS-v2.1.
# Prerequisites: ./data/stable-diffusion-v1-4, hps_ckpt/, and
#   bash scripts/preprocess/preprocess_sd_rl_embeddings.sh
exec "$(dirname "$0")/_launch.sh" configs/sd_grpo.yaml "${OUTPUT_DIR:-outputs/sd_grpo}" "$@"

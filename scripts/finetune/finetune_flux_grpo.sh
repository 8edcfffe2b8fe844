#!/usr/bin/env bash
# GRPO full fine-tuning of FLUX.1-dev with HPS-v2.1 (DanceGRPO reference hyperparameters:
# 16 GPUs, lr 1e-5, G=12, 16 steps, eta 0.3, shift 3, 720x720, clip 1e-4, timestep_fraction 0.6).
# Prerequisites: ./data/flux (see data/README.md), hps_ckpt/ (see hps_ckpt/README.md), and the prompt
# embeddings: bash scripts/preprocess/preprocess_flux_rl_embeddings.sh
# Extra arguments override the config, e.g. --train.lr 5e-6 --grpo.group_size 8
exec "$(dirname "$0")/_launch.sh" configs/flux_grpo.yaml "${OUTPUT_DIR:-outputs/flux_grpo}" "$@"

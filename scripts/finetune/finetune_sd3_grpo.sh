#!/usr/bin/env bash
# GRPO LoRA fine-tuning of Stable Diffusion 3.5 medium with the Flow-GRPO SDE against PickScore (Flow-GRPO
# reference: 512x512, 10 sampling steps (40 for evaluation), noise level 0.7, real CFG 4.5, G=24, 48 prompts per
# epoch, LoRA r32 / alpha 64 at lr 3e-4, KL 0.01 (PickScore; 0.04 for GenEval), clip 1e-4; see configs/sd3_grpo.yaml).
# Prerequisites: ./data/stable-diffusion-3.5-medium
#   (huggingface-cli download stabilityai/stable-diffusion-3.5-medium --local-dir ./data/stable-diffusion-3.5-medium),
# the PickScore weights (see fastvideo/rewards/clip_scores.py), and the prompt embeddings:
#   bash scripts/preprocess/preprocess_sd3_rl_embeddings.sh
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, NPROC_PER_NODE (see _launch.sh).
# Extra arguments override the config, e.g. --grpo.kl_coef 0.04 --train.prompts_per_iteration 12
exec "$(dirname "$0")/_launch.sh" configs/sd3_grpo.yaml "${OUTPUT_DIR:-outputs/sd3_grpo}" "$@"

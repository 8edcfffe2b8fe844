#!/usr/bin/env bash
# GRPO full fine-tuning of Qwen-Image against HPS-v2.1 (DanceGRPO reference: 8 GPUs, lr 1e-5, G=12, 20 steps,
# eta 0.3, shift 3, 720x720, no CFG branch, clip 1e-4, timestep_fraction 0.6, 300 iterations).
# Prerequisites: ./data/Qwen-Image (huggingface-cli download Qwen/Qwen-Image --local-dir ./data/Qwen-Image),
# hps_ckpt/ (see hps_ckpt/README.md), and the prompt embeddings:
#   bash scripts/preprocess/preprocess_qwen_image_rl_embeddings.sh
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, NPROC_PER_NODE (see _launch.sh).
# Extra arguments override the config, e.g. --model.true_cfg_scale 4.0 (the pipeline's true CFG)
exec "$(dirname "$0")/_launch.sh" configs/qwen_image_grpo.yaml "${OUTPUT_DIR:-outputs/qwen_image_grpo}" "$@"

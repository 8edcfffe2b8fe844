#!/usr/bin/env bash
# GRPO full fine-tuning of Wan2.1-T2V-1.3B as an image model (one frame) against HPS-v2.1 (DanceGRPO reference:
# 8 GPUs, lr 1e-5, G=12, 20 steps, eta 0.3, shift 3, 512x512, real CFG 5, clip 1e-4, timestep_fraction 0.6).
# Prerequisites: ./data/Wan2.1-T2V-1.3B-Diffusers
#   (huggingface-cli download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --local-dir ./data/Wan2.1-T2V-1.3B-Diffusers),
# hps_ckpt/ (see hps_ckpt/README.md), and the prompt embeddings:
#   bash scripts/preprocess/preprocess_wan_rl_embeddings.sh
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, NPROC_PER_NODE (see _launch.sh).
# Extra arguments override the config, e.g. --model.num_frames 33 --model.height 240 --model.width 416 for video
exec "$(dirname "$0")/_launch.sh" configs/wan_grpo.yaml "${OUTPUT_DIR:-outputs/wan_grpo}" "$@"

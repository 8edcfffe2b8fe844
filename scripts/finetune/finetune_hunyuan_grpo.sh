#!/usr/bin/env bash
# GRPO full fine-tuning of HunyuanVideo (T2V) against VideoAlign's VQ head (DanceGRPO reference: 32 GPUs,
# lr 1e-5, G=24, 16 steps, eta 0.25, shift 5, 480x480x53, guidance 6, clip 1e-4, timestep_fraction 0.6).
# Prerequisites: ./data/HunyuanVideo (hf download hunyuanvideo-community/HunyuanVideo --local-dir ./data/HunyuanVideo),
# ./videoalign_ckpt + ./Qwen2-VL-2B-Instruct (see configs/hunyuan_grpo.yaml), and the prompt embeddings:
#   bash scripts/preprocess/preprocess_hunyuan_rl_embeddings.sh
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, NPROC_PER_NODE (see _launch.sh).
# Extra arguments override the config, e.g. --grpo.group_size 12 --model.num_frames 33
exec "$(dirname "$0")/_launch.sh" configs/hunyuan_grpo.yaml "${OUTPUT_DIR:-outputs/hunyuan_grpo}" "$@"

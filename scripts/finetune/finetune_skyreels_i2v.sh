#!/usr/bin/env bash
# GRPO full fine-tuning of SkyReels-V1-Hunyuan-I2V against VideoAlign's MQ head (DanceGRPO reference:
# 32 GPUs, lr 1e-5, G=8, 16 steps, eta 0.3, shift 7, 400x640x53, real CFG 5 with the empty prompt).
# Prerequisites: ./data/SkyReels-V1-Hunyuan-I2V (HunyuanVideo's directory with SkyReels' transformer in
# transformer/), ./videoalign_ckpt + ./Qwen2-VL-2B-Instruct, and a first-frame file: JSON/CSV of
# (prompt, image) covering every prompt of prompts.txt (FIRST_FRAME_FILE, default ./data/first_frames.json).
# Extra arguments override the config, e.g. --grpo.group_size 4
set -euo pipefail
export FASTVIDEO_FIRST_FRAME_FILE=${FIRST_FRAME_FILE:-./data/first_frames.json}
if [[ ! -f "$FASTVIDEO_FIRST_FRAME_FILE" ]]; then
    echo "first-frame file not found: $FASTVIDEO_FIRST_FRAME_FILE (set FIRST_FRAME_FILE)" >&2
    exit 1
fi
exec "$(dirname "$0")/_launch.sh" configs/skyreels_i2v_grpo.yaml "${OUTPUT_DIR:-outputs/skyreels_i2v_grpo}" "$@"

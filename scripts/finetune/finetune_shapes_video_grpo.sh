#!/usr/bin/env bash
# RL fine-tuning of the moving-shapes video pipelines on the motion verifier, then held-out evaluation of
# the base and the fine-tuned model (fastvideo.shapes.train_shapes; the world is chosen from the adapter:
# video -> held-out motion prompts, shapes.motion_verifier). The default preset is the image front door's
# objective, DiffusionNFT (the loss on the conditional branch, rollouts with real CFG); the *_grpo.yaml
# configs run DanceGRPO's SDE GRPO. Runs on the CPU (one process) or on every visible GPU (NPROC_PER_NODE
# overrides). 20-minute budget: ~130 NFT iterations (~9 s each, binary reward, constant groups skipped) or ~63
# GRPO iterations (19 s) on 2 CPU cores.
#   text-to-video  (default): configs/shapes_video/hunyuan_t2v_nft.yaml   (assets/shapes_video/hunyuan)
#   image-to-video:           CONFIG=configs/shapes_video/skyreels_i2v_nft.yaml (assets/shapes_video/skyreels_i2v;
#                             first frames = ground-truth renders of the prompts, a fresh scene per iteration)
#   DanceGRPO:                CONFIG=configs/shapes_video/{hunyuan_t2v,skyreels_i2v}_grpo.yaml
# Writes OUTPUT_DIR (default outputs/shapes_video_<config name>): metrics.jsonl, reward_curve.png,
# training_curves.png, before_after.png (+ .gif), eval_*.jsonl, summary.json.
# Extra arguments override the config, e.g. --train.max_iterations 10 --eval.num_prompts 100
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CONFIG=${CONFIG:-configs/shapes_video/hunyuan_t2v_nft.yaml}
[[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]] && source .venv/bin/activate
[[ -f assets/shapes_video/prompts/train_balanced.txt && -f assets/shapes_video/prompts/train_single.txt ]] || python -m fastvideo.shapes.prompt_files --world motion
exec scripts/finetune/_launch_shapes.sh "$CONFIG" "${OUTPUT_DIR:-outputs/shapes_video_$(basename "$CONFIG" .yaml)}" "$@"

#!/usr/bin/env bash
# GRPO (DDIM-SDE) fine-tuning of the shipped Stable-Diffusion-style shapes pipeline (assets/shapes/sd)
# on the shapes verifier, then held-out evaluation of the base and the fine-tuned model. CPU (one
# process) or every visible GPU (NPROC_PER_NODE overrides).
# Writes OUTPUT_DIR (default outputs/shapes_sd_grpo): metrics.jsonl, reward_curve.png,
# training_curves.png, before_after.png, eval_*.jsonl, summary.json.
# Extra arguments override the config, e.g. --train.max_iterations 10 --eval.num_prompts 200
exec "$(dirname "$0")/_launch_shapes.sh" configs/shapes/sd_grpo.yaml "${OUTPUT_DIR:-outputs/shapes_sd_grpo}" "$@"

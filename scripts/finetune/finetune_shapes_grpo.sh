#!/usr/bin/env bash
# GRPO fine-tuning of the shipped FLUX-style shapes pipeline (assets/shapes/flux) on the shapes
# verifier, then held-out evaluation of the base and the fine-tuned model. Runs on the CPU (one
# process) or on every visible GPU (NPROC_PER_NODE overrides). About 8 minutes on 2 CPU cores (40 iterations).
# Writes OUTPUT_DIR (default outputs/shapes_flux_grpo): metrics.jsonl, reward_curve.png,
# training_curves.png, before_after.png, eval_*.jsonl, summary.json.
# Extra arguments override the config, e.g. --train.max_iterations 10 --eval.num_prompts 200
# CONFIG picks another preset: configs/shapes/flux_grpo_{mixgrpo,mixgrpo_flash,mixgrpo_flash_star,cps}.yaml
exec "$(dirname "$0")/_launch_shapes.sh" "${CONFIG:-configs/shapes/flux_grpo.yaml}" "${OUTPUT_DIR:-outputs/shapes_flux_grpo}" "$@"

#!/usr/bin/env bash
# RL fine-tuning of the shipped FLUX-style shapes pipeline (assets/shapes/flux) on the shapes
# verifier, then held-out evaluation of the base and the fine-tuned model. The default preset is the
# objective that learned best in docs/shapes_learning_log.md: DiffusionNFT (configs/shapes/flux_nft.yaml);
# CONFIG=configs/shapes/flux_grpo.yaml runs DanceGRPO's SDE GRPO. Runs on the CPU (one process) or on every
# visible GPU (NPROC_PER_NODE overrides). Measured alone on two CPU cores: 6.4 min in all on the v4 base (3.4 s per
# iteration, docs/shapes_learning_log.md row 56), 9.7-10.3 min on v5 on a slower machine (5.2-5.6 s, rows 58-60),
# 6.5 min on v6 (3.6 s per iteration, row 78), 6.8 min on v7 (3.7 s per iteration, row 104).
# Writes OUTPUT_DIR (default outputs/shapes_flux_grpo): metrics.jsonl, reward_curve.png,
# training_curves.png, before_after.png, eval_*.jsonl, summary.json.
# Extra arguments override the config, e.g. --train.max_iterations 10 --eval.num_prompts 200
# CONFIG picks another preset: configs/shapes/flux_grpo{,_mixgrpo,_mixgrpo_flash,_mixgrpo_flash_star,_cps}.yaml
exec "$(dirname "$0")/_launch_shapes.sh" "${CONFIG:-configs/shapes/flux_nft.yaml}" "${OUTPUT_DIR:-outputs/shapes_flux_grpo}" "$@"

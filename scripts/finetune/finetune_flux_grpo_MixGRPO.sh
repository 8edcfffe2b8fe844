#!/usr/bin/env bash
# MixGRPO on FLUX.1-dev (sliding window w=4, progressive, 25 steps). Same prerequisites as
# finetune_flux_grpo.sh. Extra arguments override the config.
exec "$(dirname "$0")/_launch.sh" configs/flux_grpo_mixgrpo.yaml "${OUTPUT_DIR:-outputs/flux_mixgrpo}" "$@"

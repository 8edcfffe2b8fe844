#!/usr/bin/env bash
# MixGRPO-Flash on FLUX.1-dev (DPM-Solver++ after the window, 40% of the steps).
# FLASH_STAR=1 selects Flash* (window frozen at 0, 20% of the steps).
CONFIG=configs/flux_grpo_mixgrpo_flash.yaml
[[ "${FLASH_STAR:-0}" == "1" ]] && CONFIG=configs/flux_grpo_mixgrpo_flash_star.yaml
exec "$(dirname "$0")/_launch.sh" "$CONFIG" "${OUTPUT_DIR:-outputs/flux_mixgrpo_flash}" "$@"

#!/usr/bin/env bash
# Set up the environment for DanceGRPO-done-right. Idempotent: safe to run again.
#
#   bash env_setup.sh                 # creates ./.venv (python3 -m venv) and installs into it
#   USE_ACTIVE_ENV=1 bash env_setup.sh  # installs into the currently active python environment
#   EXTRAS=dev,log bash env_setup.sh    # choose extras (default: dev = tests + rewards + video)
#
# torch==2.14.1 / torchvision==0.29.1 are installed first: open_clip needs torchvision, and this
# pinned pair imports on CPU-only machines and runs on CUDA clusters alike.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
EXTRAS=${EXTRAS:-dev}
PY=${PYTHON:-python3}

if [[ "${USE_ACTIVE_ENV:-0}" == "1" ]]; then
    echo "[env_setup] using the active environment: $(command -v "$PY")"
else
    if [[ ! -x .venv/bin/python ]]; then
        echo "[env_setup] creating .venv"
        "$PY" -m venv .venv
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
    PY=python
fi

stamp_file=".venv-setup.stamp"
want_stamp="$(cat pyproject.toml env_setup.sh | sha256sum | cut -d' ' -f1) $EXTRAS $TORCH_SPEC"
if [[ "${USE_ACTIVE_ENV:-0}" != "1" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$want_stamp" ]] \
    && "$PY" -c "import fastvideo, torch" 2>/dev/null; then
    echo "[env_setup] environment up to date (delete $stamp_file to force a reinstall)"
    exit 0
fi

"$PY" -m pip install --quiet --upgrade pip
echo "[env_setup] installing $TORCH_SPEC"
# shellcheck disable=SC2086
"$PY" -m pip install --quiet $TORCH_SPEC
echo "[env_setup] installing dancegrpo[$EXTRAS] (editable)"
"$PY" -m pip install --quiet -e ".[$EXTRAS]"
"$PY" -c "import torch, fastvideo; print('[env_setup] torch', torch.__version__, '| cuda available:', torch.cuda.is_available())"
[[ "${USE_ACTIVE_ENV:-0}" == "1" ]] || echo "$want_stamp" > "$stamp_file"
echo "[env_setup] done. Activate with: source .venv/bin/activate"

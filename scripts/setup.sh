#!/usr/bin/env bash
# Set up the project on a fresh machine: .venv at the repo root with everything installed.
# Idempotent: a second run only checks what is there. CPU machines take the local torch
# 2.13.0 wheel through constraints.txt (any other torch spec would pull CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
export DS_BUILD_OPS=0            # deepspeed imports on CPU without building its CUDA ops
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "setup: installing giraffe-vlm and its dependencies into .venv"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
mkdir -p dagster_home
echo "setup: ready ($(.venv/bin/python -c 'import torch, transformers, dagster; print(f"torch {torch.__version__}, transformers {transformers.__version__}, dagster {dagster.__version__}")'))"

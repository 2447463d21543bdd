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
EXTRAS="${GIRAFFE_EXTRAS:-dev,eval}"   # eval: lmms-eval (its tests run in CI)
echo "setup: installing giraffe-vlm[$EXTRAS] and its dependencies into .venv"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
# lmms-eval pulls torchvision; a torchvision build that does not match the installed torch
# fails on import ("operator torchvision::nms does not exist") and takes transformers' image
# processors down with it. Without it, lmms-eval loads its tasks and our lmms-eval model
# handles images itself (eval/lmms_plugin). A torchvision that loads is kept.
if .venv/bin/python -m pip show -q torchvision >/dev/null 2>&1 && ! .venv/bin/python -c "import torchvision" >/dev/null 2>&1; then
  echo "setup: removing torchvision (it does not load against this torch)"
  .venv/bin/python -m pip uninstall -q -y torchvision
fi
# lmms-eval's latex2sympy2 pins antlr4-python3-runtime 4.7.2, whose parser breaks Dagster's asset
# selection strings ("ord() expected string of length 1" on any job's selection); Dagster 1.13
# needs <4.14 and works with 4.13.2. latex2sympy2 is only used by math tasks we do not run.
ANTLR=4.13.2
if [ "$(.venv/bin/python -c 'from importlib.metadata import version; print(version("antlr4-python3-runtime"))' 2>/dev/null)" != "$ANTLR" ]; then
  echo "setup: pinning antlr4-python3-runtime==$ANTLR (lmms-eval pulls 4.7.2, which breaks Dagster's selection parser)"
  .venv/bin/python -m pip install -q --no-deps "antlr4-python3-runtime==$ANTLR"
fi
.venv/bin/python -W ignore -c "import dagster as dg; dg.AssetSelection.from_string('key:\"a/b\" or group:g')" \
  || { echo "setup: Dagster's asset selection parser does not load (antlr4-python3-runtime?)" >&2; exit 1; }
mkdir -p dagster_home
echo "setup: ready ($(.venv/bin/python -c 'import torch, transformers, dagster; print(f"torch {torch.__version__}, transformers {transformers.__version__}, dagster {dagster.__version__}")'))"

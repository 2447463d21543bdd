#!/usr/bin/env bash
# One GPU run of everything the project measures on a GPU, in at most 9 minutes on one H200:
#   1. environment (torch, CUDA, GPU, transformers, flash-attn, deepspeed)
#   2. position-method throughput ratio at 8K, Qwen2-VL-2B shape (benchmarks/rope_throughput.py)
#   3. training tokens/s and MFU at 8K and 32K, 2B shape (benchmarks/training.py)
#   4. longest trainable length, ZeRO-3 offload + activation checkpointing, by bisection
# Each section runs under its own timeout (30 + 90 + 120 + 240 s = 8 min, plus model builds
# inside them), so the whole suite cannot run past 9 minutes; a section that times out or
# fails is reported as such and the others still run. Results: markdown at --out
# (default benchmarks/gpu_suite.md) with the machine, the command and each section's seconds.
#
#   bash benchmarks/gpu_suite.sh                 # on the GPU host, from the repo root
#   bash benchmarks/gpu_suite.sh --smoke --out /tmp/gpu_suite.md   # CPU, tiny shape (tests run this)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
MODE=gpu
OUT=benchmarks/gpu_suite.md
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) MODE=smoke ;;
    --out) OUT="$2"; shift ;;
    *) echo "gpu_suite: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export DS_BUILD_OPS="${DS_BUILD_OPS:-0}" TOKENIZERS_PARALLELISM=false

if [ "$MODE" = smoke ]; then
  T_ENV=60 T_ROPE=180 T_TRAIN=180 T_BISECT=240
  ROPE=(--hidden-size 64 --layers 2 --heads 4 --mrope-section 2,3,3 --seq-len 256 --images 2 --steps 1 --rounds 1 --device cpu --dtype float32)
  TRAIN=(--shape tiny --device cpu --seq 256,512 --steps 1 --warmup 0)
  BISECT=(--shape tiny --device cpu --mode torch --bisect 256,1024 --granularity 256 --budget-s 120 --try-timeout-s 60 --steps 1 --warmup 0)
else
  T_ENV=30 T_ROPE=90 T_TRAIN=120 T_BISECT=240
  # Qwen2-VL-2B's text shape (head_dim 128, mrope_section 16,24,24), 8K tokens with 8 images
  ROPE=(--hidden-size 1536 --intermediate-size 8960 --layers 28 --heads 12 --kv-heads 2 --mrope-section 16,24,24
        --seq-len 8192 --images 8 --steps 3 --rounds 2 --device cuda --dtype bfloat16)
  TRAIN=(--shape 2b --device cuda --seq 8192,32768 --steps 3 --warmup 1)
  BISECT=(--shape 2b --device cuda --mode zero3_offload --bisect 65536,262144 --granularity 16384 --budget-s 200
          --try-timeout-s 110 --steps 1 --warmup 0)
fi

run() {  # name timeout command...: stdout to $WORK/name.jsonl, status to $WORK/name.status
  local name="$1" limit="$2"; shift 2
  local started=$SECONDS
  echo "gpu_suite: $name (at most ${limit} s)" >&2
  timeout "$limit" "$@" >"$WORK/$name.jsonl" 2>"$WORK/$name.err"
  local rc=$?
  echo "{\"section\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - started)), \"limit\": $limit}" >"$WORK/$name.status"
}

SUITE_STARTED=$SECONDS
run environment "$T_ENV" "$PY" -m benchmarks.gpu_suite --environment
run rope_throughput "$T_ROPE" "$PY" -m benchmarks.rope_throughput "${ROPE[@]}"
run training "$T_TRAIN" "$PY" -m benchmarks.training "${TRAIN[@]}"
run longest_trainable "$T_BISECT" "$PY" -m benchmarks.training "${BISECT[@]}"
CMD="bash benchmarks/gpu_suite.sh"
[ "$MODE" = smoke ] && CMD="$CMD --smoke"
"$PY" -m benchmarks.gpu_suite --report "$WORK" --out "$OUT" --mode "$MODE" --seconds $((SECONDS - SUITE_STARTED)) --command "$CMD"

#!/usr/bin/env bash
# Every baseline / Steps pair on one GPU, bfloat16 autocast: the four image pairs (224x224) and the language-model
# pair, eager and torch.compile (inductor) in the same alternating rounds, inference and training, batch sizes 64 and
# 256, with warm-up (compilation) time and peak memory. A cell that runs out of memory is recorded as such; cells
# that would start after the time budget are recorded as skipped, so the whole script ends within about 8 minutes
# on one H100-class GPU. Writes benchmarks/results/gpu_cls.{csv,md} and gpu_lm.{csv,md}.
#
#   bash benchmarks/gpu.sh                         # the GPU run
#   BUDGET=1500 bash benchmarks/gpu.sh             # more time: fewer (or no) skipped cells
#   TINY=1 bash benchmarks/gpu.sh                  # a check of the script on a CPU: tiny models, batch 2,
#                                                  # aot_eager compilation; writes gpu_tiny_* files
# Other settings: OUT (results folder), BATCHES, RUNS, ITERS, WARMUP, CLS_PAIRS, LM_PAIRS, LM_KWARGS, BACKEND (TINY
# only), STEPSNET (the command, default `stepsnet`), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
BUDGET=${BUDGET:-420}   # seconds of measurement; start-up, the last cell's overrun and the merge fit in the rest
OUT=${OUT:-benchmarks/results}
STEPSNET=${STEPSNET:-stepsnet}
PYTHON=${PYTHON:-python}
if [ "${TINY:-0}" = 1 ]; then
  DEVICE=cpu; BACKEND=${BACKEND:-aot_eager}; PREFIX=gpu_tiny; IMG=64; ANY=--any-pair
  BATCHES=${BATCHES:-2}; RUNS=${RUNS:-2}; ITERS=${ITERS:-1}; WARMUP=${WARMUP:-1}
  CLS_PAIRS=${CLS_PAIRS:-"test_resnet,test_steps_resnet_bottleneck test_vit,test_steps_vit \
test_convnext,test_steps_convnext test_vit,test_steps_swin"}
  LM_PAIRS=${LM_PAIRS:-gpt_tiny,steps_gpt_tiny}
  EXTRA=(--threads 1)
else
  DEVICE=cuda; BACKEND=inductor; PREFIX=gpu; IMG=224; ANY=--no-any-pair
  BATCHES=${BATCHES:-"64 256"}; RUNS=${RUNS:-5}; ITERS=${ITERS:-10}; WARMUP=${WARMUP:-3}
  CLS_PAIRS=${CLS_PAIRS:-"resnet50,steps_resnet50 deit_small_patch16_224,steps_deit_small_patch16_224 \
swin_tiny_patch4_window7_224,steps_swin_tiny_patch4_window7_224 convnext_tiny,steps_convnext_tiny"}
  LM_PAIRS=${LM_PAIRS:-gpt_small,steps_gpt_small}
  EXTRA=()
fi
LM_KWARGS=${LM_KWARGS:-}
mkdir -p "$OUT"

left() { echo $((start + BUDGET - $(date +%s))); }

# measure TASK SHARE_PERCENT PAIRS...: one `stepsnet benchmark` process for one task, given SHARE_PERCENT of the
# time left (its cells stop starting then; `timeout` is the backstop). The CSV is rewritten after every pair, so
# a process stopped by the backstop keeps what it finished.
measure() {
  local task=$1 share=$2; shift 2
  local budget=$(( $(left) * share / 100 ))
  local args=()
  for p in "$@"; do args+=(--pair "$p"); done
  if [ "$task" = lm ] && [ -n "$LM_KWARGS" ]; then
    # shellcheck disable=SC2206
    args+=(--model-kwargs $LM_KWARGS)
  else
    [ "$task" = cls ] && args+=(--img-size "$IMG")
  fi
  echo "== $(date +%T) $task: ${budget}s of the budget for $* =="
  if [ "$budget" -le 0 ]; then
    echo "no time left for $task"
    return 0
  fi
  # shellcheck disable=SC2086
  timeout -k 10 $((budget + 120)) $STEPSNET benchmark --task "$task" "${args[@]}" "$ANY" --device "$DEVICE" \
    --dtype bfloat16 --batch-size $BATCHES --compile both --compile-backend "$BACKEND" --mode infer train \
    --runs "$RUNS" --iters "$ITERS" --warmup "$WARMUP" --time-budget "$budget" --csv "$OUT/${PREFIX}_$task.csv" \
    "${EXTRA[@]}" || echo "$task ended with status $? (finished cells are in $OUT/${PREFIX}_$task.csv)"
}

# shellcheck disable=SC2086
measure lm 25 $LM_PAIRS
# shellcheck disable=SC2086
measure cls 100 $CLS_PAIRS

for task in lm cls; do
  "$PYTHON" benchmarks/merge_results.py "$OUT/${PREFIX}_$task" "$OUT/${PREFIX}_$task.csv"
done
echo "done in $(( $(date +%s) - start ))s"

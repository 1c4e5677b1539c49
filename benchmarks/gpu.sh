#!/usr/bin/env bash
# Every baseline / Steps pair on one GPU, bfloat16 autocast: the four image pairs (224x224) and the language-model
# pair, eager and torch.compile (inductor), inference and training, batch sizes 64 and 256, with warm-up
# (compilation) time and peak memory. First every cell eager (cheap), then every cell compiled; a cell that runs out
# of memory is recorded as such, and cells that would start after the time budget are recorded as skipped, so the
# whole script ends within about 8 minutes on one H100-class GPU. Writes benchmarks/results/gpu_cls.{csv,md} and
# gpu_lm.{csv,md} (each with the eager and the compiled rows).
#
#   bash benchmarks/gpu.sh                         # the GPU run (regional compilation, see below)
#   COMPILE_SCOPE=model BUDGET=1800 bash benchmarks/gpu.sh   # whole-model compilation, as training with compile
#   TINY=1 bash benchmarks/gpu.sh                  # a check of the script on a CPU: tiny models, batch 2,
#                                                  # aot_eager compilation; writes gpu_tiny_* files
# COMPILE_SCOPE: `blocks` (default here) compiles each residual block, so blocks of one class and width share one
# compiled graph and a deep model compiles in a fraction of the time of `model` (the whole module, what
# `compile: true` does in training), which would not fit every cell into 8 minutes.
# Other settings: OUT (results folder), BUDGET (seconds of measurement), BATCHES, RUNS, ITERS, WARMUP, CLS_PAIRS,
# LM_PAIRS, LM_KWARGS, BACKEND (TINY only), STEPSNET (the command, default `stepsnet`), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
BUDGET=${BUDGET:-420}   # seconds of measurement; start-up, the last cell's overrun and the merge fit in the rest
OUT=${OUT:-benchmarks/results}
STEPSNET=${STEPSNET:-stepsnet}
PYTHON=${PYTHON:-python}
COMPILE_SCOPE=${COMPILE_SCOPE:-blocks}
if [ "${TINY:-0}" = 1 ]; then
  DEVICE=cpu; BACKEND=${BACKEND:-aot_eager}; PREFIX=gpu_tiny; IMG=64; ANY=--any-pair
  BATCHES=${BATCHES:-2}; RUNS=${RUNS:-2}; ITERS=${ITERS:-1}; WARMUP=${WARMUP:-1}
  CLS_PAIRS=${CLS_PAIRS:-"test_resnet,test_steps_resnet test_vit,test_steps_vit \
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

# measure TASK COMPILE SHARE_PERCENT PAIRS...: one `stepsnet benchmark` process for one task, eager (COMPILE=off)
# or compiled (on), given SHARE_PERCENT of the time left (its cells stop starting then; `timeout` is the
# backstop). The CSV is rewritten after every pair, so a process stopped by the backstop keeps what it finished.
measure() {
  local task=$1 compile=$2 share=$3; shift 3
  local budget=$(( $(left) * share / 100 ))
  local csv="$OUT/${PREFIX}_${task}_$compile.csv"
  local args=()
  for p in "$@"; do args+=(--pair "$p"); done
  if [ "$task" = lm ] && [ -n "$LM_KWARGS" ]; then
    # shellcheck disable=SC2206
    args+=(--model-kwargs $LM_KWARGS)
  else
    [ "$task" = cls ] && args+=(--img-size "$IMG")
  fi
  # how to compile is said only where something compiles (the benchmark refuses it with --compile off)
  [ "$compile" != off ] && args+=(--compile-backend "$BACKEND" --compile-scope "$COMPILE_SCOPE")
  rm -f "$csv"
  echo "== $(date +%T) $task, compile $compile: ${budget}s of the budget for $* =="
  if [ "$budget" -le 0 ]; then
    echo "no time left for $task, compile $compile"
    return 0
  fi
  # shellcheck disable=SC2086
  timeout -k 10 $((budget + 120)) $STEPSNET benchmark --task "$task" "${args[@]}" "$ANY" --device "$DEVICE" \
    --dtype bfloat16 --batch-size $BATCHES --compile "$compile" \
    --mode infer train --runs "$RUNS" --iters "$ITERS" --warmup "$WARMUP" \
    --time-budget "$budget" --csv "$csv" "${EXTRA[@]}" || echo "$task ended with status $? (finished cells are in $csv)"
}

# shellcheck disable=SC2086
measure lm off 10 $LM_PAIRS
# shellcheck disable=SC2086
measure cls off 25 $CLS_PAIRS
# shellcheck disable=SC2086
measure lm on 25 $LM_PAIRS
# shellcheck disable=SC2086
measure cls on 100 $CLS_PAIRS

for task in lm cls; do
  "$PYTHON" benchmarks/merge_results.py "$OUT/${PREFIX}_$task" "$OUT/${PREFIX}_${task}_off.csv" \
    "$OUT/${PREFIX}_${task}_on.csv"
done
echo "done in $(( $(date +%s) - start ))s"

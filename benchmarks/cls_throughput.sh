#!/usr/bin/env bash
# Throughput and peak memory of each Steps classifier against its timm baseline (224x224), written to
# benchmarks/results/cls_<device>_<dtype>.csv and .png. Usage:
#   bash benchmarks/cls_throughput.sh                 # CPU, float32, batch 8
#   DEVICE=cuda DTYPE=bfloat16 BATCH=128 RUNS=10 ITERS=10 bash benchmarks/cls_throughput.sh
# Extra arguments go to `stepsnet benchmark` (e.g. --channels-last, --threads 2, --mode infer).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cpu}
DTYPE=${DTYPE:-float32}
BATCH=${BATCH:-8}
RUNS=${RUNS:-7}
ITERS=${ITERS:-2}
PAIRS=${PAIRS:-"resnet50,steps_resnet50 deit_small_patch16_224,steps_deit_small_patch16_224 \
swin_tiny_patch4_window7_224,steps_swin_tiny_patch4_window7_224 convnext_tiny,steps_convnext_tiny"}
STEPSNET=${STEPSNET:-stepsnet}
args=()
for p in $PAIRS; do args+=(--pair "$p"); done
out=benchmarks/results/cls_${DEVICE%%:*}_${DTYPE}
"$STEPSNET" benchmark "${args[@]}" --device "$DEVICE" --dtype "$DTYPE" --batch-size "$BATCH" --img-size 224 \
  --runs "$RUNS" --iters "$ITERS" --warmup 2 --csv "$out.csv" --png "$out.png" "$@" | tee "$out.md"

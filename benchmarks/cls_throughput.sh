#!/usr/bin/env bash
# Throughput and peak memory of each Steps classifier against its timm baseline (224x224). Each pair is measured
# by its own `stepsnet benchmark` call (so finished pairs are kept if a later one is interrupted), then merged
# into benchmarks/results/cls_<device>_<dtype>[_TAG].csv / .md / .png. Usage:
#   bash benchmarks/cls_throughput.sh                             # CPU, float32, batch 8
#   bash benchmarks/cls_throughput.sh --threads 1                 # extra arguments go to `stepsnet benchmark`
#   TAG=channels_last bash benchmarks/cls_throughput.sh --channels-last   # TAG names the output files
#   DEVICE=cuda DTYPE=bfloat16 BATCH=128 RUNS=10 ITERS=10 bash benchmarks/cls_throughput.sh
# The eager numbers in docs/benchmarks.md: RUNS=5 ITERS=1 bash benchmarks/cls_throughput.sh --threads 1 --clock process
# The compiled ones (eager re-measured in the same rounds):
#   RUNS=5 ITERS=1 TAG=compiled bash benchmarks/cls_throughput.sh --threads 1 --clock process --compile both
# Compilation starts from an empty inductor cache (a fresh TORCHINDUCTOR_CACHE_DIR unless one is set), so the
# warm-up times are those of a first compilation.
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
PYTHON=${PYTHON:-python}
TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d)}
export TORCHINDUCTOR_CACHE_DIR
out=benchmarks/results/cls_${DEVICE%%:*}_${DTYPE}${TAG:+_$TAG}
mkdir -p "$out.parts"
parts=()
for p in $PAIRS; do
  part="$out.parts/${p%%,*}.csv"
  # shellcheck disable=SC2086
  $STEPSNET benchmark --pair "$p" --device "$DEVICE" --dtype "$DTYPE" --batch-size "$BATCH" --img-size 224 \
    --runs "$RUNS" --iters "$ITERS" --warmup 2 --csv "$part" "$@"
  parts+=("$part")
done
"$PYTHON" benchmarks/merge_results.py "$out" "${parts[@]}" --png

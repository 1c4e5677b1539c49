#!/usr/bin/env bash
# Training and inference throughput (tokens/s) of the CPU language-model pair, gpt_cpu vs steps_gpt_cpu (the
# byte-level default of `stepsnet compare`), at its own 4 layers and at 16 layers, eager and compiled in the same
# alternating rounds; merged into benchmarks/results/lm_<device>_float32[_TAG].csv / .md. Usage:
#   bash benchmarks/lm_throughput.sh --threads 1 --clock process     # extra arguments go to `stepsnet benchmark`
#   LAYERS="4 8 16" BATCH=32 RUNS=7 ITERS=2 bash benchmarks/lm_throughput.sh
# The numbers in docs/benchmarks.md: RUNS=5 ITERS=2 bash benchmarks/lm_throughput.sh --threads 1 --clock process
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cpu}
BATCH=${BATCH:-32}
RUNS=${RUNS:-5}
ITERS=${ITERS:-2}
LAYERS=${LAYERS:-"4 16"}
PAIR=${PAIR:-gpt_cpu,steps_gpt_cpu}
STEPSNET=${STEPSNET:-stepsnet}
PYTHON=${PYTHON:-python}
TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d)}
export TORCHINDUCTOR_CACHE_DIR
out=benchmarks/results/lm_${DEVICE%%:*}_float32${TAG:+_$TAG}
mkdir -p "$out.parts"
parts=()
for n in $LAYERS; do
  part="$out.parts/${PAIR%%,*}_${n}layers.csv"
  # shellcheck disable=SC2086
  $STEPSNET benchmark --task lm --pair "$PAIR" --model-kwargs "n_layer=$n" --device "$DEVICE" --batch-size "$BATCH" \
    --runs "$RUNS" --iters "$ITERS" --warmup 2 --compile both --csv "$part" "$@"
  parts+=("$part")
done
"$PYTHON" benchmarks/merge_results.py "$out" "${parts[@]}"

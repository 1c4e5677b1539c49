#!/usr/bin/env bash
# The dry run of every paper recipe on one GPU (benchmarks/gpu_recipes.py): each recipe at its own per-GPU batch,
# input size and bfloat16 autocast on generated data in its data set's layout, eager then torch.compile, with step
# time, peak memory and projected GPU-hours per recipe in benchmarks/results/gpu_recipes.{json,md}. Runs that would
# start after BUDGET seconds are recorded as skipped, so the script ends within about 8 minutes on one H100-class GPU.
#
#   bash benchmarks/gpu_recipes.sh               # on a GPU
#   TINY=1 bash benchmarks/gpu_recipes.sh        # a check of the script on a CPU: small inputs, one step, eager
#
# Settings: BUDGET (seconds, default 420), OUT (results folder), STEPS, COMPILE (both, off, on), RECIPES (files,
# space-separated; default every paper recipe), THREADS (CPU only), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
BUDGET=${BUDGET:-420}
args=(--budget "$BUDGET" --out "${OUT:-benchmarks/results}")
if [ "${TINY:-0}" = 1 ]; then
  args+=(--tiny --steps "${STEPS:-1}" --compile "${COMPILE:-off}")
else
  args+=(--steps "${STEPS:-10}" --compile "${COMPILE:-both}")
fi
if [ -n "${RECIPES:-}" ]; then
  # shellcheck disable=SC2206
  args+=(--recipes $RECIPES)
fi
[ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
# the backstop: the budget, the last run's overrun and the start-up
exec timeout $((${BUDGET%.*} + 60)) "$PYTHON" benchmarks/gpu_recipes.py "${args[@]}"

#!/usr/bin/env bash
# One prepared GPU measurement run (CUDA machine, < 6 minutes on an H100): training-step throughput of both
# full-size models at 320 px with AMP + channels_last, a few baselines, and the GPU input pipeline on synthetic
# data. Every result is one JSON line (plus "label" and "wall_s") appended to the results file.
#
#   bash benchmarks/gpu_suite.sh [RESULTS]          # default gpu_results.jsonl
#
# Environment: PYTHON (default python), SUITE_DATA (default /tmp/gs), SUITE_BUDGET_S (default 330: later steps
# are skipped rather than overrun), LOADER_ARGS (default "--data $SUITE_DATA"), SUITE_DRY_RUN=1 (tiny models,
# 64 px, 60 images, CPU loader: checks the plumbing on a machine without a GPU).
# A failed or timed-out step writes {"label", "error", "rc"} and the suite goes on; exit status 1 if any failed.
set -uo pipefail

OUT=$(realpath -m "${1:-gpu_results.jsonl}")
cd "$(dirname "$0")/.." || exit 2  # `python -m chexvision` from the repository root
PY=${PYTHON:-python}
DATA=${SUITE_DATA:-/tmp/gs}
BUDGET=${SUITE_BUDGET_S:-330}
DRY=${SUITE_DRY_RUN:-0}
LOADER_ARGS=${LOADER_ARGS:---data $DATA}
START=$(date +%s)
FAILED=0
: >"$OUT"

if [[ $DRY == 1 ]]; then
  SIZE=64; BIG=4; SMALL=2; TRAIN_EXTRA=(--tiny --steps 2 --warmup 1); LOADER_MODE=cpu; IMAGES=60
else
  SIZE=320; BIG=128; SMALL=64; TRAIN_EXTRA=(--steps 30 --warmup 10); LOADER_MODE=gpu; IMAGES=3000
fi

# record LABEL WALL_S RC: tag each JSON line on stdin and append it; a failure (RC != 0) becomes an error line,
# a success without JSON (data synth) an {"ok": true} line.
record() {
  "$PY" -c '
import json, sys
label, wall, rc, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tag = {"label": label, "wall_s": wall}
rows = [json.loads(l) for l in sys.stdin.read().splitlines() if l.lstrip().startswith(("{", "["))]
if rc != 0:
    rows = [{"error": "failed, timed out or skipped (see stderr)", "rc": rc}]
elif not rows:
    rows = [{"ok": True}]
with open(out, "a") as f:
    for row in rows:
        f.write(json.dumps({**tag, **row} if isinstance(row, dict) else {**tag, "result": row}) + "\n")
sys.exit(1 if rc != 0 else 0)
' "$1" "$2" "$3" "$OUT"
}

# step LABEL LIMIT_S CMD...: run CMD within min(LIMIT_S, what is left of the budget), record its JSON.
step() {
  local label=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if ((left < 15)); then
    echo "skip $label: suite budget spent" >&2
    echo '' | record "$label" 0 124 || FAILED=1
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $label (limit ${limit}s)" >&2
  local t0=$(date +%s) output rc
  output=$(timeout "$limit" "$@")
  rc=$?
  printf '%s\n' "$output" | record "$label" "$(($(date +%s) - t0))" "$rc" || FAILED=1
}

step env 60 "$PY" -c '
import json, platform, torch
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "gpus": gpus,
                  "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported()}))'

# The numbers the design asks for first, then the input pipeline, then baselines while the budget lasts.
for model in densenet seresnet; do
  step "$model-amp-cl-b$BIG" 120 "$PY" -m chexvision bench train --model "$model" --size "$SIZE" --batch "$BIG" \
    --amp --channels-last "${TRAIN_EXTRA[@]}" --json
done
step synth 150 "$PY" -m chexvision data synth --out "$DATA" --images "$IMAGES" --size "$SIZE" --seed 0
# shellcheck disable=SC2086  # LOADER_ARGS is a word list on purpose
step "loader-$LOADER_MODE" 120 "$PY" -m chexvision bench loader --mode "$LOADER_MODE" $LOADER_ARGS --json
step "densenet-amp-b$BIG" 90 "$PY" -m chexvision bench train --model densenet --size "$SIZE" --batch "$BIG" \
  --amp "${TRAIN_EXTRA[@]}" --json
for model in densenet seresnet; do
  step "$model-fp32-b$SMALL" 90 "$PY" -m chexvision bench train --model "$model" --size "$SIZE" --batch "$SMALL" \
    "${TRAIN_EXTRA[@]}" --json
done

echo "results: $OUT ($(wc -l <"$OUT") lines, $(($(date +%s) - START)) s)" >&2
exit "$FAILED"

#!/usr/bin/env bash
# One prepared GPU measurement run (one CUDA machine; about 6-8 minutes on an H100): training-step throughput of
# DenseNet-121 and SE-ResNet at 320 px with AMP + channels_last, eager vs torch.compile, then the loader's GPU path
# (CPU share per core, and with workers) on synthetic 320 px shards, then a few baselines while the budget lasts.
# Every result is one JSON line (plus "label" and "wall_s") appended to the results file; at the end a Markdown
# block for BENCHMARKS.md (card, torch, batch, dtype, images/s, does the loader keep up) goes to stdout and
# RESULTS.md.
#
#   bash benchmarks/gpu_suite.sh [RESULTS]          # default gpu_results.jsonl
#
# Environment: PYTHON (default python), SUITE_DATA (default /tmp/gs), SUITE_BUDGET_S (default 480: later steps are
# skipped rather than overrun), SUITE_WORKERS (loader workers for the "keeping up" figure; default: cores - 2, at
# most 12), LOADER_ARGS (default "--data $SUITE_DATA"), SUITE_DRY_RUN=1 (tiny models, 64 px, 60 images, CPU:
# checks the plumbing on a machine without a GPU; the compiled steps are skipped there unless SUITE_DRY_COMPILE=1,
# as Inductor's C++ build of even the tiny models takes minutes on a small CPU box).
# A failed or timed-out step writes {"label", "error", "rc"} and the suite goes on; exit status 1 if any failed.
set -euo pipefail

OUT=$(realpath -m "${1:-gpu_results.jsonl}")
cd "$(dirname "$0")/.."  # `python -m chexvision` from the repository root
PY=${PYTHON:-python}
DATA=${SUITE_DATA:-/tmp/gs}
BUDGET=${SUITE_BUDGET_S:-480}
DRY=${SUITE_DRY_RUN:-0}
LOADER_ARGS=${LOADER_ARGS:---data $DATA}
CORES=$(nproc 2>/dev/null || echo 4)
WORKERS=${SUITE_WORKERS:-$((CORES > 14 ? 12 : (CORES > 3 ? CORES - 2 : 1)))}
START=$(date +%s)
FAILED=0
: >"$OUT"

COMPILE=1
if [[ $DRY == 1 ]]; then
  COMPILE=${SUITE_DRY_COMPILE:-0}
  SIZE=64; BIG=4; SMALL=2; IMAGES=60; WORKERS=1; LOADER_MODE=cpu
  TRAIN_EXTRA=(--tiny --steps 2 --warmup 1 --device cpu); LOADER_EXTRA=(--batches 2 --batch-size 8 --rounds 1)
else
  SIZE=320; BIG=128; SMALL=64; IMAGES=3000; LOADER_MODE=gpu
  TRAIN_EXTRA=(--steps 30 --warmup 10); LOADER_EXTRA=(--batches 30 --batch-size 128 --rounds 2)
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
    return 0
  fi
  if ((limit > left)); then limit=$left; fi
  echo "== $label (limit ${limit}s)" >&2
  local t0 output rc=0
  t0=$(date +%s)
  output=$(timeout --kill-after=10 "$limit" "$@") || rc=$?
  printf '%s\n' "$output" | record "$label" "$(($(date +%s) - t0))" "$rc" || FAILED=1
}

step env 60 "$PY" -c '
import json, os, platform, torch
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "gpus": gpus, "cpus": os.cpu_count(),
                  "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported()}))'

# The numbers the issue asks for first (eager vs compiled, AMP + channels_last), then the loader, then baselines.
for model in densenet seresnet; do
  step "$model-amp-cl-b$BIG" 120 "$PY" -m chexvision bench train --model "$model" --size "$SIZE" --batch "$BIG" \
    --amp --channels-last "${TRAIN_EXTRA[@]}" --json
  if ((COMPILE == 0)); then echo "skip $model compiled: dry run (SUITE_DRY_COMPILE=1 runs it)" >&2; continue; fi
  step "$model-amp-cl-compiled-b$BIG" 240 "$PY" -m chexvision bench train --model "$model" --size "$SIZE" \
    --batch "$BIG" --amp --channels-last --compile default "${TRAIN_EXTRA[@]}" --json
done
step synth 150 "$PY" -m chexvision data synth --out "$DATA" --images "$IMAGES" --size "$SIZE" --seed 0
# shellcheck disable=SC2086  # LOADER_ARGS is a word list on purpose
step "loader-$LOADER_MODE-w0" 120 "$PY" -m chexvision bench loader --mode "$LOADER_MODE" $LOADER_ARGS \
  --workers 0 --no-baseline --no-albumentations "${LOADER_EXTRA[@]}" --json
# shellcheck disable=SC2086
step "loader-$LOADER_MODE-w$WORKERS" 120 "$PY" -m chexvision bench loader --mode "$LOADER_MODE" $LOADER_ARGS \
  --workers "$WORKERS" --no-baseline --no-albumentations "${LOADER_EXTRA[@]}" --json
step "densenet-amp-b$BIG" 90 "$PY" -m chexvision bench train --model densenet --size "$SIZE" --batch "$BIG" \
  --amp "${TRAIN_EXTRA[@]}" --json
for model in densenet seresnet; do
  step "$model-fp32-b$SMALL" 90 "$PY" -m chexvision bench train --model "$model" --size "$SIZE" --batch "$SMALL" \
    "${TRAIN_EXTRA[@]}" --json
done

echo "results: $OUT ($(wc -l <"$OUT") lines, $(($(date +%s) - START)) s)" >&2
# The block for BENCHMARKS.md, from the JSON lines (also written next to them as RESULTS.md).
"$PY" - "$OUT" <<'PYEOF' | tee "${OUT%.jsonl}.md" || FAILED=1
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
env = next((r for r in rows if r["label"] == "env" and "torch" in r), {})
print(f"GPU: {', '.join(env.get('gpus') or ['none'])}; {env.get('cpus', '?')} CPUs; torch {env.get('torch', '?')}, "
      f"CUDA {env.get('cuda', '?')}, cuDNN {env.get('cudnn', '?')}\n")
print("| step | model | size | batch | dtype | channels_last | compiled | images/s | ms/step | peak MiB | warm-up s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
best = 0.0
for r in rows:
    if "images_per_second" in r and "model" in r:
        best = max(best, r["images_per_second"])
        print(f"| {r['label']} | {r['model']} | {r['size']} | {r['batch']} | {r['dtype']} | {r['channels_last']} "
              f"| {r.get('compiled', 'off')} | {r['images_per_second']:.0f} | {r['ms_per_step']:.1f} "
              f"| {r['peak_memory_mib']} | {r.get('warmup_seconds', '-')} |")
    elif "error" in r:
        print(f"| {r['label']} | error (rc {r.get('rc')}) | | | | | | | | | |")
print("\n| loader step | mode | workers | images/s | images/CPU-s (workers 0) | GPU augment | keeps up with the "
      "fastest step above |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if r["label"].startswith("loader") and "images_per_second" in r:
        keeps = "yes" if r["images_per_second"] >= best else f"no ({r['images_per_second'] / best:.0%})" if best else "-"
        print(f"| {r['label']} | {r['mode']} | {r['workers']} | {r['images_per_second']:.0f} "
              f"| {r['images_per_cpu_second'] or '-'} | {r['gpu_augment']} | {keeps} |")
PYEOF
exit "$FAILED"

#!/usr/bin/env bash
# The quick start's main job on the embedded default (no account, no network): dispatch a smoke training run of
# DenseNet to the local backend (synthetic data made inside the kernel), watch it, fetch it (publishing to the
# folder that stands in for the Hub), score it on a fresh synthetic test set and predict one image with it.
# Run it through `make demo`, which installs everything first.
set -euo pipefail

MODEL=${MODEL:-densenet}
HOME_DIR=${CHEXVISION_HOME:-$HOME/.chexvision}
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say chexvision dispatch train --model "$MODEL" --backend local --preset smoke
RUN_ID=$(chexvision dispatch train --model "$MODEL" --backend local --preset smoke)

say chexvision status "$RUN_ID" --watch   # a line per epoch: loss, val AUC, ETA
chexvision status "$RUN_ID" --watch || { chexvision logs "$RUN_ID" | tail -30; exit 1; }

say chexvision status
chexvision status

say chexvision fetch --run "$RUN_ID"
RUN_DIR=$(chexvision fetch --run "$RUN_ID")

TEST_DATA="$HOME_DIR/demo/synthetic-test"
say chexvision data synth --out "$TEST_DATA" --images 600 --size 64 --seed 7
chexvision data synth --out "$TEST_DATA" --images 600 --size 64 --seed 7 >/dev/null

say chexvision evaluate "$RUN_DIR" --data "$TEST_DATA" --split test --bootstrap 200 --out "$RUN_DIR/eval"
chexvision evaluate "$RUN_DIR" --data "$TEST_DATA" --split test --bootstrap 200 --out "$RUN_DIR/eval"

# One test image as a plain PNG file, to predict on as a user would.
python - "$TEST_DATA" "$RUN_DIR/eval/example.png" <<'PY'
import sys
from pathlib import Path

import cv2

from chexvision.data.shards import ShardIndex

index = ShardIndex.open(Path(sys.argv[1]))
cv2.imwrite(sys.argv[2], index.read_image(0))
print(f"example image {index.filenames[0]}: {index.labels[0]}")
PY

say chexvision predict "$RUN_DIR/eval/example.png" --model "chexvision-$MODEL"   # found in $CHEXVISION_HOME/hub
chexvision predict "$RUN_DIR/eval/example.png" --model "chexvision-$MODEL"

printf '\nRun directory: %s\nEvaluation:    %s\nModel card:    %s\n' "$RUN_DIR" "$RUN_DIR/eval/report.html" \
  "$HOME_DIR/hub/chexvision-$MODEL/README.md"

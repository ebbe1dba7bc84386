#!/usr/bin/env bash
# The quick start's main job on the embedded default (no account, no network): the smoke study — SE-ResNet from
# scratch vs DenseNet, one seed each, on synthetic X-rays, trained one after the other by the local backend (the
# same kernel Kaggle runs), then fetched, evaluated on the test split, published to the folder that stands in for
# the Hub with their test results in the model cards, and compared in the head-to-head report. Then the two
# published models predict one real NIH X-ray as an ensemble (and warn that they were trained on synthetic data).
# Run it through `make demo`, which installs everything first.
set -euo pipefail

HOME_DIR=${CHEXVISION_HOME:-$HOME/.chexvision}
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say chexvision study run studies/smoke.toml --wait   # a line per run: epoch, loss, val AUC, ETA; then the report
chexvision study run studies/smoke.toml --wait

say chexvision study status smoke
chexvision study status smoke

IMAGE=tests/fixtures/nih-sample/00000100_000.png   # a real NIH X-ray (tests/fixtures/nih-sample/README.md)
say chexvision predict "$IMAGE" --model chexvision-smoke-seresnet --model chexvision-smoke-densenet
chexvision predict "$IMAGE" --model chexvision-smoke-seresnet --model chexvision-smoke-densenet

printf '\nHead-to-head report: %s\nModel cards:         %s\n' "$HOME_DIR/studies/smoke/report/report.html" \
  "$HOME_DIR/hub/chexvision-smoke-{seresnet,densenet}/README.md"

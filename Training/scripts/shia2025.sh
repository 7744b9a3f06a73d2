#!/usr/bin/env bash
# Shia 2025: five-fold cross-validation by patient, ResNet-50/101 vs EfficientNet-B0..B4;
# out-of-fold predictions per architecture go to RUN_DIR/<arch>/oof_predictions.csv.
#   Training/scripts/shia2025.sh MANIFEST RUN_DIR [more options]
set -euo pipefail
manifest=${1:?manifest}; run=${2:?run folder}; shift 2
bin=$(dirname "$0")/../../.venv/bin
"$bin/microcalcai" train --recipe shia2025 --data "$manifest" --out "$run" "$@"

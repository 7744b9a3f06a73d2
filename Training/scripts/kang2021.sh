#!/usr/bin/env bash
# Kang et al. 2021: five DCNNs fine-tuned from ImageNet, then their mean-probability ensemble.
#   Training/scripts/kang2021.sh MANIFEST RUN_DIR [more `microcalcai train` options]
# ImageNet weights come from the timm hub (online) unless --weights FILE is given.
set -euo pipefail
manifest=${1:?give the manifest.csv of the ROIs}; run=${2:?give a run folder}; shift 2
bin=$(dirname "$0")/../../.venv/bin
"$bin/microcalcai" train --recipe kang2021 --data "$manifest" --out "$run" "$@"
"$bin/microcalcai" ensemble --member "$run" --combine mean --out "$run/ensemble" --overwrite
"$bin/microcalcai" predict --model "$run/ensemble" --data "$manifest" --out "$run/ensemble_predictions.csv"

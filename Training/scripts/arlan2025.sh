#!/usr/bin/env bash
# Arlan et al. 2025: double transfer learning (ImageNet -> intermediate mammography set -> target).
#   Training/scripts/arlan2025.sh TARGET_MANIFEST INTERMEDIATE_MANIFEST RUN_DIR [more options]
set -euo pipefail
target=${1:?target manifest}; intermediate=${2:?intermediate manifest}; run=${3:?run folder}; shift 3
bin=$(dirname "$0")/../../.venv/bin
"$bin/microcalcai" train --recipe arlan2025 --data "$target" --stage-data "intermediate=$intermediate" \
    --out "$run" "$@"

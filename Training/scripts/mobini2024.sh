#!/usr/bin/env bash
# Mobini et al. 2024: eleven CNNs on whole mammograms (breast arterial calcification vs none).
#   Training/scripts/mobini2024.sh MANIFEST RUN_DIR [more options]
set -euo pipefail
manifest=${1:?manifest of whole images}; run=${2:?run folder}; shift 2
bin=$(dirname "$0")/../../.venv/bin
"$bin/microcalcai" train --recipe mobini2024 --data "$manifest" --out "$run" "$@"

#!/usr/bin/env bash
# The whole pipeline on a synthetic phantom in a few minutes on a laptop CPU, no downloads:
# phantom -> fine-tune EfficientNet-Lite0 from the offline ImageNet weights -> predictions.
#   Training/scripts/phantom_demo.sh [OUT_DIR]
set -euo pipefail
out=${1:-phantom-demo}
bin=$(dirname "$0")/../../.venv/bin
"$bin/microcalcai" synth --out "$out/phantom" --patients 60 --seed 0 --roi-size 128 --spacing-mm 0.1 --spot \
    --morphologies punctate,round,amorphous,coarse_heterogeneous,fine_pleomorphic,fine_linear_branching
"$bin/microcalcai" train --recipe kang2021 --data "$out/phantom/manifest.csv" --out "$out/run" \
    --arch tf_efficientnet_lite0 --epochs 10 --set input_size=96 --set roi_size=128 --set findings=null
# training wrote the held-out ROIs' predictions to $out/run/tf_efficientnet_lite0/predictions_test.csv;
# the saved model can score any manifest:
"$bin/microcalcai" predict --model "$out/run/tf_efficientnet_lite0/model" --data "$out/phantom/manifest.csv" \
    --out "$out/predictions.csv"

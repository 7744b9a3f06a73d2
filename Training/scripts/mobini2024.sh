#!/usr/bin/env bash
# Mobini et al. 2024: CNNs on whole four-view mammograms, breast arterial calcification (BAC) vs none,
# evaluated per image and per exam (AUC, PR-AUC, sensitivity at 90% specificity, F1, MCC, with
# patient-clustered bootstrap CIs).
#   Training/scripts/mobini2024.sh OUT_DIR [MANIFEST] [more train options]
# MANIFEST: whole-image rows with exam_id and bac columns (default: phantom exams made here with
# `microcalcai synth-exams`, at the study's prevalence of 9.7% of breasts).
#
# Method: TASK=tiles (the default) trains each network on tiles of 25.6 mm cut at the image's own
# pixel size and labelled from the phantom's vessel masks; a view's score is its highest tile, an
# exam's the highest of its four views (microcalcai.models.tiles, docs/models.md). TASK=whole_image
# is the study's own protocol (the whole view padded to a square and shrunk to the network input).
# Why tiles: a whole 240 x 180 mm view shrunk to 256 px is 0.9 mm per pixel, where the 0.1-0.2 mm
# calcified wall of a 1-2 mm artery is at most one pixel; tiles at 0.4 mm keep the vessel 3-5 pixels
# wide. Measured on the CPU subset below (90 test exams, 11 with BAC): tiles exam AUC 1.000 (the
# phantom's Bayes-optimal AUC), the whole view at 256 px 0.925 (0.77-1.00), at 10x less time per
# exam (benchmarks/RESULTS.md). Earlier, on 40 exams (80 training views), the whole view reached
# 0.52 on its 10 test exams (128 px: validation 0.45-0.62).
#
# Input size per device (tiles): CPU 64 x 64 px tiles at 0.4 mm (the network sees 0.4 mm pixels);
# GPU 128 x 128 px tiles at 0.2 mm (the same 25.6 mm field at twice the resolution). A whole view
# is scored in about 120 (0.4 mm) or 500 (0.2 mm) overlapping tiles; they are held together as
# float32 (about 2 or 33 MB a view) and go through the network one batch at a time.
# With a CUDA GPU: the recipe's eleven networks (Xception, VGG16/19, ResNet50/101/152V2, MobileNet,
# MobileNetV2, DenseNet121/169/201) on 1,500 exams at 0.2 mm (ImageNet weights from the timm hub,
# which needs the network; offline, the run stops at the first network with a message saying how
# to give weights instead).
# On a CPU, a subset that runs offline: EfficientNet-Lite0 (a MobileNetV2-style network, the one
# architecture whose ImageNet weights ship offline), 5 epochs with AdamW and a cosine decay, on 300
# exams at 0.4 mm pixels at the study's prevalence (9.7% of breasts), 30% of the women held out for
# the test: 663 CPU-s in all, 27 min on 2 shared cores (benchmarks/RESULTS.md, "BAC on four-view
# exams").
set -euo pipefail
out=${1:?output folder}; shift
manifest=""
if [[ $# -gt 0 && $1 != -* ]]; then manifest=$1; shift; fi
bin=$(dirname "$0")/../../.venv/bin
gpu=$("$bin/python" -c "import torch; print(int(torch.cuda.is_available()))")
task=${TASK:-tiles}
if [[ $gpu == 1 ]]; then
    exams=1500; spacing=0.2
    subset=(--set task="$task" --set augment.vflip=true)
    if [[ $task == tiles ]]; then subset+=(--set input_size=128); fi
else
    exams=300; spacing=0.4
    subset=(--arch tf_efficientnet_lite0 --epochs 5 --set task="$task" --set batch_size=32
            --set optimizer.name=adamw --set optimizer.lr=1e-3 --set optimizer.weight_decay=1e-4
            --set scheduler=cosine --set early_stopping.monitor=val_auc --set select_best=val_auc
            --set augment.vflip=true --set split.test=0.3)
    if [[ $task == tiles ]]; then subset+=(--set input_size=64); else subset+=(--set input_size=256); fi
fi
if [[ -z $manifest ]]; then
    [[ -f $out/exams/manifest.csv ]] || nice -n 5 "$bin/microcalcai" synth-exams --out "$out/exams" \
        --exams "$exams" --seed 2024 --spacing-mm "$spacing" --workers "$(nproc)"
    manifest=$out/exams/manifest.csv
fi
nice -n 5 "$bin/microcalcai" train --recipe mobini2024 --data "$manifest" --out "$out/run" "${subset[@]}" "$@"
# per image and per exam, every network: the held-out test exams, views aggregated by their maximum
for predictions in "$out"/run/*/predictions_test.csv; do
    arch=$(basename "$(dirname "$predictions")")
    "$bin/microcalcai" stats exams --predictions "$predictions" --manifest "$manifest" --json \
        > "$out/run/$arch/exam_metrics.json"
    echo "== $arch"
    "$bin/microcalcai" stats exams --predictions "$predictions" --manifest "$manifest"
done
# the table, the time per exam and the figure (benchmarks/RESULTS.md, docs/images/bac-exams.png)
"$bin/python" "$(dirname "$0")/../../benchmarks/bench_bac.py" --run "$out/run" --manifest "$manifest"

#!/usr/bin/env bash
# The active-learning benchmark's gpu variant on an offline GPU machine, in one command:
#
#   WHEELS=.whl RESULTS=/somewhere LIMIT_S=540 bash benchmarks/run_gpu_variant.sh
#
# installs the wheels benchmarks/gpu_wheelhouse.py made beside the machine's own Python packages,
# records the machine, measures the training loader (bench_loader.py), then runs the benchmark
# under LIMIT_S seconds. Every 20 s it logs GPU utilisation, memory and load, and archives what the
# runs wrote so far (run JSON, logs, each training's metrics.csv) into RESULTS/results.tgz: a run
# cut off by its limit still returns its records. With py-spy among the wheels (--profiler),
# PROFILE_S > 0 samples the benchmark's whole process tree for that long (speedscope JSON).
#
# AL_ARGS replaces the benchmark's arguments (default: two Lite0s from their offline ImageNet
# weights at full resolution, random against auto, 3 rounds of 60 after a cold start of 30);
# LOADER_ARGS the loader's (`none`: no loader measurement); SITE and WORK where the wheels and the
# benchmark's workspace go. A second call with the same WORK on the same machine resumes the
# benchmark where the first one's limit cut it.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
RESULTS=${RESULTS:-${OUT:-/tmp/gpu-variant-results}}
LIMIT_S=${LIMIT_S:-540}
SITE=${SITE:-/tmp/gpu-variant-site}
WORK=${WORK:-/tmp/gpu-variant}
PROFILE_S=${PROFILE_S:-0}
PYTHON=${PYTHON:-python3}
AL_ARGS=${AL_ARGS:---variant gpu --arch tf_efficientnet_lite0 tf_efficientnet_lite0 --recipe phantom \
--pool-patients 400 --test-patients 200 --val-patients 80 --cold-start 30 --batch 60 --seeds 0 \
--strategies random auto --rounds 3 --keep-servers}
LOADER_ARGS=${LOADER_ARGS:---workers 0 4 8}
started=$SECONDS
mkdir -p "$RESULTS" "$WORK"

stamp() { echo "$(date -u +%H:%M:%S) $*"; }

if compgen -G "$WHEELS/*.whl" >/dev/null; then
    stamp "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl || { stamp "install failed"; exit 1; }
fi
export PYTHONPATH="$SITE:$PWD/src:$PWD/MicrocalcAI/Logic${PYTHONPATH:+:$PYTHONPATH}"
if [ -d "$WHEELS/hub" ]; then  # ImageNet weights gpu_wheelhouse.py --imagenet downloaded
    hub=$(cd "$WHEELS/hub" && pwd)
    export HF_HUB_CACHE="$hub/huggingface" TORCH_HOME="$hub/torch"
    stamp "ImageNet weights from $WHEELS/hub"
fi
export PATH="$SITE/bin:$PATH" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

{
    stamp "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), /dev/shm $(df -h /dev/shm | awk 'NR==2 {print $2}')"
    "$PYTHON" -c 'import platform, numpy, torch, timm, monailabel
print("python", platform.python_version(), "numpy", numpy.__version__, "torch", torch.__version__,
      "timm", timm.__version__, "monailabel", monailabel.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} 2>&1 | tee "$RESULTS/machine.txt"

archive() {
    # the runs' JSON and logs, and each member training's per-epoch metrics (images a second)
    (cd "$WORK" && find . \( -path ./al/data -o -name '*.pt' -o -name '*.ts' \) -prune -o \
        \( -name '*.json' -o -name '*.log' -o -name 'metrics.csv' \) -print0 2>/dev/null |
        tar -czf "$RESULTS/results.tgz.part" --null -T - 2>/dev/null) &&
        mv "$RESULTS/results.tgz.part" "$RESULTS/results.tgz"
}
watch_machine() {
    echo "utc,gpu_percent,gpu_memory_mib,load1" >"$RESULTS/gpu-utilisation.csv"
    while true; do
        gpu=$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -d ' ')
        echo "$(date -u +%H:%M:%S),${gpu:-,},$(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS/gpu-utilisation.csv"
        archive
        sleep 20
    done
}
watch_machine &
watcher=$!
trap 'kill $watcher 2>/dev/null; archive' EXIT

if [ "$LOADER_ARGS" != none ]; then
    stamp "loader: bench_loader.py $LOADER_ARGS"
    # shellcheck disable=SC2086  # the arguments are meant to split
    timeout 120 "$PYTHON" benchmarks/bench_loader.py $LOADER_ARGS --out "$RESULTS/loader.json" \
        >"$RESULTS/loader.log" 2>&1 || stamp "loader benchmark stopped (see loader.log)"
fi

left=$((LIMIT_S - (SECONDS - started) - 15))
if [ "$left" -lt 60 ]; then
    stamp "only ${left} s of LIMIT_S=$LIMIT_S left for the benchmark: give it more"
    exit 1
fi
stamp "benchmark, ${left} s: bench_active_learning.py $AL_ARGS"
# shellcheck disable=SC2086
timeout --signal=TERM --kill-after=10 "$left" "$PYTHON" benchmarks/bench_active_learning.py $AL_ARGS \
    --out "$WORK/al" >"$WORK/al.log" 2>&1 &
benchmark=$!
if [ "$PROFILE_S" -gt 0 ] && command -v py-spy >/dev/null; then
    sleep 2
    target=$(pgrep -P "$benchmark" | head -1)
    timeout $((PROFILE_S + 5)) py-spy record --pid "${target:-$benchmark}" --subprocesses --idle --nonblocking \
        --rate 10 --duration "$PROFILE_S" --format speedscope --output "$WORK/profile.json" >"$WORK/py-spy.log" 2>&1 &
fi
wait "$benchmark"
status=$?
cp "$WORK/al.log" "$RESULTS/al.log"
grep -E "round [0-9]+/|progress|final AUC" "$WORK/al.log" | tail -20
stamp "benchmark exit $status after $((SECONDS - started)) s (124: cut at its limit; the records so far are in results.tgz)"
exit 0

"""Server benchmark: per-request overhead against the bare computation, and load.

1. One ROI infer (JSON only, and with a Grad-CAM saliency file) through the real server over
   HTTP, against the same work done in this process (read + crop + predict [+ saliency]) with
   the same model: the ratio is the server's overhead (aim: at most 1.2).
2. Load: CLIENTS concurrent clients x REQUESTS infer requests each (JSON): errors, throughput,
   p50/p95 latency.
3. Optionally (--first-start), the first start of `microcalcai serve` on a fresh workspace
   (sample studies + default models trained offline) until /info/ answers.

Usage: .venv/bin/python benchmarks/bench_server.py [--model DIR] [--repeats 30] [--clients 4]
       [--requests 50] [--first-start | --first-start-only] [--out RESULTS.json]
Without --model, a tf_efficientnet_lite0 with the packaged ImageNet weights (224 px) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def make_model(out: Path) -> Path:
    from microcalcai.models.artifact import card_for, save_model
    from microcalcai.models.registry import create_model

    module = create_model("tf_efficientnet_lite0", weights="imagenet")
    return save_model(
        module.eval(), card_for("tf_efficientnet_lite0", name="bench-lite0"), out / "bench-lite0"
    )


def make_studies(out: Path) -> tuple[Path, str, dict]:
    """One full-field phantom patient, flattened; returns the folder, an image id and its ROI."""
    from microcalcai.server.bootstrap import ensure_sample_studies

    studies = ensure_sample_studies(out / "studies", patients=1, real=False, progress=False)
    import csv

    with open(studies / "manifest.csv") as handle:
        row = next(csv.DictReader(handle))
    return (
        studies,
        Path(row["image_path"]).stem,
        {"x": float(row["roi_x"]), "y": float(row["roi_y"]), "size": int(float(row["roi_size"] or 512))},
    )


def bare(model_dir: Path, image: Path, roi: dict, saliency: bool) -> float:
    """Crop + predict (+ saliency) in this process, the image already decoded (as the server
    keeps it after the first request): the model computation the server wraps."""
    from microcalcai.explain.saliency import explain_crops
    from microcalcai.io import read_image
    from microcalcai.models.predictor import load_predictor
    from microcalcai.roi import crop_roi

    if str(model_dir) not in bare.cache:
        bare.cache[str(model_dir)] = load_predictor(model_dir)
        bare.cache[str(image)] = read_image(image)
    predictor, mammogram = bare.cache[str(model_dir)], bare.cache[str(image)]
    start = time.perf_counter()
    crop = crop_roi(mammogram, (roi["x"], roi["y"]), size_px=roi["size"])
    if saliency:
        explain_crops(predictor, [crop], method="gradcam")
    else:
        predictor.predict(crop.pixels[None])
    return time.perf_counter() - start


bare.cache = {}


def served(session, url: str, image_id: str, roi: dict, saliency: bool) -> float:
    start = time.perf_counter()
    answer = session.post(
        f"{url}/infer/bench-lite0",
        params={"image": image_id, "output": "all" if saliency else "json"},
        data={"params": json.dumps({"roi": roi, **({} if saliency else {"saliency": False})})},
        files={"_": ("", b"")},
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    answer.raise_for_status()
    return elapsed


def overhead(url: str, model_dir: Path, studies: Path, image_id: str, roi: dict, repeats: int) -> dict:
    import requests

    image = next(studies.glob(f"{image_id}.*"))
    out = {}
    with requests.Session() as session:
        for saliency in (False, True):
            served(session, url, image_id, roi, saliency)  # warm: model load, image cache
            bare(model_dir, image, roi, saliency)
            server_times, bare_times = [], []
            for _ in range(repeats):  # interleaved, so machine noise hits both alike
                server_times.append(served(session, url, image_id, roi, saliency))
                bare_times.append(bare(model_dir, image, roi, saliency))
            key = "with_saliency" if saliency else "json_only"
            out[key] = {
                "server_median_s": statistics.median(server_times),
                "bare_median_s": statistics.median(bare_times),
                "ratio": statistics.median(server_times) / statistics.median(bare_times),
            }
            print(
                f"{key}: server {out[key]['server_median_s'] * 1000:.1f} ms, bare "
                f"{out[key]['bare_median_s'] * 1000:.1f} ms, ratio {out[key]['ratio']:.2f}",
                flush=True,
            )
    return out


def load(url: str, image_id: str, roi: dict, clients: int, requests_each: int) -> dict:
    import requests

    latencies, errors, lock = [], [], threading.Lock()

    def client(index: int) -> None:
        with requests.Session() as session:
            for i in range(requests_each):
                shifted = {**roi, "x": roi["x"] + (index * requests_each + i) % 16}
                try:
                    latencies_i = served(session, url, image_id, shifted, False)
                    with lock:
                        latencies.append(latencies_i)
                except Exception as exc:  # counted and reported, the benchmark goes on
                    with lock:
                        errors.append(repr(exc))

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    result = {
        "clients": clients,
        "requests_each": requests_each,
        "errors": len(errors),
        "wall_s": wall,
        "throughput_per_s": len(latencies) / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p95_s": float(np.percentile(latencies, 95)),
        "error_examples": errors[:3],
    }
    print(
        f"load: {clients} x {requests_each}: {len(errors)} errors, {result['throughput_per_s']:.2f} req/s, "
        f"p50 {result['p50_s'] * 1000:.0f} ms, p95 {result['p95_s'] * 1000:.0f} ms",
        flush=True,
    )
    return result


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def first_start(workdir: Path) -> dict:
    """`microcalcai serve` on a fresh workspace until the server answers: wall time and the CPU
    seconds of the whole process tree (what "5 minutes on 2 idle cores" means on a shared machine:
    at most ~600 CPU-s), with the load average, and the figures the first start printed."""
    workspace = workdir / "fresh-workspace"
    start, cpu_before, load_before = time.perf_counter(), children_cpu_s(), os.getloadavg()
    process = subprocess.Popen(
        [sys.executable, "-m", "microcalcai", "serve", "--workspace", str(workspace), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    ready, printed = None, ""
    for line in process.stdout:
        if "default models ready" in line:
            printed = line.strip()
            print(printed, flush=True)
        if "server ready at" in line:
            ready = time.perf_counter() - start
            break
    load_ready = os.getloadavg()
    os.killpg(process.pid, 15)
    process.wait(30)
    cpu = children_cpu_s() - cpu_before
    print(
        f"first start: {ready:.0f} s wall, {cpu:.0f} CPU-s, load {load_before[0]:.1f} -> {load_ready[0]:.1f}"
        if ready
        else "first start: the server never became ready",
        flush=True,
    )
    report = workspace / "bootstrap" / "first-start.json"
    return {
        "first_start_s": ready,
        "cpu_s": round(cpu, 1),
        "load_average": [list(load_before), list(load_ready)],
        "printed": printed,
        "report": json.loads(report.read_text()) if report.is_file() else None,
        "note": "sample studies + two default models trained + server start",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="model folder to serve (default: ImageNet lite0)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--first-start", action="store_true")
    parser.add_argument("--no-load", action="store_true", help="skip the load part")
    parser.add_argument(
        "--first-start-only", action="store_true", help="measure only the first start (nothing else running)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from microcalcai.server.launch import LocalServer
    from microcalcai.server.workspace import install_model, prepare_app

    results = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    with tempfile.TemporaryDirectory(prefix="bench-server-") as scratch:
        scratch = Path(scratch)
        if args.first_start_only:
            results["first_start"] = first_start(scratch)
            return _write(results, args.out)
        model_dir = args.model or make_model(scratch)
        studies, image_id, roi = make_studies(scratch)
        workspace = scratch / "workspace"
        prepare_app(workspace)
        install_model(workspace, model_dir, name="bench-lite0")
        with LocalServer(studies, workspace) as server:
            results["overhead"] = overhead(server.url, model_dir, studies, image_id, roi, args.repeats)
            if not args.no_load:
                results["load"] = load(server.url, image_id, roi, args.clients, args.requests)
        if args.first_start:
            results["first_start"] = first_start(scratch)
    return _write(results, args.out)


def _write(results: dict, out: Path | None) -> int:
    print(json.dumps(results, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Durability benchmark: kill -9 of the real server at random moments, then a restart.

1. Label writes: three clients save labels (each on a new ROI) until the server process gets
   SIGKILL after a random 0.3-2.5 s; it is started again on the same folders. Counted: kills,
   starts that succeeded, labels acknowledged (200) over all trials, acknowledged labels missing
   after a restart, labelled images not listed. Then three starts on a damaged index (empty,
   half written, missing labels written just before the kill).
2. Trainings: a long training is started; the server process (not its group) is killed after a
   random 0-25 s; after the restart a second training must be refused (409) while the orphan
   runs, DELETE /train/ must end it, and a new training must be accepted afterwards.

Usage: .venv/bin/python benchmarks/bench_durability.py [--label-trials 25] [--training-trials 4]
       [--seed 18] [--out RESULTS.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "server"))

from kill_trials import damaged_index_trial, random_kill_trial, training_kill_trial  # noqa: E402
from server_helpers import host_tiny_models, write_studies  # noqa: E402


def _eta(done: int, total: int, started: float) -> str:
    elapsed = time.monotonic() - started
    return f"{done}/{total}, ETA {elapsed / max(done, 1) * (total - done):.0f} s"


def label_trials(root: Path, count: int, seed: int) -> dict:
    from microcalcai.server.launch import LocalServer

    studies = root / "studies"
    ids = write_studies(studies, None)["ids"]
    images = [i for i in ids if i.startswith("P")]
    host_tiny_models(root / "workspace", root / "built")
    rng, counter, acknowledged = random.Random(seed), itertools.count(), {}
    server = LocalServer(studies, root / "workspace", env={"OMP_NUM_THREADS": "1"}).start()
    results, started = [], time.monotonic()
    try:
        for n in range(count):
            results.append(random_kill_trial(server, studies, images, rng, acknowledged, counter))
            last = results[-1]
            print(
                f"label kill {_eta(n + 1, count, started)}: started={last.started} "
                f"acknowledged so far={len(acknowledged)} lost={len(last.lost)} "
                f"unlisted={len(last.unlisted)}",
                flush=True,
            )
            if not last.started:
                print("  the start failed:", last.start_error.strip().splitlines()[-1:], flush=True)
        for damage in ("empty", "truncated", "stale"):
            results.append(damaged_index_trial(server, studies, acknowledged, damage))
            print(f"{results[-1].kind}: survived={results[-1].survived}", flush=True)
    finally:
        server.stop()
    kills = results[:count]
    return {
        "kills": len(kills),
        "starts_after_kill_ok": sum(r.started for r in kills),
        "trials_survived": sum(r.survived for r in kills),
        "labels_acknowledged": len(acknowledged),
        "acknowledged_lost_max": max((len(r.lost) for r in results), default=0),
        "unlisted_max": max((len(r.unlisted) for r in results), default=0),
        "damaged_index": {r.kind: r.survived for r in results[count:]},
        "failures": [
            {
                "kind": r.kind,
                "started": r.started,
                "lost": r.lost[:5],
                "unlisted": r.unlisted,
                "error": r.start_error,
            }
            for r in results
            if not r.survived
        ],
    }


def training_trials(root: Path, count: int, seed: int) -> dict:
    import requests

    from microcalcai.server.launch import LocalServer

    studies = root / "studies"
    if not studies.is_dir():
        write_studies(studies, None)
    workspace = root / "train-workspace"
    host_tiny_models(workspace, root / "built-train")
    rng = random.Random(seed + 1)
    body = {"max_epochs": 500, "include_manifest_labels": True, "val_fraction": 0.5}
    server = LocalServer(studies, workspace, env={"OMP_NUM_THREADS": "1"}).start()
    trials, started = [], time.monotonic()
    try:
        with requests.Session() as http:
            for n in range(count):
                trials.append(training_kill_trial(server, http, rng.uniform(0.0, 25.0), body))
                last = trials[-1]
                print(
                    f"training kill {_eta(n + 1, count, started)}: after {last.delay_s:.1f} s "
                    f"orphan_alive={last.orphan_alive} refused={last.refused} stopped={last.stopped} "
                    f"accepted_after={last.accepted_after} {last.error}",
                    flush=True,
                )
    finally:
        server.stop()
    return {
        "kills": len(trials),
        "survived": sum(t.survived for t in trials),
        "orphans_alive_after_restart": sum(t.orphan_alive for t in trials),
        "second_training_refused": sum(t.refused for t in trials),
        "orphans_stopped_by_delete": sum(t.stopped for t in trials),
        "new_training_accepted_after": sum(t.accepted_after for t in trials),
        "trials": [t.__dict__ for t in trials],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--label-trials", type=int, default=25)
    parser.add_argument("--training-trials", type=int, default=4)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "load_average_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as scratch:
        root = Path(scratch)
        began = time.monotonic()
        if args.label_trials:
            report["labels"] = label_trials(root, args.label_trials, args.seed)
        if args.training_trials:
            report["training"] = training_trials(root, args.training_trials, args.seed)
        report["duration_s"] = round(time.monotonic() - began, 1)
    report["load_average_end"] = os.getloadavg()
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    labels, training = report.get("labels", {}), report.get("training", {})
    ok = not labels.get("failures") and training.get("survived", 0) == training.get("kills", 0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

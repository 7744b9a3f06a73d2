"""Benchmark: how many ROIs per minute the phantom generator writes, per mode and worker count.

    .venv/bin/python benchmarks/bench_phantom.py [--patients 4] [--workers 1 2]

Modes: full-field mammograms at 0.07 mm with 512-pixel ROIs and one negative ROI per image
(the default data set), spot fields at 0.07 mm with 512-pixel ROIs, and the small spot mode
that tests use (96-pixel ROIs at 0.1 mm). Everything that is written counts: DICOM, masks,
ROI crops, manifest. Wall-clock rates are what a user waits for; the machine is shared, so the
CPU time of the parent (workers=1 only) is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from microcalcai.phantom import generate_dataset

MODES = {
    "full_field_0.07mm_roi512": dict(spacing_mm=0.07, roi_size=512, negatives=True),
    "spot_0.07mm_roi512": dict(spacing_mm=0.07, roi_size=512, negatives=True, full_field=False),
    "spot_0.1mm_roi96": dict(spacing_mm=0.1, roi_size=96, negatives=True, full_field=False),
}


def measure(mode: str, patients: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = generate_dataset(
            Path(tmp) / "set", patients=patients, seed=1, workers=workers, progress=False, **MODES[mode]
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        images = len({r["image_id"] for r in result.rows})
        size = sum(p.stat().st_size for p in (Path(tmp) / "set").rglob("*") if p.is_file())
    rois = len(result.rows)
    return {
        "mode": mode,
        "workers": workers,
        "patients": patients,
        "images": images,
        "rois": rois,
        "wall_s": round(wall, 2),
        "rois_per_min": round(60 * rois / wall, 1),
        "images_per_min": round(60 * images / wall, 1),
        "cpu_s_parent": round(cpu, 2) if workers == 1 else None,
        "megabytes": round(size / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # imports and caches warm before timing
        generate_dataset(Path(tmp) / "warm", patients=1, seed=0, progress=False, **MODES["spot_0.1mm_roi96"])
    rows = [measure(mode, args.patients, w) for mode in args.modes for w in args.workers]
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
                "date": time.strftime("%Y-%m-%d"),
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

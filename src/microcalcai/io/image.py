"""The one in-memory mammogram type that every later stage reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def map_point(affine: np.ndarray, x: float, y: float, *, inverse: bool = False) -> tuple[float, float]:
    """(x, y) through a 3x3 affine on homogeneous column vectors (or through its inverse)."""
    matrix = np.linalg.inv(affine) if inverse else affine
    u, v, _ = matrix @ np.array([x, y, 1.0])
    return float(u), float(v)


@dataclass
class Mammogram:
    """A 2D mammogram ready for analysis.

    pixels: float32 (rows, cols), 0..1 after windowing, higher = denser (MONOCHROME1 already
        inverted), in the stored pixel grid unless `to_stored` says otherwise (orientation flip).
    spacing_mm: (row spacing, column spacing) in millimetres, or None when the file has none.
    spacing_source: which tag or field gave the spacing ("PixelSpacing", "ImagerPixelSpacing",
        "png:pHYs", "tiff:resolution", "user", ...) or None.
    to_stored: 3x3 affine taking homogeneous (x=column, y=row, 1) of `pixels` to the stored
        pixel coordinates of the source file. Identity unless the image was flipped.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None = None
    spacing_source: str | None = None
    laterality: str | None = None  # "L" or "R"
    view: str | None = None  # "CC", "MLO", ...
    source_path: Path | None = None
    to_stored: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape  # type: ignore[return-value]

    def pixel_to_stored(self, x: float, y: float) -> tuple[float, float]:
        return map_point(self.to_stored, x, y)

    def stored_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        return map_point(self.to_stored, x, y, inverse=True)

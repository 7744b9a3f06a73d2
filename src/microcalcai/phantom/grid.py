"""Coarse-grid helpers: smooth quantities are computed on ~0.5-1 mm cells and interpolated."""

from __future__ import annotations

import numpy as np
from PIL import Image


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks (edges padded by repetition)."""
    rows, cols = image.shape
    padded = np.pad(image, ((0, -rows % factor), (0, -cols % factor)), mode="edge")
    return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).mean(
        axis=(1, 3)
    )


def upsample(coarse: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of a grid of factor x factor cells back to `shape` pixels.

    Pillow's float resampling is used for speed (several times faster than scipy.ndimage.zoom
    on full-field images); the box maps the first `shape` pixels exactly onto their cells.
    """
    rows, cols = shape
    image = Image.fromarray(np.ascontiguousarray(coarse, dtype=np.float32), mode="F")
    out = image.resize((cols, rows), Image.BILINEAR, box=(0.0, 0.0, cols / factor, rows / factor))
    return np.asarray(out, dtype=np.float32).copy()

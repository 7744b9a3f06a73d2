"""Coarse-grid helpers: smooth quantities are computed on ~0.5-1 mm cells and interpolated.

OpenCV does the resampling: its SIMD resize is several times faster than Pillow's float
resampling and ~10x faster than scipy.ndimage.zoom on full-field images (tens of megapixels
per view), and both calls below are exact for an integer factor (INTER_AREA averages whole
blocks; INTER_LINEAR maps pixel centres (i + 0.5) / factor - 0.5 onto the cells).
"""

from __future__ import annotations

import numpy as np


def _cv2():
    import cv2

    return cv2


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks (edges padded by repetition)."""
    cv2 = _cv2()
    image = np.ascontiguousarray(image, dtype=np.float32)
    rows, cols = image.shape
    pad_r, pad_c = -rows % factor, -cols % factor
    if pad_r or pad_c:
        image = cv2.copyMakeBorder(image, 0, pad_r, 0, pad_c, cv2.BORDER_REPLICATE)
    size = (image.shape[1] // factor, image.shape[0] // factor)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def upsample(
    coarse: np.ndarray, factor: int, shape: tuple[int, int], *, from_end: bool = False
) -> np.ndarray:
    """Bilinear interpolation of a grid of factor x factor cells back to `shape` pixels.

    The first `shape` pixels of the cells are returned, or with `from_end` the last ones along
    the columns: the grid of a mirrored image whose width is not a multiple of `factor`.
    """
    cv2 = _cv2()
    rows, cols = shape
    coarse = np.ascontiguousarray(coarse, dtype=np.float32)
    full = (coarse.shape[1] * factor, coarse.shape[0] * factor)
    out = cv2.resize(coarse, full, interpolation=cv2.INTER_LINEAR)
    return out[:rows, full[0] - cols :] if from_end else out[:rows, :cols]

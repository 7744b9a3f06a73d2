"""Write a 2D image as NRRD the way 3D Slicer loads it (a one-slice volume with spacing).

The server and the Slicer module exchange images and maps as NRRD; `read_image` reads these
files back, including the key/value fields written here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_write_bytes
from microcalcai.errors import InputError


def write_nrrd(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    spacing_mm: tuple[float, float] | None = None,
    laterality: str | None = None,
    view: str | None = None,
    window: tuple[float, float] | None = None,
    photometric: str | None = None,
    compress: bool = True,
) -> Path:
    """Write `pixels` (rows, cols) atomically as a one-slice NRRD volume in LPS space.

    Columns run along the first (fastest) file axis and rows along the second, as Slicer stores
    a 2D DICOM image; `spacing_mm` is (row, column). `laterality`, `view`, `window`
    (centre, width) and `photometric` are stored as key/value fields.
    """
    import nrrd

    arr = np.asarray(pixels)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise InputError(f"{path}: write_nrrd needs a non-empty 2D array; got shape {arr.shape}")
    row_sp, col_sp = (1.0, 1.0) if spacing_mm is None else (float(spacing_mm[0]), float(spacing_mm[1]))
    if row_sp <= 0 or col_sp <= 0:
        raise InputError(f"{path}: spacing_mm {spacing_mm} must be positive")
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([col_sp, row_sp, 1.0]),
        "space origin": np.zeros(3),
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip" if compress else "raw",
    }
    fields = {"laterality": laterality, "view": view, "photometric": photometric}
    if window is not None:
        fields["window_center"], fields["window_width"] = f"{window[0]:g}", f"{window[1]:g}"
    header.update({key: str(value) for key, value in fields.items() if value is not None})
    path = Path(path)
    # pynrrd writes to a file name; build it in a private folder, then publish it atomically.
    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as folder:
        scratch = Path(folder) / "image.nrrd"
        nrrd.write(str(scratch), np.ascontiguousarray(arr)[np.newaxis], header, index_order="C")
        return atomic_write_bytes(path, scratch.read_bytes())

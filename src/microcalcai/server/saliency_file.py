"""The saliency result file: an NRRD whose geometry is the ROI's, in source stored pixels.

docs/server-api.md states the rule a client relies on: map pixel (column i, row j) lies over
source stored pixel (x0 + i*sx, y0 + j*sy), with (x0, y0) = `space origin` and (sx, sy) the
diagonal of `space directions`. The file itself is written by the saliency package's
`write_map_nrrd`, the same writer `microcalcai explain` uses.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from microcalcai.explain.outputs import MapGeometry, write_map_nrrd


def crop_geometry(crop) -> tuple[tuple[float, float], tuple[float, float]]:
    """Origin and step in source stored pixels from the crop's `to_source` affine."""
    geometry = MapGeometry.of(crop)
    return geometry.origin_xy, geometry.step_xy


def write_saliency_nrrd(
    saliency: np.ndarray,
    crop,
    *,
    source_spacing_mm,
    model: str,
    method: str,
    image: str,
    probability: float,
    extra: dict,
) -> tuple[Path, dict]:
    """Write the map to a temporary file the server removes after sending it."""
    handle = tempfile.NamedTemporaryFile(prefix="saliency-", suffix=".nrrd", delete=False)
    handle.close()
    geometry = MapGeometry.of(crop, source_spacing_mm)
    write_map_nrrd(
        handle.name,
        saliency,
        geometry,
        units="pixel",
        model=model,
        method=method,
        probability=probability,
        image=image,
        extra=extra,
        compress=True,
    )
    described = {
        "shape": list(saliency.shape),
        "origin_xy": list(geometry.origin_xy),
        "step_xy": list(geometry.step_xy),
    }
    return Path(handle.name), described

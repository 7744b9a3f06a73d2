"""The saliency result file: an NRRD whose geometry is the ROI's, in source stored pixels.

docs/server-api.md states the rule a client relies on: map pixel (column i, row j) lies over
source stored pixel (x0 + i*sx, y0 + j*sy), with (x0, y0) = `space origin` and (sx, sy) the
diagonal of `space directions`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def crop_geometry(crop) -> tuple[tuple[float, float], tuple[float, float]]:
    """Origin and step in source stored pixels from the crop's `to_source` affine."""
    to_source = np.asarray(crop.to_source, dtype=float)
    origin = to_source @ np.array([0.0, 0.0, 1.0])
    step = (float(to_source[0, 0]), float(to_source[1, 1]))
    return (float(origin[0]), float(origin[1])), step


def write_saliency_nrrd(saliency: np.ndarray, crop, *, fields: dict) -> tuple[Path, dict]:
    """Write the map to a temporary file the server removes after sending it."""
    import nrrd

    origin, step = crop_geometry(crop)
    header = {
        "type": "float",
        "dimension": 2,
        "space dimension": 2,
        "space origin": np.array(origin, dtype=float),
        "space directions": np.array([[step[0], 0.0], [0.0, step[1]]]),
        "space units": ["pixel", "pixel"],
        "kinds": ["domain", "domain"],
        "encoding": "gzip",
    }
    custom = {f"microcalcai_{k}": str(v) for k, v in fields.items()}
    header.update(custom)
    handle = tempfile.NamedTemporaryFile(prefix="saliency-", suffix=".nrrd", delete=False)
    handle.close()
    # C order: the first NRRD axis is the fastest, i.e. x (column), as the contract says.
    nrrd.write(
        handle.name,
        np.ascontiguousarray(saliency, dtype=np.float32),
        header,
        index_order="C",
        custom_field_map={k: "string" for k in custom},
    )
    described = {"shape": list(saliency.shape), "origin_xy": list(origin), "step_xy": list(step)}
    return Path(handle.name), described

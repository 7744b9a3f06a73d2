"""An end-to-end check of the Logic against a running server, on any MRML scene.

The Slicer module's self-test runs it inside Slicer (on `slicer.mrmlScene`); the test suite
runs the same function on a slicer-core scene, so the self-test itself is tested.
"""

from typing import Callable

import numpy as np

from .errors import LogicError
from .geometry import ijk_to_ras, parent_to_world, pixel_to_world, roi_from_markups
from .logic import MicrocalcAILogic


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise LogicError("Self-test failed: " + message)


def run(logic: MicrocalcAILogic, log: Callable[[str], None] = print) -> dict[str, object]:
    """Connect, load the next sample with its ROI, classify it, and check every result node."""
    info = logic.connect()
    _check(bool(info.models), f"the server at {info.url} hosts no model.")
    log(f"Connected to {info.url}: models {', '.join(info.model_names())}")
    sample = logic.next_sample(strategy="first")
    _check(sample is not None, "the server proposed no sample (every ROI is labeled?).")
    volume = logic.volume
    roi_node = logic.scene.GetFirstNodeByName("MicrocalcAI ROI")
    _check(roi_from_markups(volume, roi_node) == sample.roi, "the ROI box does not match the proposed ROI.")
    log(f"Loaded {sample.image_id} with ROI {sample.roi}")
    result = logic.classify(volume, roi_node=roi_node)
    _check(0.0 <= result.probability <= 1.0, f"P(malignant) = {result.probability} is not a probability.")
    rows = result.rows
    expected = len(info.models[result.model].members) + 1 if result.model == "ensemble" else 1
    _check(len(rows) == expected, f"the table has {len(rows)} rows, expected {expected}.")
    table = logic.results_table()
    _check(
        table is not None and table.GetNumberOfRows() == expected, "the results table node is missing rows."
    )
    saliency = logic.saliency_node()
    _check(saliency is not None, "no saliency map was shown.")
    from slicer.util import arrayFromVolume

    values = arrayFromVolume(saliency)[0]
    j, i = np.unravel_index(int(np.argmax(values)), values.shape)
    peak = (parent_to_world(saliency) @ ijk_to_ras(saliency) @ [i, j, 0, 1])[:3]
    x0, y0 = sample.roi.origin_xy()
    corners = pixel_to_world(
        volume, [(x0 - 0.5, y0 - 0.5), (x0 + sample.roi.size - 0.5, y0 + sample.roi.size - 0.5)]
    )
    low, high = corners.min(axis=0) - 1e-6, corners.max(axis=0) + 1e-6
    _check(bool(np.all(peak >= low) and np.all(peak <= high)), "the saliency peak lies outside the ROI.")
    log(f"{result.model} {result.version}: P(malignant) = {result.probability:.3f} -> {result.decision}")
    return {
        "image_id": sample.image_id,
        "probability": result.probability,
        "rows": len(rows),
        "peak_ras": peak,
    }

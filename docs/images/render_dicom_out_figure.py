"""Render docs/images/dicom-out-saliency.png and print the SR's content tree (docs/dicom-out.md).

    .venv/bin/python docs/images/render_dicom_out_figure.py [SCRATCH_DIR]

A tf_efficientnet_lite0 is trained for a minute on phantom spot views (calcification cluster vs
normal tissue, as the saliency tests do), then one phantom mammogram's ROI is classified and
explained, written as a DICOM SR and a saliency Segmentation, and the picture is drawn from the
objects read back: the mammogram from its DICOM file, the map from the Segmentation's
fractions (highdicom), the ROI from the SR's SCOORD.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURE = ROOT / "docs" / "images" / "dicom-out-saliency.png"
sys.path.insert(0, str(ROOT / "Testing" / "server"))


def main(scratch: Path) -> None:
    import highdicom as hd
    import matplotlib
    import numpy as np
    import pydicom

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon
    from server_helpers import spot_phantom, trained_spot_model

    from microcalcai.dicom_out.readback import read_report
    from microcalcai.dicom_out.results import write_roi_results
    from microcalcai.dicom_out.sr import Roi
    from microcalcai.explain.saliency import explain_crops
    from microcalcai.io import read_image
    from microcalcai.models.predictor import load_predictor
    from microcalcai.roi import crop_roi

    model = scratch / "spot-run" / "tf_efficientnet_lite0" / "model"  # kept from an earlier run
    if not (model / "model.json").is_file():
        model = trained_spot_model(scratch)
    shutil.rmtree(scratch / "figure-phantom", ignore_errors=True)  # made again: seconds
    phantom = spot_phantom(scratch / "figure-phantom", patients=2, seed=11, field_size=640)
    row = next(r for r in csv.DictReader(phantom.manifest_path.open()) if r["finding"] == "calcification")
    image_path = phantom.out_dir / row["image_path"]
    roi = Roi(float(row["roi_x"]), float(row["roi_y"]), float(row["roi_size"]))
    predictor = load_predictor(model, device="cpu")
    crop = crop_roi(read_image(image_path), (roi.x, roi.y), size_px=int(roi.size))
    result = explain_crops(predictor, [crop], method="gradcam", target="malignant")
    members = {name: float(values[0]) for name, values in result.member_probability.items()}
    sr_path, seg_path = write_roi_results(
        scratch / "dicom-out",
        image_path,
        roi,
        predictor,
        float(result.probability[0]),
        members,
        result.maps[0],
        crop=crop,
        method="gradcam",
        target="malignant",
    )

    report = read_report(sr_path)
    (group,) = report["groups"]
    fractions = hd.seg.segread(seg_path).pixel_array.astype(np.float32) / 255.0
    # The mammogram as the project displays it (VOI window, MONOCHROME1 inverted), on the stored grid.
    image = read_image(image_path)
    assert np.allclose(image.to_stored, np.eye(3)), "a flipped image would need its map flipped too"
    pixels = image.pixels
    assert (
        pixels.shape
        == fractions.shape
        == (pydicom.dcmread(image_path).Rows, pydicom.dcmread(image_path).Columns)
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), dpi=110)
    polygon = np.asarray(group["polygon"]) - 0.5  # DICOM corner-origin -> pixel-centre coordinates
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    pad = 0.6 * (x1 - x0)
    views = (
        (axes[0], None, "whole view"),
        (axes[1], (x0 - pad, x1 + pad, y1 + pad, y0 - pad), "around the ROI"),
    )
    for ax, limits, title in views:
        ax.imshow(pixels, cmap="gray")
        ax.imshow(np.ma.masked_less_equal(fractions, 0.02), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
        ax.add_patch(Polygon(polygon, closed=True, fill=False, edgecolor="#39d353", linewidth=1.6))
        if limits:
            ax.set_xlim(limits[0], limits[1])
            ax.set_ylim(limits[2], limits[3])
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(
        f"Saliency Segmentation (fractional, Grad-CAM of {group['algorithm_name']} "
        f"v{group['algorithm_version']}) over the mammogram it references\n"
        f"ROI from the SR's SCOORD; SR: P(cancer) = {group['probability']:.3f}, "
        f"threshold {group['threshold']:.3f} -> {group['decision']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(FIGURE)
    print(f"figure -> {FIGURE}")
    print(subprocess.run(["dsrdump", "+Pl", str(sr_path)], capture_output=True, text=True).stdout)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="dicom-out-figure-")))

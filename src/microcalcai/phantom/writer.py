"""Writing a phantom data set's files: each view as DICOM MG (and PNG if asked), its label mask,
its ROI crops, and at the end manifest.csv, calcifications.csv and phantom.json.

Files are written plainly inside the folder that `atomic_dir` moves into place only once the whole
data set is complete (dataset.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_write_text
from microcalcai.phantom import malignancy, physics
from microcalcai.phantom.placement import finding_roi_centre
from microcalcai.phantom.plan import Finding
from microcalcai.phantom.scene import Placement, SyntheticView
from microcalcai.phantom.settings import MANIFEST_NAME, PARTICLES_NAME, SETTINGS_NAME, PhantomSettings


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["microcalcai-phantom", *map(str, parts)])


def display_image(view: SyntheticView, spacing_mm: float):
    """The windowed image as the io layer's Mammogram, so ROIs are cut by `microcalcai.roi`;
    deferred, so that only the crops are windowed (not tens of millions of pixels per view)."""
    from microcalcai.io.image import DeferredPixels, Mammogram
    from microcalcai.io.intensity import Transform

    window = view.window
    pixels = DeferredPixels(view.stored, Transform(lambda v: physics.apply_window(v, window), cheap=True))
    return Mammogram(pixels=pixels, spacing_mm=(spacing_mm, spacing_mm), spacing_source="PixelSpacing")


def _write(path: Path, data: bytes) -> None:
    """Plain write: every file is written inside the folder that `atomic_dir` moves into place
    only once the whole data set is complete, so a per-file fsync and rename would only cost
    time (hundreds of megabytes of full-field images)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _png_bytes(array: np.ndarray, *, sparse: bool = False) -> bytes:
    """PNG at zlib level 1; `sparse` (label masks, mostly 0): run-length matching, same speed,
    files ~4x smaller."""
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    options = {"compress_type": zlib.Z_RLE} if sparse else {}
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1, **options)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_view(
    out: Path, rel_image: str, view: SyntheticView, meta: dict, settings: PhantomSettings, spacing: float
) -> dict:
    from microcalcai.io.dicom_write import build_mg_dataset

    study_time = "090000"
    dataset = build_mg_dataset(
        view.stored,
        spacing_mm=(spacing, spacing),
        laterality=meta["laterality"],
        spacing_tag=("PixelSpacing", "ImagerPixelSpacing"),  # GDCM (SimpleITK) reads the latter for MG
        view=meta["view"],
        patient_id=meta["patient_id"],
        patient_name=f"Phantom^{meta['patient_id']}",
        study_id=meta["study_id"],
        study_date=meta["study_date"].strftime("%Y%m%d"),
        accession_number=meta["study_id"],
        study_uid=_uid(settings.seed, meta["study_id"]),
        series_uid=_uid(settings.seed, meta["study_id"], "series"),
        sop_uid=_uid(settings.seed, meta["image_id"]),
        instance_number=meta["instance"],
        bits_stored=settings.bits_stored,
        window=view.window,
        voi_function="LINEAR",
        chest_wall=meta.get("chest_wall"),
        extra={
            "StudyTime": study_time,
            "ContentTime": study_time,
            "Manufacturer": "MicrocalcAI phantom",
            "SeriesDescription": f"{meta['laterality']}{meta['view']} synthetic",
            "ImageComments": "synthetic mammogram (microcalcai.phantom); not a real patient",
        },
    )
    (out / rel_image).parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(out / rel_image, write_like_original=False)
    files = {}
    if settings.write_png:
        png = Path(rel_image).with_suffix(".png")
        _write(out / png, _png_bytes((view.display() * 65535 + 0.5).astype(np.uint16)))
        files["png_path"] = png.as_posix()
    return files


def _common(meta: dict, settings: PhantomSettings) -> dict:
    image_id = meta["image_id"]
    return dict(
        patient_id=meta["patient_id"],
        image_path=f"images/{meta['patient_id']}/{image_id}.dcm",
        study_id=meta["study_id"],
        image_id=image_id,
        roi_size=settings.roi_size,
        view=meta["view"],
        laterality=meta["laterality"],
        study_date=meta["study_date"].isoformat(),
        mask_path=f"masks/{image_id}.png",
        spacing_mm=meta["spacing_mm"],
        density=round(meta["density"], 4),
        beta=round(meta["beta"], 4),
        breast_thickness_mm=round(meta["thickness"], 2),
        background=meta["background"] or "",
    )


def write_exposure(
    out: Path,
    settings: PhantomSettings,
    meta: dict,
    view: SyntheticView,
    placements: list[Placement],
    findings: dict[int, Finding],
):
    """Write the image, its mask and its finding ROIs; returns (the image's manifest columns,
    manifest rows, particle rows)."""
    common = _common(meta, settings)
    common.update(_write_view(out, common["image_path"], view, meta, settings, meta["spacing_mm"]))
    _write(out / common["mask_path"], _png_bytes(view.labels, sparse=True))
    display = display_image(view, meta["spacing_mm"])
    rows, particle_rows = [], []
    for placement in placements:
        centre = finding_roi_centre(view, placement, settings.roi_size)
        if centre is None:
            continue
        f = findings[placement.finding_id]
        roi_id = f"{meta['image_id']}-F{f.finding_id}"
        rows.append(
            dict(
                common,
                roi_x=centre[0],
                roi_y=centre[1],
                label="malignant" if f.label else "benign",
                finding="calcification",
                morphology=f.morphology,
                distribution=f.distribution,
                birads=malignancy.birads_category(f.morphology, f.distribution),
                p_malignant=round(f.p_malignant, 6),
                finding_id=f.finding_id,
                roi_id=roi_id,
                n_calcifications=len(view.particles[f.finding_id]),
                **write_roi(out, roi_id, display, centre, settings),
            )
        )
        for part in view.particles[f.finding_id]:
            particle_rows.append(
                dict(
                    image_id=meta["image_id"],
                    finding_id=f.finding_id,
                    roi_id=roi_id,
                    morphology=f.morphology,
                    x=round(part.x, 2),
                    y=round(part.y, 2),
                    size_mm=round(part.size_mm, 4),
                    width_mm=round(part.width_mm, 4),
                    density=round(part.density, 3),
                    mask_pixels=part.pixels,
                )
            )
    return common, rows, particle_rows


def write_roi(out: Path, roi_id: str, display, centre, settings: PhantomSettings) -> dict:
    from microcalcai.roi import crop_roi

    patch = crop_roi(display, centre, size_px=settings.roi_size).pixels
    rel = f"rois/{roi_id}.npy"
    _write(out / rel, _npy_bytes(patch))
    files = {"roi_path": rel}
    if settings.roi_png:
        rel_png = f"rois/{roi_id}.png"
        _write(out / rel_png, _png_bytes((patch * 255 + 0.5).astype(np.uint8)))
        files["roi_png_path"] = rel_png
    return files


def dataset_summary(settings: PhantomSettings, rows: list[dict]) -> dict:
    calc = [r for r in rows if r["finding"] == "calcification"]
    labels = [int(r["label"] == "malignant") for r in calc]
    probs = [r["p_malignant"] for r in calc]
    per_finding = {(r["patient_id"], r["finding_id"]): r for r in calc}
    f_labels = [int(r["label"] == "malignant") for r in per_finding.values()]
    f_probs = [r["p_malignant"] for r in per_finding.values()]
    from microcalcai import __version__

    return {
        "generator": "microcalcai.phantom",
        "version": __version__,
        "settings": settings.as_json(),
        "bayes_auc": {
            "expected": malignancy.expected_bayes_auc(settings.morphologies),
            "drawn_rois": malignancy.empirical_auc(labels, probs),
            "drawn_findings": malignancy.empirical_auc(f_labels, f_probs),
            "note": "AUC of the true P(malignant) as scores: the best any classifier can expect",
        },
        "prevalence": {
            "expected": malignancy.expected_prevalence(settings.morphologies),
            "drawn_rois": float(np.mean(labels)) if labels else None,
        },
        "counts": {
            "patients": settings.patients,
            "rois": len(rows),
            "calcification_rois": len(calc),
            "findings": len(per_finding),
            "malignant_rois": int(sum(labels)),
            "negative_rois": len(rows) - len(calc),
        },
        "probability_table": malignancy.cell_table(settings.morphologies),
        "sources": "docs/phantom.md",
    }


def write_tables(out: Path, rows: list[dict], particles: list[dict], summary: dict) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    from microcalcai.data.manifest import write_manifest

    write_manifest(frame, out / MANIFEST_NAME, base_dir=out)
    atomic_write_text(out / PARTICLES_NAME, pd.DataFrame(particles).to_csv(index=False, lineterminator="\n"))
    atomic_write_text(out / SETTINGS_NAME, json.dumps(summary, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")

"""A training's labelled ROIs: patients from the manifest, and no pass over the pool's pixels."""

from __future__ import annotations

import csv
import json

from server_helpers import phantom_studies


def _pool(folder):
    from microcalcai.server.app import UploadableStudies
    from microcalcai.server.images import ImageCache, ScreenedDatastore
    from microcalcai.server.launch import FILE_EXTENSIONS
    from microcalcai.server.pool import CandidatePool

    store = UploadableStudies(str(folder), extensions=FILE_EXTENSIONS, auto_reload=False)
    cache = ImageCache()
    return store, CandidatePool(ScreenedDatastore(store, cache), cache)


def test_a_training_reads_patients_from_the_manifest_and_screens_no_pool_image(tmp_path, monkeypatch):
    """Each member's training once screened every pool view for breast only to learn patients:
    minutes at full resolution. The labels' patients come from the manifest (here renamed, so
    they cannot come from the images' own PatientID); the tissue screen runs only where the
    manifest's own labels are asked for (they stay on tissue, as the pool lists them)."""
    import microcalcai.server.pool as pool_module
    from microcalcai.server.training_data import labeled_frame

    folder = phantom_studies(tmp_path, patients=4)["folder"]
    manifest = folder / "manifest.csv"
    rows = list(csv.DictReader(manifest.open()))
    for row in rows:
        row["patient_id"] = f"manifest-{row['patient_id']}"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    labelled = rows[:2]
    labels = folder / "labels" / "final"
    labels.mkdir(parents=True)
    for row in labelled:
        image_id = row["image_path"].removesuffix(".dcm")
        roi = {"x": float(row["roi_x"]), "y": float(row["roi_y"]), "size": int(row["roi_size"])}
        document = {"image": image_id, "format": 1, "annotations": [{"roi": roi, "label": "benign"}]}
        (labels / f"{image_id}.json").write_text(json.dumps(document))
    screened = []
    real = pool_module.tissue_mask
    monkeypatch.setattr(pool_module, "tissue_mask", lambda pixels: screened.append(1) or real(pixels))

    store, pool = _pool(folder)
    frame = labeled_frame(store, pool)
    assert sorted(frame["patient_id"]) == sorted(row["patient_id"] for row in labelled)
    assert screened == []
    with_manifest = labeled_frame(store, pool, include_manifest=True)
    assert len(with_manifest) == len(rows) and len(screened) == len(rows)

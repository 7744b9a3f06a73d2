"""The pool's tissue screen: kept in the workspace across server starts, and not repeated by a
training to learn its labels' patients."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from server_helpers import phantom_studies, studies_pool


def _count_screens(monkeypatch) -> list:
    import microcalcai.server.pool as pool_module

    screened = []
    real = pool_module.tissue_mask
    monkeypatch.setattr(pool_module, "tissue_mask", lambda pixels: screened.append(1) or real(pixels))
    return screened


def test_a_server_start_reads_the_masks_its_last_start_found(tmp_path, monkeypatch):
    """A restarted server's first Next sample read every image of the pool to find its breast
    (minutes on thousands of full fields). The masks are kept in the workspace by file identity:
    the same pool without a screen; an edited image and a damaged stored mask screened again."""
    folder = phantom_studies(tmp_path, patients=3)["folder"]
    images = sorted(folder.glob("*.dcm"))
    kept = tmp_path / "workspace" / "tissue-cache"
    screened = _count_screens(monkeypatch)
    _, first = studies_pool(folder, kept)
    listed = first.candidates()
    assert listed and len(screened) == len(images)
    _, second = studies_pool(folder, kept)
    assert second.candidates() == listed and len(screened) == len(images)
    for key, mask in first._tissue.items():
        again = second._tissue[key]
        assert np.array_equal(again.mask, mask.mask) and (again.step, again.shape) == (mask.step, mask.shape)

    stat = images[0].stat()
    os.utime(images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file was rewritten
    _, third = studies_pool(folder, kept)
    assert third.candidates() == listed and len(screened) == len(images) + 1

    for stored in kept.rglob("*.npz"):
        stored.write_bytes(b"half a file")
    _, fourth = studies_pool(folder, kept)
    assert fourth.candidates() == listed and len(screened) == 2 * len(images) + 1
    _, fifth = studies_pool(folder, kept)  # the damaged ones were written anew
    assert fifth.candidates() == listed and len(screened) == 2 * len(images) + 1


def test_a_training_reads_patients_from_the_manifest_and_screens_no_pool_image(tmp_path, monkeypatch):
    """Each member's training once screened every pool view for breast only to learn patients:
    minutes at full resolution. The labels' patients come from the manifest (here renamed, so
    they cannot come from the images' own PatientID); the tissue screen runs only where the
    manifest's own labels are asked for (they stay on tissue, as the pool lists them)."""
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
    screened = _count_screens(monkeypatch)

    store, pool = studies_pool(folder)
    frame = labeled_frame(store, pool)
    assert sorted(frame["patient_id"]) == sorted(row["patient_id"] for row in labelled)
    assert screened == []
    with_manifest = labeled_frame(store, pool, include_manifest=True)
    assert len(with_manifest) == len(rows) and len(screened) == len(rows)

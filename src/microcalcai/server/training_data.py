"""The labeled ROIs of a datastore as a manifest frame, split into train and val by patient."""

from __future__ import annotations

import pandas as pd
from microcalcai_logic.contract import LABELS

from microcalcai.errors import InputError
from microcalcai.server.images import roi_on_image, usable_image
from microcalcai.server.labels import roi_key


def labeled_frame(datastore, pool, *, include_manifest: bool = False, tag: str = "final") -> pd.DataFrame:
    """One row per annotated ROI (plus, when asked, the manifest's labeled ROIs not annotated)."""
    # the manifest's labels come as the pool lists them (on tissue); patients need no pixels
    truths = [c for c in pool.candidates() if c.truth in LABELS] if include_manifest else []
    rows, seen = [], set()
    for image_id, saved in datastore.all_annotations(tag).items():
        usable = usable_image(datastore, image_id)  # one bad file must not stop every training
        if usable is None:
            continue
        path, height, width = usable
        patient = pool.patient_of(image_id)
        for annotation in saved:
            roi = annotation["roi"]
            if not roi_on_image(roi, height, width, image_id):
                continue
            seen.add((image_id, roi_key(annotation)))
            rows.append(
                _row(
                    image_id,
                    path,
                    patient,
                    roi["x"],
                    roi["y"],
                    roi["size"],
                    annotation["label"],
                )
            )
    if include_manifest:
        for candidate in truths:
            if (candidate.image_id, candidate.roi.key) not in seen:
                usable = usable_image(datastore, candidate.image_id)
                if usable is None:
                    continue
                path = usable[0]
                rows.append(
                    _row(
                        candidate.image_id,
                        path,
                        candidate.patient_id,
                        candidate.roi.x,
                        candidate.roi.y,
                        candidate.roi.size,
                        candidate.truth,
                    )
                )
    if not rows:
        raise InputError("no labeled ROIs to train on; save labels with PUT /datastore/label first")
    return pd.DataFrame(rows)


def _row(image_id, path, patient, x, y, size, label) -> dict:
    return {
        "patient_id": str(patient),
        "image_path": str(path),
        "image_id": image_id,
        "roi_x": float(x),
        "roi_y": float(y),
        "roi_size": int(size),
        "label": label,
        "finding": "calcification",
    }


def split_by_patient(frame: pd.DataFrame, val: float, seed: int, min_per_class: int) -> pd.DataFrame:
    """Train/val by patient (no patient on both sides), each side holding both classes.

    A patient's side is fixed by a hash of (seed, patient id) against `val`, not drawn anew from
    the patients labelled so far: labels grow from round to round, and a fresh draw moved about
    half of the earlier labels' patients across (29 of 60 as 60 patients grew to 120). A patient
    a served model was trained on then sat in the next round's validation, the served model
    scored high on it and the retrained model was not published. With the hash a patient once in
    val stays there. When a side would hold fewer than min_per_class ROIs of a class (a handful
    of patients), the stratified draw of data.splits is used instead.
    """
    from microcalcai.data.splits import patient_split

    counts = frame["label"].value_counts()
    needed = 2 * min_per_class
    short = [c for c in LABELS if counts.get(c, 0) < needed]
    if short:
        have = ", ".join(f"{c}: {int(counts.get(c, 0))}" for c in LABELS)
        raise InputError(
            f"too few labels to train and validate ({have}); label at least {needed} ROIs of each "
            f"class, from at least two patients each"
        )
    split = frame.assign(
        split=["val" if in_val else "train" for in_val in sticky_val(frame["patient_id"], val, seed)]
    )
    if not _enough_of_each_class(split, min_per_class):
        split = patient_split(frame, val=val, test=0.0, seed=seed, stratify=True)
    for part in ("train", "val"):
        labels = set(split.loc[split.split == part, "label"])
        if labels != set(LABELS):
            raise InputError(
                f"the {part} split by patient holds only {sorted(labels) or 'nothing'}; label ROIs of "
                "both classes from more patients (val_fraction sets the share of patients in val)"
            )
    return split


def sticky_val(patients: pd.Series, val: float, seed: int) -> list[bool]:
    """Whether each row's patient is on the validation side: a uniform number drawn from a hash of
    (seed, patient id) below `val`. Written here because no library split keeps a patient's side
    fixed while the set of patients grows (scikit-learn's draw depends on all of them)."""
    import hashlib

    def uniform(patient) -> float:
        digest = hashlib.sha256(f"{seed}:{patient}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    sides = {patient: uniform(patient) < val for patient in patients.unique()}
    return [sides[patient] for patient in patients]


def _enough_of_each_class(split: pd.DataFrame, min_per_class: int) -> bool:
    counts = split.groupby(["split", "label"]).size()
    return all(counts.get((part, label), 0) >= min_per_class for part in ("train", "val") for label in LABELS)


REFERENCE_COLUMNS = ("patient_id", "image_path", "image_id", "roi_x", "roi_y", "roi_size", "label", "finding")


def reference_frame(workspace) -> pd.DataFrame | None:
    """The default models' own training and validation ROIs (`bootstrap/reference.csv`, split by
    patient), or None when the workspace has none (models brought with --model)."""
    from pathlib import Path

    from microcalcai.data.manifest import read_manifest
    from microcalcai.server.bootstrap import REFERENCE

    path = Path(workspace) / "bootstrap" / REFERENCE
    if not path.is_file():
        return None
    frame = read_manifest(path)
    return frame[[*REFERENCE_COLUMNS, "split"]].assign(source="reference")


def with_reference(
    labels: pd.DataFrame, reference: pd.DataFrame | None, val: float, seed: int, min_per_class: int
) -> pd.DataFrame:
    """The rows a retraining uses, each with its split: the saved labels split by patient and,
    when there is a reference set, its ROIs with their fixed split.

    With a reference set the model keeps learning from what it learnt before (a few new labels
    alone would pull it away from everything else), and its validation set stays the same
    held-out ROIs from round to round, large enough to tell a worse model from a better one. Then
    labels too few to split (fewer than 2 x min_per_class of a class) all go to training.
    """
    labels = labels.assign(source="label")
    if reference is None:
        return split_by_patient(labels, val, seed, min_per_class)
    try:
        labels = split_by_patient(labels, val, seed, min_per_class)
    except InputError:
        labels = labels.assign(split="train")
    # a labelled ROI that is also a reference ROI counts once, with the annotator's label
    known = set(map(_roi_identity, labels.to_dict("records")))
    reference = reference[[_roi_identity(r) not in known for r in reference.to_dict("records")]]
    return pd.concat([reference, labels], ignore_index=True)


def _roi_identity(row) -> tuple:
    return (
        str(row["image_path"]),
        round(float(row["roi_x"]), 3),
        round(float(row["roi_y"]), 3),
        int(row["roi_size"]),
    )

"""predictions.csv as docs/DESIGN.md defines it: one row per ROI, read by `microcalcai evaluate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from microcalcai_logic.contract import (
    INTENDED_USE_COLUMN,
    LABELS,
    MEMBER_PROBABILITY_PREFIX,
    MEMBER_THRESHOLD_PREFIX,
    decision_label,
)

from microcalcai.atomic import atomic_write_text


def _image_ids(frame) -> list[str]:
    if "image_id" in frame.columns:
        ids = [str(v) if isinstance(v, str) and v else "" for v in frame["image_id"]]
    else:
        ids = [""] * len(frame)
    return [i or Path(str(p)).stem for i, p in zip(ids, frame["image_path"], strict=True)]


def predictions_table(
    frame,
    case_ids,
    member_probs: dict,
    probability,
    threshold,
    model: str,
    *,
    member_thresholds: dict | None = None,
    extra=None,
):
    """The DataFrame of predictions.csv for ``frame``'s rows (same order).

    ``threshold`` is one number or one per row (out-of-fold predictions use each fold's own).
    ``member_thresholds`` (member name -> the validation threshold stored in its model card)
    become ``threshold_<member>`` columns, so that an evaluation can judge each member at its
    own validation cut-off rather than at one chosen on the evaluated cases.
    """
    import pandas as pd

    probability = np.asarray(probability, dtype=float)
    threshold = np.broadcast_to(np.asarray(threshold, dtype=float), probability.shape)
    labels = (
        [str(v).strip().lower() if isinstance(v, str) else "" for v in frame["label"]]
        if "label" in frame.columns
        else [""] * len(frame)
    )
    table = {
        "case_id": list(case_ids),
        "patient_id": [str(v) for v in frame["patient_id"]],
        "image_id": _image_ids(frame),
        "label": [v if v in LABELS else "" for v in labels],
        "split": [str(v) if isinstance(v, str) else "" for v in frame["split"]]
        if "split" in frame.columns
        else [""] * len(frame),
    }
    for name, values in member_probs.items():
        table[MEMBER_PROBABILITY_PREFIX + name] = np.round(np.asarray(values, dtype=float), 8)
    for name, value in (member_thresholds or {}).items():
        table[MEMBER_THRESHOLD_PREFIX + name] = np.round(np.full(probability.shape, float(value)), 8)
    table["probability"] = np.round(probability, 8)
    table["threshold"] = np.round(threshold, 8)
    table["decision"] = [decision_label(bool(positive)) for positive in probability >= threshold]
    table["model"] = model
    for key, values in (extra or {}).items():
        table[key] = list(values)
    return pd.DataFrame(table)


def write_predictions(table, path) -> Path:
    return atomic_write_text(path, table.to_csv(index=False))


def crop_settings(predictor) -> dict:
    """How the predictor's (first) model was trained on crops: task and crop size in pixels."""
    card = predictor.members[0].card
    crop = dict(card.crop or {})
    crop.setdefault("task", "roi")
    crop.setdefault("roi_size", int(card.input_size))
    return crop


def predict_frame(predictor, frame, *, progress: bool = True):
    """predictions.csv rows for every manifest row: crops taken as in training, then ``predictor.predict``.
    The rows carry what a demonstration model is for (INTENDED_USE_COLUMN), so that a report on
    them can say so."""
    from microcalcai.models.predictor import demonstration_use
    from microcalcai.train.data import case_ids, load_crops_sized

    use = {INTENDED_USE_COLUMN: [demonstration_use(predictor)] * len(frame)}

    crop = crop_settings(predictor)
    if crop["task"] == "tiles":  # a whole view scored tile by tile, as the model was trained
        from microcalcai.train.tiles import score_images

        probability = score_images(predictor, frame, progress=progress)
        return predictions_table(
            frame,
            case_ids(frame),
            {predictor.name: probability},
            probability,
            predictor.threshold,
            predictor.name,
            member_thresholds={predictor.name: predictor.threshold},
            extra=use,
        )

    # ROI crops resized once, straight to each member's input size, as training resized them (a
    # crop first resized to another size scores otherwise, by up to 0.1 at 64 px); a whole view
    # prepared at the card's size, as the server scores it (models.tiles). One reading of the
    # images gives every size.
    whole = crop["task"] == "whole_image"
    sizes = [int(crop["roi_size"])] if whole else sorted({m.input_size for m in predictor.members})
    sized = load_crops_sized(
        frame, roi_size=int(crop["roi_size"]), sizes=sizes, task=crop["task"], progress=progress
    )
    sized = {size: grey[:, 0].float().numpy() for size, grey in sized.items()}
    batch = predictor.predict(sized[sizes[0]]) if whole else predictor.predict_sized(sized)
    return predictions_table(
        frame,
        case_ids(frame),
        batch.members,
        batch.probability,
        batch.threshold,
        predictor.name,
        member_thresholds={m.name: m.threshold for m in predictor.members},
        extra=use,
    )

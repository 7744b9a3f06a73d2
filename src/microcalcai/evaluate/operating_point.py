"""Operating points chosen on validation predictions only (never on the test set): the one place
that picks a model's or an ensemble's threshold and summarises it for a model card.

Kang et al. used the threshold that maximises Youden's index (sensitivity + specificity - 1) on
the validation ROC curve; so does this project, for single models and ensembles alike. The cut-off
itself is `binary.youden_cutoff`, the same rule `microcalcai evaluate` reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from microcalcai_logic.contract import POSITIVE_LABEL

from microcalcai.errors import InputError
from microcalcai.evaluate.binary import youden_cutoff
from microcalcai.evaluate.calibration import brier_score, reliability

YOUDEN = "max Youden index on validation predictions"


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    sensitivity: float
    specificity: float
    youden: float
    method: str = YOUDEN


def youden_threshold(labels, probabilities) -> ThresholdChoice:
    """The threshold with maximal Youden index; ties go to the highest threshold (fewest positives)."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    if len(np.unique(labels)) < 2:
        raise InputError(
            "choosing a threshold needs validation cases of both labels (benign and malignant); "
            "enlarge the validation split"
        )
    cut = youden_cutoff(labels, probabilities)
    youden = cut.sensitivity + cut.specificity - 1.0
    return ThresholdChoice(min(cut.threshold, 1.0), cut.sensitivity, cut.specificity, youden)


def summary_metrics(labels, probabilities, threshold: float) -> dict:
    """AUC and the decisions' summary at a threshold (what a model card records)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    decision = probabilities >= threshold
    positives, negatives = labels == 1, labels == 0
    out = {"n": int(len(labels)), "n_malignant": int(positives.sum())}
    out["auc"] = (
        float(roc_auc_score(labels, probabilities)) if positives.any() and negatives.any() else float("nan")
    )
    out["sensitivity"] = float(decision[positives].mean()) if positives.any() else float("nan")
    out["specificity"] = float((~decision[negatives]).mean()) if negatives.any() else float("nan")
    out["accuracy"] = float((decision == positives).mean()) if len(labels) else float("nan")
    # Calibration beside the ranking: the clients' reliability note reads these from the card, and
    # a probability of 0.8 is only "8 in 10" when they are small.
    calibrated = len(labels) and np.all((probabilities >= 0.0) & (probabilities <= 1.0))
    out["brier"] = brier_score(labels, probabilities) if calibrated else float("nan")
    out["expected_calibration_error"] = (
        reliability(labels, probabilities).expected_calibration_error if calibrated else float("nan")
    )
    return out


def ensemble_threshold(
    val_tables: dict, combine: Callable[[dict], np.ndarray]
) -> tuple[ThresholdChoice, dict]:
    """Youden threshold of the members' combined score on their shared validation cases.

    ``val_tables``: member name -> DataFrame with case_id, label, probability (predictions_val.csv).
    ``combine``: member name -> probabilities (aligned) -> the ensemble's score.
    Returns (ThresholdChoice, summary metrics at it).
    """
    shared = set.intersection(*(set(t["case_id"].astype(str)) for t in val_tables.values()))
    if not shared:
        raise InputError(
            "the members were validated on different ROIs (no common case_id in their "
            "predictions_val.csv); give --data MANIFEST to choose the threshold on its val rows"
        )
    order = sorted(shared)
    probs, labels = {}, None
    for name, table in val_tables.items():
        table = table.assign(case_id=table["case_id"].astype(str)).set_index("case_id")
        probs[name] = table.loc[order, "probability"].to_numpy(dtype=float)
        member_labels = (table.loc[order, "label"].astype(str) == POSITIVE_LABEL).to_numpy(dtype=int)
        if labels is not None and not np.array_equal(labels, member_labels):
            raise InputError("the members' validation files disagree on labels of the same case_id")
        labels = member_labels
    combined = combine(probs)
    choice = youden_threshold(labels, combined)
    return choice, summary_metrics(labels, combined, choice.threshold)

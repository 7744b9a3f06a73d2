"""Operating thresholds, chosen on validation predictions only (never on the test set).

Kang et al. used the threshold that maximises Youden's index (sensitivity + specificity - 1) on
the validation ROC curve; so does this project, for single models and ensembles alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microcalcai.errors import InputError

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
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    if len(np.unique(labels)) < 2:
        raise InputError(
            "choosing a threshold needs validation cases of both labels (benign and malignant); "
            "enlarge the validation split"
        )
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    finite = np.isfinite(thresholds)  # roc_curve's first threshold is +inf (nothing positive)
    j = tpr - fpr
    j[~finite] = -np.inf
    best = int(np.argmax(j))  # argmax takes the first maximum = highest threshold
    return ThresholdChoice(
        float(min(thresholds[best], 1.0)), float(tpr[best]), float(1 - fpr[best]), float(j[best])
    )


def binary_metrics(labels, probabilities, threshold: float) -> dict:
    """AUC, loss-free summary metrics at a threshold (what a model card records)."""
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
    return out

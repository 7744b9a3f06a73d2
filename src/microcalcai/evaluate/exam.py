"""Exam-level evaluation for an imbalanced detection task (breast arterial calcification).

Four views make an exam; a model scores each view. `exam_scores` aggregates the views into one
score per exam, and `imbalanced_metrics` reports what Mobini et al. (2024) report (ROC AUC and
F1) and what a ~10%-prevalence task also needs: PR-AUC (average precision, whose no-skill level
is the prevalence, not 0.5), sensitivity at a fixed specificity, and the Matthews correlation
coefficient at the same operating point as F1, each with a bootstrap CI.

Aggregation. The default is the maximum over the views: an exam is BAC-positive when any breast
is, and BAC in one breast shows in that breast's two views only, so the mean of four views
halves a unilateral finding's score against the bilateral ones and against the background of the
clean breast. Noisy-OR (1 - prod(1 - p)) treats the views as independent pieces of evidence; the
CC and MLO views of one breast show the same vessel, so it counts that evidence twice, and it
needs probabilities (scores within 0..1). Both are available for comparison.

Intervals. Views of one exam (and exams of one woman) are correlated, so the bootstrap resamples
clusters (patients; exams when there is no patient column) with `bootstrap.bootstrap_weights`,
and each replica is scored by scikit-learn's metric with the replica's draw counts as sample
weights, so no metric is hand-written and every interval shares the same replicas. The operating
point (the threshold behind F1, MCC, sensitivity and specificity) is held fixed across replicas:
it is a chosen decision rule, ideally picked on validation data and passed in; sensitivity at a
fixed specificity is a property of the curve and is re-read on each replica.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from microcalcai.errors import InputError
from microcalcai.evaluate.binary import operating_point
from microcalcai.evaluate.bootstrap import DEFAULT_REPLICAS, bootstrap_ci, bootstrap_weights, weighted_auc

AGGREGATIONS = ("max", "mean", "noisy_or")
DEFAULT_SPECIFICITY = 0.90


def aggregate(scores: np.ndarray, how: str = "max") -> float:
    """One exam's score from its views' scores (see the module docstring for the choice)."""
    scores = np.asarray(scores, np.float64)
    if how == "max":
        return float(scores.max())
    if how == "mean":
        return float(scores.mean())
    if how == "noisy_or":
        return float(1.0 - np.prod(1.0 - scores))
    raise InputError(f"exam aggregation must be one of {', '.join(AGGREGATIONS)}, not {how!r}")


def exam_scores(
    frame: pd.DataFrame,
    *,
    score: str = "score",
    label: str = "bac",
    exam: str = "exam_id",
    patient: str | None = "patient_id",
    how: str = "max",
) -> pd.DataFrame:
    """One row per exam: its aggregated score, its label (positive when any view is), the number
    of views, and the patient (for clustered intervals).

    `frame` has one row per view with columns `exam`, `score` and `label` (0/1).
    """
    if how not in AGGREGATIONS:
        raise InputError(f"exam aggregation must be one of {', '.join(AGGREGATIONS)}, not {how!r}")
    missing = [c for c in (exam, score, label) if c not in frame.columns]
    if missing:
        raise InputError(
            f"per-view scores lack the column(s) {', '.join(missing)}; need one row per view with "
            f"{exam!r}, {score!r} and {label!r}"
        )
    values = pd.to_numeric(frame[score], errors="coerce")
    if values.isna().any():
        bad = frame.loc[values.isna(), exam].astype(str).tolist()[:5]
        raise InputError(f"column {score!r} has missing or non-numeric scores (exams {', '.join(bad)})")
    if how == "noisy_or" and not values.between(0.0, 1.0).all():
        raise InputError(
            "noisy-OR aggregation needs probabilities within 0..1; use max or mean for other scores"
        )
    labels = pd.to_numeric(frame[label], errors="coerce")
    if not labels.isin([0, 1]).all():
        raise InputError(f"column {label!r} must hold 0 or 1 on every view")
    work = pd.DataFrame({"exam": frame[exam].astype(str), "score": values, "label": labels.astype(int)})
    if patient and patient in frame.columns:
        work["patient"] = frame[patient].astype(str)
        spread = work.groupby("exam")["patient"].nunique()
        if (spread > 1).any():
            raise InputError(f"exam {spread.index[spread > 1][0]} has views of more than one patient")
    else:
        work["patient"] = work["exam"]
    out = work.groupby("exam", sort=True).agg(
        score=("score", lambda s: aggregate(s.to_numpy(), how)),
        label=("label", "max"),
        views=("score", "size"),
        patient=("patient", "first"),
    )
    return out.reset_index()


def _replicated(metric: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], np.ndarray]:
    """A bootstrap statistic (weights (B, n) -> (B,)) from a metric of one weight vector."""

    def stat(weights: np.ndarray) -> np.ndarray:
        return np.array([metric(w) for w in np.atleast_2d(weights)])

    return stat


def sensitivity_at_specificity(
    y: np.ndarray, scores: np.ndarray, specificity: float, sample_weight: np.ndarray | None = None
) -> float:
    """The highest sensitivity among thresholds whose specificity is at least `specificity`
    (scikit-learn's ROC points, weighted)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, scores, sample_weight=sample_weight, drop_intermediate=False)
    ok = 1.0 - fpr >= specificity - 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def imbalanced_metrics(
    y: np.ndarray,
    scores: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    threshold: float | None = None,
    specificity: float = DEFAULT_SPECIFICITY,
    n_boot: int = DEFAULT_REPLICAS,
    seed: int = 0,
    conf_level: float = 0.95,
) -> dict:
    """AUC, PR-AUC, sensitivity at `specificity`, and F1, MCC, sensitivity, specificity at the
    operating point, each {"estimate", "ci"} with a cluster bootstrap CI (percentile).

    threshold: the operating point (positive when score >= threshold), best chosen on other
    data; None takes the threshold reaching `specificity` on these data (stated in the result).
    """
    from sklearn.metrics import average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, np.float64)
    if y.shape != scores.shape or y.ndim != 1:
        raise InputError(f"labels ({y.shape}) and scores ({scores.shape}) must be two vectors of one length")
    if not np.isin(y, (0, 1)).all() or y.min() == y.max():
        raise InputError("the metrics need labels 0/1 with both classes present")
    if not np.isfinite(scores).all():
        raise InputError("scores must be finite numbers")
    if not 0.0 < specificity < 1.0:
        raise InputError(f"the fixed specificity must lie strictly between 0 and 1, not {specificity}")
    chosen_on = "given"
    if threshold is None:
        threshold = operating_point(y, scores, specificity=specificity).threshold
        chosen_on = f"specificity>={specificity:g} on these data"
    decision = (scores >= threshold).astype(int)
    weights = bootstrap_weights(y, n_boot, seed=seed, clusters=clusters)

    metrics: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
        "auc": (weighted_auc(y, scores), roc_auc_score(y, scores)),
        "pr_auc": (
            _replicated(lambda w: average_precision_score(y, scores, sample_weight=w)),
            average_precision_score(y, scores),
        ),
        "sensitivity_at_specificity": (
            _replicated(lambda w: sensitivity_at_specificity(y, scores, specificity, w)),
            sensitivity_at_specificity(y, scores, specificity),
        ),
        "f1": (
            _replicated(lambda w: f1_score(y, decision, sample_weight=w, zero_division=0.0)),
            f1_score(y, decision, zero_division=0.0),
        ),
        "mcc": (
            _replicated(lambda w: matthews_corrcoef(y, decision, sample_weight=w)),
            matthews_corrcoef(y, decision),
        ),
        "sensitivity": (
            _replicated(lambda w: np.sum(w * decision * y) / np.sum(w * y)),
            decision[y == 1].mean(),
        ),
        "specificity": (
            _replicated(lambda w: np.sum(w * (1 - decision) * (1 - y)) / np.sum(w * (1 - y))),
            1.0 - decision[y == 0].mean(),
        ),
    }
    out: dict = {}
    resampling = weights[1]
    for name, (stat, estimate) in metrics.items():
        result = bootstrap_ci(stat, y.astype(bool), weights=weights, conf_level=conf_level)
        out[name] = {"estimate": float(estimate), "ci": [float(result.ci[0]), float(result.ci[1])]}
    out["operating_point"] = {
        "threshold": float(threshold),
        "chosen": chosen_on,
        "specificity_target": specificity,
    }
    out["n"] = int(y.size)
    out["n_positive"] = int(y.sum())
    out["prevalence"] = float(y.mean())
    out["bootstrap"] = {"replicas": int(weights[0].shape[0]), "resampling": resampling, "seed": seed,
                        "conf_level": conf_level, "method": "percentile"}  # fmt: skip
    return out


def evaluate_exams(
    frame: pd.DataFrame,
    *,
    score: str = "score",
    label: str = "bac",
    exam: str = "exam_id",
    patient: str | None = "patient_id",
    how: str = "max",
    threshold: float | None = None,
    exam_threshold: float | None = None,
    specificity: float = DEFAULT_SPECIFICITY,
    n_boot: int = DEFAULT_REPLICAS,
    seed: int = 0,
) -> dict:
    """Per-image and per-exam metrics from per-view scores: images clustered by patient (or
    exam), exams by patient. `threshold`/`exam_threshold`: the operating points, if chosen."""
    exams = exam_scores(frame, score=score, label=label, exam=exam, patient=patient, how=how)
    cluster_column = patient if patient and patient in frame.columns else exam
    images = imbalanced_metrics(
        pd.to_numeric(frame[label]).to_numpy(),
        pd.to_numeric(frame[score]).to_numpy(),
        clusters=frame[cluster_column].astype(str).to_numpy(),
        threshold=threshold,
        specificity=specificity,
        n_boot=n_boot,
        seed=seed,
    )
    per_exam = imbalanced_metrics(
        exams["label"].to_numpy(),
        exams["score"].to_numpy(),
        clusters=exams["patient"].to_numpy(),
        threshold=exam_threshold,
        specificity=specificity,
        n_boot=n_boot,
        seed=seed,
    )
    return {"aggregation": how, "image": images, "exam": per_exam}

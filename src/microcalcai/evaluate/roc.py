"""ROC AUC with DeLong's variance and confidence interval.

DeLong, DeLong & Clarke-Pearson (1988) give the AUC's variance through the "placements" of
each case among the cases of the other class; Sun & Xu (2014, IEEE SPL 21:1389) compute the
placements of k score columns at once from three midrank vectors, O(k N log N) instead of
O(k m n). No well-kept Python library implements DeLong (scikit-learn gives the AUC only,
scipy and statsmodels have no ROC variance), so it is written here and checked to 1e-6
against the R package pROC (Testing/evaluate/test_roc_proc.py).

Conventions follow pROC: the AUC counts ties between a positive and a negative case as 1/2;
the CI is the normal interval around the AUC clipped to [0, 1]; with direction "auto" the
direction is "higher" (positives score higher) when the negatives' median is <= the
positives' median, else "lower".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from microcalcai.errors import InputError
from microcalcai.evaluate.inputs import check_two_classes

DIRECTIONS = ("higher", "lower", "auto")


@dataclass(frozen=True)
class AucResult:
    auc: float
    variance: float
    ci: tuple[float, float]
    n_positive: int
    n_negative: int
    direction: str  # "higher": positive cases have higher scores; "lower": lower scores
    conf_level: float = 0.95

    @property
    def se(self) -> float:
        return float(np.sqrt(self.variance))

    def as_dict(self) -> dict:
        return {
            "auc": self.auc,
            "auc_ci": list(self.ci),
            "auc_variance": self.variance,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
        }


def resolve_direction(y: np.ndarray, scores: np.ndarray, direction: str = "higher") -> str:
    """'auto' becomes 'higher' or 'lower' by comparing the class medians, as pROC does."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if direction != "auto":
        return direction
    return "higher" if np.median(scores[~y]) <= np.median(scores[y]) else "lower"


def oriented(scores: np.ndarray, direction: str) -> np.ndarray:
    """Scores turned so that higher always means more likely positive."""
    return -scores if direction == "lower" else scores


def delong_placements(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong placements of k score rows, by Sun & Xu's midrank algorithm.

    `scores` is (k, N) or (N,), already oriented (higher = positive). Returns `auc` (k,),
    `v10` (k, m): for each positive case the fraction of negatives it outranks (ties 1/2),
    and `v01` (k, n): for each negative case the fraction of positives that outrank it.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y = np.asarray(y, dtype=bool)
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    # Midrank within each class and in the pooled sample: a case's pooled rank minus its rank
    # among its own class is the number of cases of the other class below it (ties count 1/2).
    rank_pos = stats.rankdata(pos, axis=1)
    rank_neg = stats.rankdata(neg, axis=1)
    rank_all = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (rank_all[:, :m] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m
    auc = v10.mean(axis=1)
    return auc, v10, v01


def delong_covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k) for oriented score rows (k, N)."""
    auc, v10, v01 = delong_placements(y, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return auc, s10 / m + s01 / n


def normal_ci(estimate: float, se: float, conf_level: float = 0.95, clip=(0.0, 1.0)) -> tuple[float, float]:
    z = stats.norm.ppf(0.5 + conf_level / 2.0)
    lo, hi = estimate - z * se, estimate + z * se
    if clip is not None:
        lo, hi = max(lo, clip[0]), min(hi, clip[1])
    return float(lo), float(hi)


def auc_delong(
    y: np.ndarray, scores: np.ndarray, *, direction: str = "higher", conf_level: float = 0.95
) -> AucResult:
    """AUC, DeLong variance and CI of one score column (labels already validated as bool)."""
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = check_two_classes(y)
    if not 0.0 < conf_level < 1.0:
        raise InputError(f"conf_level must lie strictly between 0 and 1, not {conf_level}")
    direction = resolve_direction(y, scores, direction)
    auc, cov = delong_covariance(y, oriented(scores, direction))
    a, var = float(auc[0]), float(cov[0, 0])
    return AucResult(
        auc=a,
        variance=var,
        ci=normal_ci(a, np.sqrt(var), conf_level),
        n_positive=n_pos,
        n_negative=n_neg,
        direction=direction,
        conf_level=conf_level,
    )


def roc_points(y: np.ndarray, scores: np.ndarray, direction: str = "higher") -> tuple[np.ndarray, ...]:
    """(fpr, tpr, thresholds) of the empirical ROC curve, every threshold kept."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, oriented(scores, direction), drop_intermediate=False)
    return fpr, tpr, oriented(thr, direction)

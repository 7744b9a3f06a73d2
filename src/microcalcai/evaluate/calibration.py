"""Calibration of probabilities: Brier score and the reliability diagram's bins.

Only probabilities (0..1) are calibrated; a reader's ordinal score (BI-RADS) is not a
probability and is refused here with a message saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microcalcai.errors import InputError


def _check_probabilities(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise InputError(
            f"{name!r} holds values outside [0, 1] ({p.min():g}..{p.max():g}); "
            "calibration needs probabilities"
        )
    return p


def brier_score(y: np.ndarray, p: np.ndarray, *, name: str = "probability") -> float:
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(np.asarray(y, bool), _check_probabilities(p, name)))


@dataclass
class ReliabilityBins:
    mean_predicted: np.ndarray
    observed: np.ndarray
    count: np.ndarray
    observed_ci: np.ndarray  # (bins, 2) Wilson interval of the observed fraction
    strategy: str
    expected_calibration_error: float

    def as_dict(self) -> dict:
        return {
            "mean_predicted": self.mean_predicted.tolist(),
            "observed": self.observed.tolist(),
            "count": self.count.tolist(),
            "observed_ci": self.observed_ci.tolist(),
            "strategy": self.strategy,
            "expected_calibration_error": self.expected_calibration_error,
        }


def reliability(
    y: np.ndarray, p: np.ndarray, *, n_bins: int = 10, strategy: str = "uniform", name: str = "probability"
) -> ReliabilityBins:
    """Observed fraction of positives per bin of predicted probability, with counts and CIs.

    scikit-learn's calibration_curve drops empty bins but does not return counts, which the
    diagram needs (a bin of three cases should look uncertain), so the binning is done here with
    the same edges ("uniform": equal width; "quantile": equal counts).
    """
    from statsmodels.stats.proportion import proportion_confint

    y = np.asarray(y, bool)
    p = _check_probabilities(p, name)
    if n_bins < 1:
        raise InputError(f"the number of calibration bins must be at least 1, not {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    else:
        raise InputError(f"calibration bin strategy must be 'uniform' or 'quantile', not {strategy!r}")
    bin_of = np.clip(np.searchsorted(edges[1:-1], p, side="right"), 0, edges.size - 2)
    count = np.bincount(bin_of, minlength=edges.size - 1)
    keep = count > 0
    sum_p = np.bincount(bin_of, weights=p, minlength=edges.size - 1)[keep]
    sum_y = np.bincount(bin_of, weights=y.astype(float), minlength=edges.size - 1)[keep]
    count = count[keep]
    lo, hi = proportion_confint(sum_y, count, method="wilson")
    mean_pred, observed = sum_p / count, sum_y / count
    ece = float(np.sum(count * np.abs(observed - mean_pred)) / count.sum())
    return ReliabilityBins(mean_pred, observed, count, np.column_stack([lo, hi]), strategy, ece)

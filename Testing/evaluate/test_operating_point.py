"""The summary a model card records at its operating point, calibration included."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from microcalcai.evaluate.operating_point import summary_metrics


def test_summary_metrics_record_brier_score_and_expected_calibration_error():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 400)
    y = (rng.uniform(0, 1, 400) < p**2).astype(int)  # over-confident on the malignant side
    m = summary_metrics(y, p, 0.5)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.histogram(p, bins=np.linspace(0, 1, 11))[0]
    expected_ece = np.sum(counts[counts > 0] * np.abs(observed - predicted)) / len(p)
    assert m["expected_calibration_error"] == pytest.approx(expected_ece)
    assert m["expected_calibration_error"] > 0.1  # p vs p**2 is far from calibrated
    calibrated = (rng.uniform(0, 1, 4000) < (q := rng.uniform(0, 1, 4000))).astype(int)
    assert summary_metrics(calibrated, q, 0.5)["expected_calibration_error"] < 0.05


def test_scores_outside_zero_one_get_no_calibration_figures():
    m = summary_metrics([0, 1, 0, 1], [-2.0, 3.0, -1.0, 0.5], 0.0)
    assert m["auc"] == 1.0 and np.isnan(m["brier"]) and np.isnan(m["expected_calibration_error"])

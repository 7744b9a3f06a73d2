"""Binary metrics, their intervals, cut-offs, operating points, PR-AUC and calibration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score

from microcalcai.errors import InputError
from microcalcai.evaluate import binary, bootstrap, calibration


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(4)
    y = rng.random(260) < 0.37
    s = np.round(y * 1.1 + rng.normal(size=260), 2)
    return y, s


def test_wilson_interval_matches_newcombe():
    # Newcombe (1998), Stat Med 17:857, Table I, example 81/263: Wilson score 0.2553 to 0.3662.
    p = binary.proportion(81, 263, method="wilson")
    assert p.value == pytest.approx(81 / 263)
    assert p.ci == pytest.approx((0.2553, 0.3662), abs=5e-5)


def test_clopper_pearson_matches_scipy_exact():
    for k, n in [(0, 12), (7, 12), (12, 12), (589, 1579)]:
        ours = binary.proportion(k, n, method="clopper-pearson").ci
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert ours == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_metrics_from_a_known_confusion_matrix():
    # tp 40, fn 10, fp 15, tn 135
    y = np.r_[np.ones(50, bool), np.zeros(150, bool)]
    d = np.r_[np.ones(40, bool), np.zeros(10, bool), np.ones(15, bool), np.zeros(135, bool)]
    m = binary.binary_metrics(y, d)
    assert binary.confusion_counts(y, d) == {"tp": 40, "fn": 10, "fp": 15, "tn": 135}
    assert m["sensitivity"].value == pytest.approx(0.8)
    assert m["specificity"].value == pytest.approx(0.9)
    assert m["accuracy"].value == pytest.approx(175 / 200)
    assert m["ppv"].value == pytest.approx(40 / 55)
    assert m["npv"].value == pytest.approx(135 / 145)
    f1 = binary.f1_scores(y, d)
    assert f1["f1"] == pytest.approx(2 * 40 / (2 * 40 + 15 + 10))
    f1_neg = 2 * 135 / (2 * 135 + 10 + 15)
    assert f1["f1_weighted"] == pytest.approx((50 * f1["f1"] + 150 * f1_neg) / 200)


def test_undefined_ppv_is_reported_not_nan():
    y = np.array([1, 1, 0, 0, 0], bool)
    m = binary.binary_metrics(y, np.zeros(5, bool))
    assert m["ppv"].value is None and m["ppv"].ci is None and "no cases" in m["ppv"].note
    assert m["sensitivity"].value == 0.0
    w = bootstrap.bootstrap_weights(y, 50, seed=0)
    boot = binary.bootstrap_metric_cis(y, np.zeros(5, bool), w)
    assert boot["ppv"].value is None and boot["ppv"].ci is None and boot["ppv"].note


def test_bootstrap_metric_intervals_cover_the_estimate(cases):
    y, s = cases
    d = s >= 0.5
    w = bootstrap.bootstrap_weights(y, 1000, seed=2)
    boot = binary.bootstrap_metric_cis(y, d, w)
    exact = binary.binary_metrics(y, d)
    for name in binary.METRICS:
        assert boot[name].ci[0] <= exact[name].value <= boot[name].ci[1]
        assert boot[name].ci == pytest.approx(exact[name].ci, abs=0.04)  # both ~ the same width


def test_youden_cutoff_is_the_best_threshold(cases):
    y, s = cases
    cut = binary.youden_cutoff(y, s)
    best = max((np.mean(s[y] >= t) + np.mean(s[~y] < t) - 1, t) for t in np.unique(s))
    assert cut.sensitivity + cut.specificity - 1 == pytest.approx(best[0])
    d = binary.apply_cutoff(s, cut.threshold)
    assert np.mean(d[y]) == pytest.approx(cut.sensitivity) and np.mean(~d[~y]) == pytest.approx(
        cut.specificity
    )


def test_operating_points_reach_their_targets(cases):
    y, s = cases
    for target in (0.8, 0.9, 0.95):
        p = binary.operating_point(y, s, sensitivity=target)
        assert p.sensitivity >= target
        feasible = [np.mean(s[~y] < t) for t in np.unique(s) if np.mean(s[y] >= t) >= target]
        assert p.specificity == pytest.approx(max(feasible))
        q = binary.operating_point(y, s, specificity=target)
        assert q.specificity >= target
        feasible = [np.mean(s[y] >= t) for t in np.unique(s) if np.mean(s[~y] < t) >= target]
        assert q.sensitivity == pytest.approx(max(feasible))
    with pytest.raises(InputError, match="exactly one"):
        binary.operating_point(y, s)


def test_lower_direction_cutoff_rule():
    y = np.array([0, 0, 0, 1, 1, 1], bool)
    s = np.array([9.0, 8.0, 7.0, 3.0, 2.0, 1.0])
    cut = binary.youden_cutoff(y, s, direction="lower")
    assert cut.rule == "score <= threshold" and (cut.sensitivity, cut.specificity) == (1.0, 1.0)
    assert np.array_equal(binary.apply_cutoff(s, cut.threshold, "lower"), y)


def test_pr_auc_is_average_precision(cases):
    y, s = cases
    pr = binary.pr_auc(y, s)
    assert pr["average_precision"] == pytest.approx(average_precision_score(y, s))
    assert pr["prevalence"] == pytest.approx(y.mean())


def test_brier_and_reliability_on_calibrated_probabilities():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = rng.random(20000) < p  # calibrated by construction
    assert calibration.brier_score(y, p) == pytest.approx(np.mean((p - y) ** 2))
    rel = calibration.reliability(y, p, n_bins=10)
    assert rel.count.sum() == 20000 and rel.count.size == 10
    np.testing.assert_allclose(rel.observed, rel.mean_predicted, atol=0.03)
    assert rel.expected_calibration_error < 0.02
    assert np.all(rel.observed_ci[:, 0] <= rel.observed) and np.all(rel.observed <= rel.observed_ci[:, 1])
    # An overconfident model (probabilities pushed towards 0 and 1) is visibly off the diagonal.
    sharp = np.clip((p - 0.5) * 3 + 0.5, 0, 1)
    assert calibration.reliability(y, sharp).expected_calibration_error > 0.1
    quantile = calibration.reliability(y, p, strategy="quantile")
    assert quantile.count.min() > 1900


def test_calibration_refuses_scores_that_are_not_probabilities():
    with pytest.raises(InputError, match="outside"):
        calibration.brier_score(np.array([0, 1], bool), np.array([2.0, 5.0]), name="reader_x")


def test_unreachable_operating_point_is_reported_not_raised():
    from microcalcai.evaluate.analysis import Options, _operating_points
    from microcalcai.evaluate.report import _op_text

    # Half of the negatives tie with the best positive: no cut-off reaches specificity 0.9.
    y = np.array([0] * 10 + [1] * 5, bool)
    s = np.array([1.0] * 5 + [0.0] * 5 + [1.0, 0.5, 0.5, 0.2, 0.1])
    by_sens, by_spec = _operating_points(y, s, Options())
    assert by_sens["sensitivity"] >= 0.9
    assert by_spec["specificity"] is None and "no threshold reaches" in by_spec["note"]
    assert _op_text(by_spec, "sensitivity", "spec.") == "n/a (specificity>=0.9 not reachable)"

"""Seeded stratified and patient-clustered bootstrap, percentile and BCa intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from microcalcai.errors import InputError
from microcalcai.evaluate import bootstrap, roc


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    y = rng.random(260) < 0.37
    s = y * 1.2 + rng.normal(size=260)
    patients = np.sort(rng.integers(0, 145, 260))
    return y, s, patients


def test_weighted_auc_equals_auc_of_the_resampled_cases(data):
    y, s, _ = data
    w, _ = bootstrap.bootstrap_weights(y, 5, seed=3)
    stat = bootstrap.weighted_auc(y, s)
    values = stat(w.astype(float))
    for row, value in zip(w, values, strict=True):
        idx = np.repeat(np.arange(y.size), row)
        assert value == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)


def test_stratified_replicas_keep_class_sizes_and_are_seeded(data):
    y, _, _ = data
    w1, kind = bootstrap.bootstrap_weights(y, 200, seed=7)
    w2, _ = bootstrap.bootstrap_weights(y, 200, seed=7)
    w3, _ = bootstrap.bootstrap_weights(y, 200, seed=8)
    assert kind == "stratified"
    assert np.array_equal(w1, w2) and not np.array_equal(w1, w3)
    assert np.all(w1[:, y].sum(axis=1) == y.sum())
    assert np.all(w1[:, ~y].sum(axis=1) == (~y).sum())


def test_clustered_replicas_draw_whole_patients(data):
    y, _, patients = data
    w, kind = bootstrap.bootstrap_weights(y, 300, seed=1, clusters=patients)
    assert kind == "patient-clustered"
    for p in np.unique(patients)[:20]:
        rows = w[:, patients == p]
        assert np.all(rows == rows[:, :1])  # every ROI of a patient drawn the same number of times
    n_patients = np.unique(patients).size
    first_roi = np.unique(patients, return_index=True)[1]
    assert np.all(w[:, first_roi].sum(axis=1) == n_patients)
    assert np.all(w[:, y].sum(axis=1) > 0) and np.all(w[:, ~y].sum(axis=1) > 0)


def test_bootstrap_auc_ci_agrees_with_delong(asah):
    y = (asah.outcome == "Poor").to_numpy()
    s = asah.s100b.to_numpy()
    delong = roc.auc_delong(y, s)
    for method in ("percentile", "bca"):
        res = bootstrap.bootstrap_ci(bootstrap.weighted_auc(y, s), y, n_boot=2000, seed=42, method=method)
        assert res.estimate == pytest.approx(delong.auc, abs=1e-12)
        assert res.ci[0] < delong.auc < res.ci[1]
        # Same spread to within Monte Carlo error (DeLong: 0.630-0.833).
        assert res.ci == pytest.approx(delong.ci, abs=0.025)
    again = bootstrap.bootstrap_ci(bootstrap.weighted_auc(y, s), y, n_boot=2000, seed=42, method="bca")
    assert again.ci == res.ci


def test_bca_matches_scipy_on_a_simple_resample():
    # Same BCa formula as scipy.stats.bootstrap; different random draws, so agreement is to
    # Monte Carlo precision only.
    x = np.random.default_rng(3).exponential(size=60)
    reference = stats.bootstrap(
        (x,), np.mean, n_resamples=20000, method="BCa", random_state=1
    ).confidence_interval
    mean_of = lambda w: (w @ x) / w.sum(axis=1)  # noqa: E731
    ours = bootstrap.bootstrap_ci(mean_of, np.arange(60) < 30, n_boot=20000, method="bca", stratified=False)
    assert ours.resampling == "simple"
    assert ours.ci == pytest.approx((reference.low, reference.high), abs=0.015)
    # BCa moves the interval right for this skewed statistic, unlike the percentile interval.
    pct = bootstrap.bootstrap_ci(
        mean_of, np.arange(60) < 30, n_boot=20000, method="percentile", stratified=False
    )
    assert ours.ci[1] > pct.ci[1]


def test_clustered_interval_is_wider_when_rois_of_a_patient_agree():
    # Four identical ROIs per patient: resampling ROIs pretends there are four times as many
    # independent cases; resampling patients does not.
    rng = np.random.default_rng(0)
    y_pat = rng.random(60) < 0.4
    s_pat = y_pat * 1.0 + rng.normal(size=60)
    y, s, patients = np.repeat(y_pat, 4), np.repeat(s_pat, 4), np.repeat(np.arange(60), 4)
    stat = bootstrap.weighted_auc(y, s)
    flat = bootstrap.bootstrap_ci(stat, y, n_boot=1000, seed=0)
    clustered = bootstrap.bootstrap_ci(stat, y, n_boot=1000, seed=0, clusters=patients)
    width = lambda r: r.ci[1] - r.ci[0]  # noqa: E731
    assert width(clustered) > 1.6 * width(flat)


def test_roc_band_surrounds_the_curve(data):
    y, s, _ = data
    w, _ = bootstrap.bootstrap_weights(y, 500, seed=0)
    band = bootstrap.bootstrap_roc_band(y, s, w)
    fpr, tpr, _ = roc.roc_points(y, s)
    on_grid = np.interp(band["fpr"], fpr, tpr)
    inside = (band["tpr_lower"] <= on_grid + 1e-9) & (on_grid <= band["tpr_upper"] + 1e-9)
    assert inside.mean() > 0.95
    assert np.all(band["tpr_lower"] <= band["tpr_upper"])
    assert band["tpr_upper"][-1] == 1.0 and np.all(np.diff(band["tpr_median"]) >= -1e-12)


def test_bad_requests_are_refused(data):
    y, s, _ = data
    with pytest.raises(InputError, match="method"):
        bootstrap.bootstrap_ci(bootstrap.weighted_auc(y, s), y, method="studentized")
    with pytest.raises(InputError, match="at least 1"):
        bootstrap.bootstrap_weights(y, 0)
    with pytest.raises(InputError, match="two patients"):
        bootstrap.bootstrap_weights(y, 10, clusters=np.zeros(y.size))

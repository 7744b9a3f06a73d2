"""The fast (midrank) DeLong against its definition, on data with many ties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from microcalcai.evaluate import roc


def naive_delong(y, scores):
    """DeLong et al. (1988) as written: the O(m n) kernel psi(x, y) = 1, 1/2, 0."""
    pos, neg = scores[:, y], scores[:, ~y]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    auc = v10.mean(axis=1)
    m, n = pos.shape[1], neg.shape[1]
    return auc, np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_midrank_placements_equal_the_definition(seed):
    rng = np.random.default_rng(seed)
    n = 150
    y = rng.random(n) < 0.35
    # Three correlated score columns, rounded so that ties within and across classes are common.
    base = y * 1.0 + rng.normal(size=n)
    scores = np.vstack([np.round(base + rng.normal(0, s, n), 1) for s in (0.3, 0.8, 1.5)])
    auc, cov = roc.delong_covariance(y, scores)
    auc_ref, cov_ref = naive_delong(y, scores)
    np.testing.assert_allclose(auc, auc_ref, atol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, atol=1e-12)
    np.testing.assert_allclose(auc, [roc_auc_score(y, s) for s in scores], atol=1e-12)


def test_ordinal_reader_scores_with_heavy_ties():
    # BI-RADS-like scores: six levels only.
    rng = np.random.default_rng(5)
    y = rng.random(300) < 0.4
    birads = np.clip(np.round(3 + 1.2 * y + rng.normal(0, 0.9, 300)), 2, 6)
    r = roc.auc_delong(y, birads)
    auc_ref, cov_ref = naive_delong(y, birads[None, :])
    assert r.auc == pytest.approx(auc_ref[0], abs=1e-12)
    assert r.variance == pytest.approx(cov_ref[0, 0], abs=1e-12)
    assert r.ci[0] < r.auc < r.ci[1]


def test_ci_is_clipped_to_the_unit_interval():
    # A perfect separation has zero variance and AUC 1; an almost perfect one a CI that would
    # pass 1 without pROC's clipping.
    y = np.array([0, 0, 0, 1, 1, 1], bool)
    r = roc.auc_delong(y, np.array([0.1, 0.2, 0.6, 0.5, 0.8, 0.9]))
    assert r.ci[1] == 1.0 and r.ci[0] < r.auc


def test_direction_auto_follows_the_medians():
    y = np.array([0, 0, 0, 1, 1, 1], bool)
    s = np.array([5.0, 4.0, 6.0, 1.0, 2.0, 3.0])
    assert roc.resolve_direction(y, s, "auto") == "lower"
    assert roc.auc_delong(y, s, direction="auto").auc == 1.0
    assert roc.auc_delong(y, s, direction="higher").auc == 0.0

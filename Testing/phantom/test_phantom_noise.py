"""The table-based Gaussian deviates behind the texture and the detector noise are standard normal."""

from __future__ import annotations

import numpy as np
from scipy import stats

from microcalcai.phantom.noise import standard_normal


def test_deviates_are_standard_normal_and_independent():
    z32 = standard_normal(np.random.default_rng(3), (1000, 1000))
    assert z32.dtype == np.float32 and z32.shape == (1000, 1000)
    z = z32.astype(np.float64)
    assert abs(z.mean()) < 0.005 and abs(z.std() - 1.0) < 0.005
    assert abs(stats.kurtosis(z.ravel(), fisher=False) - 3.0) < 0.03
    assert abs(stats.skew(z.ravel())) < 0.01
    # the share beyond 2 sigma is the normal's (4.55%), and the tails reach past 4 sigma
    assert abs(np.mean(np.abs(z) > 2.0) - 0.0455) < 0.002 and np.abs(z).max() > 4.0
    # neighbours (four indices come from one 64-bit word) are uncorrelated
    flat = z.ravel()
    for lag in (1, 2, 3, 4, 1000):
        assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < 0.005, lag
    # and the distribution passes a Kolmogorov-Smirnov test against N(0, 1)
    assert stats.kstest(flat[::50], "norm").pvalue > 0.01


def test_deviates_are_deterministic_and_scaled():
    a = standard_normal(np.random.default_rng(7), (64, 48), scale=3.0)
    b = standard_normal(np.random.default_rng(7), (64, 48), scale=3.0)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, standard_normal(np.random.default_rng(8), (64, 48), scale=3.0))
    assert abs(standard_normal(np.random.default_rng(1), 200_000, scale=3.0).std() - 3.0) < 0.03
    assert standard_normal(np.random.default_rng(1), 7).shape == (7,)

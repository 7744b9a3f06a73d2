"""Comparing sensitivity, specificity, accuracy, PPV or NPV across models with GEE (statsmodels).

Kang et al. compared the models' proportions with generalised estimating equations because
one patient contributes several ROIs and every model reads the same ROIs. Here each (model,
case) pair where the metric is defined is one observation, the outcome is the metric's
success indicator, the model is a categorical covariate and the cluster is the patient. The
working correlation is independence; the robust (sandwich) covariance accounts for the
correlation within patients. One fit gives the overall Wald test (all models equal) and the
pairwise Wald contrasts, which are then Holm-adjusted.

The logit link is used unless some model's proportion is 0 or 1 (its logit is infinite); then
the identity link (a linear probability model, whose coefficients are the proportions
themselves) is used and the method name says so.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from microcalcai.errors import InputError
from microcalcai.evaluate.compare import OverallTest, PairedTest, wald_chi2, with_holm


def gee_compare(
    outcomes: dict[str, tuple[np.ndarray, np.ndarray]],
    clusters: np.ndarray,
    *,
    metric: str = "",
) -> OverallTest:
    """`outcomes[model] = (success, eligible)` per case, the same cases for every model."""
    import statsmodels.api as sm

    names = list(outcomes)
    if len(names) < 2:
        raise InputError("a GEE comparison needs at least two models")
    clusters = np.asarray(clusters).astype(str)
    y_parts, g_parts, c_parts = [], [], []
    for gi, name in enumerate(names):
        success, eligible = (np.asarray(a, bool) for a in outcomes[name])
        if success.shape != clusters.shape or eligible.shape != clusters.shape:
            raise InputError(f"model {name!r}: outcome vectors do not match the {clusters.size} cases")
        y_parts.append(success[eligible].astype(float))
        g_parts.append(np.full(int(eligible.sum()), gi))
        c_parts.append(clusters[eligible])
    counts = [p.size for p in y_parts]
    props = [float(p.mean()) if p.size else None for p in y_parts]
    if any(c == 0 for c in counts):
        empty = [n for n, c in zip(names, counts, strict=True) if c == 0]
        return OverallTest("gee", None, None, None, note=f"{metric} not defined for {', '.join(empty)}")
    yv, gv = np.concatenate(y_parts), np.concatenate(g_parts)
    _, cv = np.unique(np.concatenate(c_parts), return_inverse=True)
    order = np.argsort(cv, kind="stable")  # statsmodels wants each cluster's rows together
    yv, gv, cv = yv[order], gv[order], cv[order]
    exog = np.column_stack([np.ones_like(yv)] + [(gv == k).astype(float) for k in range(1, len(names))])
    degenerate = any(p in (0.0, 1.0) for p in props)
    if degenerate:
        family, method = sm.families.Gaussian(), "gee-identity"
    else:
        family, method = sm.families.Binomial(), "gee-logit"
    if np.all(yv == yv[0]):
        # Every outcome identical: every model has the same proportion and nothing varies.
        pairs = [
            PairedTest(names[i], names[j], method, 0.0, 1.0, props[i], props[j], 0.0)
            for i, j in itertools.combinations(range(len(names)), 2)
        ]
        return OverallTest(
            method, 0.0, float(len(names) - 1), 1.0, with_holm(pairs), note="all outcomes equal"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; failures are caught below
        try:
            fit = sm.GEE(yv, exog, groups=cv, family=family, cov_struct=sm.cov_struct.Independence()).fit()
        except Exception as exc:  # statsmodels raises several types on singular designs
            return OverallTest(method, None, None, None, note=f"GEE could not be fitted for {metric}: {exc}")
    params, cov = np.asarray(fit.params), np.asarray(fit.cov_robust)
    k = len(names)
    contrast = np.eye(k)[1:]  # the k-1 model coefficients: all zero <=> all models equal
    overall_stat, overall_p, overall_df = _wald(contrast, params, cov)
    pairs = []
    for i, j in itertools.combinations(range(k), 2):
        c = np.zeros(k)
        if i:
            c[i] += 1.0
        if j:
            c[j] -= 1.0
        stat, p, _ = _wald(c[None, :], params, cov)
        note = "" if p is not None else "not estimable (zero variance)"
        pairs.append(
            PairedTest(
                names[i],
                names[j],
                method,
                float(np.sign(c @ params) * np.sqrt(stat)) if stat is not None else None,
                p,
                props[i],
                props[j],
                props[i] - props[j],
                note=note,
            )
        )
    with_holm(pairs)
    note = "" if overall_p is not None else "overall test not estimable (a difference with zero variance)"
    if overall_p is not None and overall_df < k - 1:
        note = f"{k - 1 - overall_df} contrast(s) without variance (models deciding identically) left out"
    return OverallTest(method, overall_stat, float(overall_df), overall_p, pairs, note=note)


def _wald(
    contrast: np.ndarray, params: np.ndarray, cov: np.ndarray
) -> tuple[float | None, float | None, int]:
    """Wald chi-square of contrast @ params = 0 (two models deciding identically on every case
    have a difference without variance: compare.wald_chi2 drops that direction)."""
    return wald_chi2(contrast @ params, contrast @ cov @ contrast.T)

"""Comparing models: DeLong tests of AUCs, McNemar, Holm, and Wilcoxon across CV folds.

The DeLong tests are written by hand on top of roc.delong_covariance (no well-kept Python
library has them); they reproduce pROC's roc.test: the paired test is a Z test with a normal
p-value, the unpaired test a t test with Welch-Satterthwaite degrees of freedom. Everything
else delegates to scipy and statsmodels.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from microcalcai.errors import InputError
from microcalcai.evaluate.inputs import check_two_classes
from microcalcai.evaluate.roc import delong_covariance, normal_ci, oriented, resolve_direction


@dataclass
class PairedTest:
    a: str
    b: str
    method: str
    statistic: float | None  # Z (paired DeLong), D (unpaired DeLong), chi2 or exact count (McNemar)
    p: float | None  # None: not estimable, with the reason in `note`
    estimate_a: float | None = None
    estimate_b: float | None = None
    difference: float | None = None
    difference_ci: tuple[float, float] | None = None
    df: float | None = None
    p_holm: float | None = None
    note: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        if self.difference_ci is not None:
            d["difference_ci"] = list(self.difference_ci)
        return d


@dataclass
class OverallTest:
    method: str
    statistic: float | None
    df: float | None
    p: float | None
    pairwise: list[PairedTest] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "statistic": self.statistic,
            "df": self.df,
            "p": self.p,
            "note": self.note,
            "pairwise": [t.as_dict() for t in self.pairwise],
        }


def _two_sided_normal_p(z: float) -> float:
    return float(2.0 * stats.norm.sf(abs(z)))


def delong_paired(
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    names: tuple[str, str] = ("a", "b"),
    directions: tuple[str, str] = ("higher", "higher"),
    conf_level: float = 0.95,
) -> PairedTest:
    """DeLong's test for two correlated AUCs (both scores measured on the same cases)."""
    y = np.asarray(y, dtype=bool)
    check_two_classes(y)
    da, db = resolve_direction(y, a, directions[0]), resolve_direction(y, b, directions[1])
    note = (
        "" if da == db else "the two scores run in opposite directions; DeLong's test assumes one direction"
    )
    auc, cov = delong_covariance(y, np.vstack([oriented(a, da), oriented(b, db)]))
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    z: float | None
    p: float | None
    if var > 0.0:
        z = float(diff / np.sqrt(var))
        p = _two_sided_normal_p(z)
    elif diff == 0.0:
        z, p = 0.0, 1.0  # identical rankings: pROC reports Z = 0, p = 1
    else:
        # Both AUCs exactly 0, 1 or from a constant score: DeLong has no variance to test with
        # (pROC would print Z = Inf); reported as not estimable rather than as p = 0.
        z, p = None, None
        note = "not estimable: the DeLong variance of the difference is zero (AUCs of exactly 0 or 1)"
    return PairedTest(
        a=names[0],
        b=names[1],
        method="delong-paired",
        statistic=z,
        p=p,
        estimate_a=float(auc[0]),
        estimate_b=float(auc[1]),
        difference=diff,
        difference_ci=normal_ci(diff, np.sqrt(max(var, 0.0)), conf_level, clip=None),
        note=note,
    )


def delong_unpaired(
    y_a: np.ndarray,
    a: np.ndarray,
    y_b: np.ndarray,
    b: np.ndarray,
    *,
    names: tuple[str, str] = ("a", "b"),
    directions: tuple[str, str] = ("higher", "higher"),
) -> PairedTest:
    """DeLong's test for two AUCs measured on different cases (t test, Welch-Satterthwaite df)."""
    results = []
    for y, s, d in ((y_a, a, directions[0]), (y_b, b, directions[1])):
        y = np.asarray(y, dtype=bool)
        check_two_classes(y)
        d = resolve_direction(y, s, d)
        auc, cov = delong_covariance(y, oriented(np.asarray(s, dtype=np.float64), d))
        results.append((float(auc[0]), float(cov[0, 0]), y.size))
    (auc_a, var_a, n_a), (auc_b, var_b, n_b) = results
    se = np.sqrt(var_a + var_b)
    t = (auc_a - auc_b) / se
    df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    return PairedTest(
        a=names[0],
        b=names[1],
        method="delong-unpaired",
        statistic=float(t),
        p=float(2.0 * stats.t.sf(abs(t), df)),
        estimate_a=auc_a,
        estimate_b=auc_b,
        difference=auc_a - auc_b,
        df=float(df),
    )


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels), in the input order."""
    if not pvalues:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(pvalues, method="holm")[1]]


def with_holm(tests: list[PairedTest]) -> list[PairedTest]:
    """Set p_holm over the tests that have a p-value (a non-estimable one keeps None)."""
    valid = [t for t in tests if t.p is not None]
    for t, adj in zip(valid, holm([t.p for t in valid]), strict=True):
        t.p_holm = adj
    return tests


def delong_overall(
    y: np.ndarray, scores: dict[str, np.ndarray], *, direction: str = "higher", conf_level: float = 0.95
) -> OverallTest:
    """Are k correlated AUCs all equal? DeLong's chi-square with k-1 df, then pairwise with Holm.

    The contrast matrix compares each AUC with the next; the Wald statistic does not depend
    on which full-rank set of contrasts is used. For two scores it equals the paired Z squared.
    """
    names = list(scores)
    if len(names) < 2:
        raise InputError("an overall comparison needs at least two score columns")
    y = np.asarray(y, dtype=bool)
    rows = [
        oriented(np.asarray(scores[k], np.float64), resolve_direction(y, scores[k], direction)) for k in names
    ]
    auc, cov = delong_covariance(y, np.vstack(rows))
    k = len(names)
    contrast = np.eye(k)[:-1] - np.eye(k, k=1)[:-1]
    chi2, p, df = wald_chi2(contrast @ auc, contrast @ cov @ contrast.T)
    pairwise = [
        delong_paired(y, rows[i], rows[j], names=(names[i], names[j]), conf_level=conf_level)
        for i, j in itertools.combinations(range(k), 2)
    ]
    note = "" if p is not None else "not estimable: an AUC difference without variance"
    if p is not None and df < k - 1:
        note = f"{k - 1 - df} contrast(s) without variance (identical rankings) left out"
    return OverallTest("delong-chi2", chi2, float(df), p, with_holm(pairwise), note=note)


def wald_chi2(est: np.ndarray, var: np.ndarray) -> tuple[float | None, float | None, int]:
    """Wald chi-square of est = 0 given its covariance, on the directions that have variance.

    Two scores that rank every case alike (or two models deciding alike) give a difference with
    zero variance; that direction is dropped and the degrees of freedom shrink with it. A
    non-zero estimate along a direction without variance is not estimable: (None, None, 0).
    """
    est, var = np.atleast_1d(est), np.atleast_2d(var)
    if not np.all(np.isfinite(var)):
        return None, None, 0
    if np.allclose(est, 0.0, atol=1e-12):
        return 0.0, 1.0, est.size
    eigval, eigvec = np.linalg.eigh(var)
    keep = eigval > 1e-10 * max(float(eigval.max()), 1e-300)
    proj = eigvec.T @ est
    if np.any(np.abs(proj[~keep]) > 1e-8) or not keep.any():
        return None, None, 0
    stat = float(np.sum(proj[keep] ** 2 / eigval[keep]))
    df = int(keep.sum())
    return stat, float(stats.chi2.sf(stat, df)), df


def mcnemar_paired(
    correct_a: np.ndarray, correct_b: np.ndarray, *, names=("a", "b"), metric=""
) -> PairedTest:
    """McNemar's exact test on paired binary outcomes (statsmodels; exact binomial on discordant pairs)."""
    from statsmodels.stats.contingency_tables import mcnemar

    ca, cb = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if ca.shape != cb.shape or ca.size == 0:
        raise InputError(
            f"McNemar's test needs two outcome vectors of the same non-zero length for {metric!r}"
        )
    table = np.array([[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]])
    result = mcnemar(table, exact=True)
    return PairedTest(
        a=names[0],
        b=names[1],
        method="mcnemar-exact",
        statistic=float(result.statistic),
        p=float(result.pvalue),
        estimate_a=float(ca.mean()),
        estimate_b=float(cb.mean()),
        difference=float(ca.mean() - cb.mean()),
        note=f"discordant pairs: {table[0, 1]} vs {table[1, 0]}",
    )


@dataclass
class FoldTest:
    method: str
    statistic: float
    p: float
    n_folds: int
    min_attainable_p: float
    median_difference: float
    warning: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def wilcoxon_folds(a: np.ndarray, b: np.ndarray, *, alpha: float = 0.05, names=("a", "b")) -> FoldTest:
    """Wilcoxon signed-rank test of per-fold metrics (Shia), exact p, with a power warning.

    With n folds the smallest two-sided exact p-value is 2 / 2**n (0.0625 for five folds), so
    fewer than six folds can never reach p < 0.05: the result carries a warning saying so.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(
            f"per-fold values of {names[0]!r} and {names[1]!r} must be two vectors of one length"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InputError("per-fold values must be finite numbers")
    d = a - b
    if np.count_nonzero(d) == 0:
        raise InputError(f"{names[0]!r} and {names[1]!r} are equal in every fold: nothing to test")
    n = int(np.count_nonzero(d))
    min_p = min(1.0, 2.0 / 2.0**n)
    # method="exact" (not "auto") so the p-value is exact also for n > 50; scipy drops zero
    # differences by default (zero_method="wilcox"), matching R's wilcox.test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about exact p with ties; the note below says it
        res = stats.wilcoxon(a, b, method="exact", alternative="two-sided")
    warning = ""
    if min_p >= alpha:
        warning = (
            f"with {n} folds (non-zero differences) the smallest attainable two-sided exact p-value is "
            f"{min_p:.4g} >= {alpha}: this test cannot reach significance; use more folds or report "
            "the per-fold differences instead"
        )
        warnings.warn(warning, stacklevel=2)
    tied = np.unique(np.abs(d[d != 0])).size < n
    if tied:
        warning = (warning + "; " if warning else "") + "tied |differences|: the exact p is approximate"
    return FoldTest(
        method="wilcoxon-signed-rank-exact",
        statistic=float(res.statistic),
        p=float(res.pvalue),
        n_folds=int(a.size),
        min_attainable_p=min_p,
        median_difference=float(np.median(d)),
        warning=warning,
    )

"""Seeded bootstrap: stratified or patient-clustered resampling, percentile and BCa intervals.

A replica is represented by how many times each case was drawn (a row of integer weights),
not by a list of indices. Because the scores never change between replicas, weighted
statistics over a (replicas x cases) weight matrix are whole-array numpy operations: 1000
AUC replicas on 260 cases take milliseconds, and the same machinery gives the jackknife for
BCa (weights of one with a single case, or a single patient, set to zero).

scipy.stats.bootstrap is not used because it cannot stratify by class (as pROC and Kang do)
or resample patients instead of ROIs; its BCa formula is the same as here (Efron 1987) and
Testing/evaluate checks the two agree on a plain resample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from microcalcai.errors import InputError

DEFAULT_REPLICAS = 1000  # as Kang et al. (Fig. 1b)
METHODS = ("percentile", "bca")

Statistic = Callable[[np.ndarray], np.ndarray]  # weights (B, n) -> values (B,)


@dataclass
class BootstrapResult:
    estimate: float
    ci: tuple[float, float]
    method: str
    n_boot: int
    seed: int
    resampling: str  # "stratified", "patient-clustered" or "simple"
    conf_level: float
    replicas: np.ndarray

    def as_dict(self) -> dict:
        return {
            "estimate": self.estimate,
            "ci": list(self.ci),
            "method": self.method,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "resampling": self.resampling,
            "conf_level": self.conf_level,
        }


def bootstrap_weights(
    y: np.ndarray,
    n_boot: int = DEFAULT_REPLICAS,
    *,
    seed: int = 0,
    stratified: bool = True,
    clusters: np.ndarray | None = None,
) -> tuple[np.ndarray, str]:
    """(n_boot, n) draw counts. Stratified keeps each class's size; clustered draws patients.

    Clustered replicas that happen to lack a class are drawn again, so every replica has
    both classes (a class-free replica has no AUC, sensitivity or specificity).
    """
    y = np.asarray(y, dtype=bool)
    if n_boot < 1:
        raise InputError(f"the number of bootstrap replicas must be at least 1, not {n_boot}")
    rng = np.random.default_rng(seed)
    n = y.size
    if clusters is not None:
        _, cluster_of = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
        n_clusters = int(cluster_of.max()) + 1
        if n_clusters < 2:
            raise InputError("a patient-clustered bootstrap needs at least two patients")
        weights = np.empty((n_boot, n), dtype=np.int32)
        todo = np.arange(n_boot)
        for _attempt in range(100):
            counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=todo.size)
            weights[todo] = counts[:, cluster_of]
            w_pos = weights[todo][:, y].sum(axis=1)
            w_neg = weights[todo][:, ~y].sum(axis=1)
            todo = todo[(w_pos == 0) | (w_neg == 0)]
            if todo.size == 0:
                return weights, "patient-clustered"
        raise InputError("could not draw patient-clustered replicas holding both classes; too few patients")
    if stratified:
        weights = np.zeros((n_boot, n), dtype=np.int32)
        for cls in (True, False):
            idx = np.flatnonzero(y == cls)
            if idx.size:
                weights[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=n_boot)
        return weights, "stratified"
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.int32)
    return weights, "simple"


def jackknife(
    statistic: Statistic, n: int, clusters: np.ndarray | None = None, chunk: int = 256
) -> np.ndarray:
    """Leave-one-out (or leave-one-patient-out) values of a weighted statistic, for BCa.

    Computed in chunks of weight rows so that memory stays O(chunk * n) for large n.
    """
    if clusters is None:
        cluster_of = np.arange(n)
    else:
        _, cluster_of = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    n_out = int(cluster_of.max()) + 1
    values = np.empty(n_out)
    for start in range(0, n_out, chunk):
        left_out = np.arange(start, min(start + chunk, n_out))
        values[left_out] = statistic(1.0 - (cluster_of[None, :] == left_out[:, None]))
    return values


def percentile_ci(replicas: np.ndarray, conf_level: float = 0.95) -> tuple[float, float]:
    alpha = 1.0 - conf_level
    lo, hi = np.quantile(replicas, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bca_ci(
    replicas: np.ndarray, estimate: float, jackknife_values: np.ndarray, conf_level: float = 0.95
) -> tuple[float, float]:
    """Bias-corrected and accelerated interval (Efron 1987; Efron & Tibshirani 1993, 14.3)."""
    alpha = 1.0 - conf_level
    below = np.mean(replicas < estimate) + 0.5 * np.mean(replicas == estimate)
    if below <= 0.0 or below >= 1.0:
        # Every replica on one side of the estimate: the bias correction is infinite.
        raise InputError("BCa interval undefined: all bootstrap replicas lie on one side of the estimate")
    z0 = stats.norm.ppf(below)
    dev = jackknife_values.mean() - jackknife_values
    denom = 6.0 * np.sum(dev**2) ** 1.5
    accel = float(np.sum(dev**3) / denom) if denom > 0 else 0.0
    z = stats.norm.ppf([alpha / 2.0, 1.0 - alpha / 2.0])
    adjusted = stats.norm.cdf(z0 + (z0 + z) / (1.0 - accel * (z0 + z)))
    lo, hi = np.quantile(replicas, adjusted)
    return float(lo), float(hi)


def bootstrap_ci(
    statistic: Statistic,
    y: np.ndarray,
    *,
    n_boot: int = DEFAULT_REPLICAS,
    seed: int = 0,
    conf_level: float = 0.95,
    method: str = "percentile",
    stratified: bool = True,
    clusters: np.ndarray | None = None,
    weights: tuple[np.ndarray, str] | None = None,
) -> BootstrapResult:
    """Bootstrap CI of a weighted statistic. Pass `weights` to reuse one set of replicas."""
    if method not in METHODS:
        raise InputError(f"bootstrap CI method must be one of {', '.join(METHODS)}, not {method!r}")
    y = np.asarray(y, dtype=bool)
    w, resampling = weights or bootstrap_weights(
        y, n_boot, seed=seed, stratified=stratified, clusters=clusters
    )
    estimate = float(statistic(np.ones((1, y.size)))[0])
    replicas = np.asarray(statistic(w.astype(np.float64)), dtype=np.float64)
    finite = np.isfinite(replicas)
    if not finite.all():
        raise InputError(
            f"{np.count_nonzero(~finite)} of {replicas.size} bootstrap replicas have no value for this "
            "statistic (for example no positive decisions for a PPV); report it without a bootstrap CI"
        )
    if method == "bca":
        ci = bca_ci(replicas, estimate, jackknife(statistic, y.size, clusters), conf_level)
    else:
        ci = percentile_ci(replicas, conf_level)
    return BootstrapResult(estimate, ci, method, int(w.shape[0]), seed, resampling, conf_level, replicas)


# Weighted statistics: each takes weights (B, n) and returns (B,) values.


def weighted_auc(y: np.ndarray, scores: np.ndarray) -> Statistic:
    """AUC (ties 1/2) as a function of case weights, O(B n) after one sort of the scores."""
    y = np.asarray(y, dtype=bool)
    order = np.argsort(scores, kind="stable")
    sorted_scores = np.asarray(scores)[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    pos_sorted = y[order]

    def stat(w: np.ndarray) -> np.ndarray:
        w = np.atleast_2d(w)[:, order]
        w_pos = np.add.reduceat(np.where(pos_sorted, w, 0.0), starts, axis=1)
        w_neg = np.add.reduceat(np.where(pos_sorted, 0.0, w), starts, axis=1)
        neg_below = np.cumsum(w_neg, axis=1) - w_neg
        num = np.sum(w_pos * (neg_below + 0.5 * w_neg), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / (w_pos.sum(axis=1) * w_neg.sum(axis=1))

    return stat


def weighted_proportion(success: np.ndarray, eligible: np.ndarray) -> Statistic:
    """sum(w * success * eligible) / sum(w * eligible): sensitivity, PPV, accuracy..."""
    num_mask = (np.asarray(success, bool) & np.asarray(eligible, bool)).astype(np.float64)
    den_mask = np.asarray(eligible, bool).astype(np.float64)

    def stat(w: np.ndarray) -> np.ndarray:
        w = np.atleast_2d(w)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ num_mask) / (w @ den_mask)

    return stat


def bootstrap_roc_band(
    y: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray,
    *,
    fpr_grid: np.ndarray | None = None,
    conf_level: float = 0.95,
) -> dict[str, np.ndarray]:
    """Pointwise percentile band of sensitivity over a grid of 1 - specificity (Kang Fig. 1b)."""
    y = np.asarray(y, dtype=bool)
    grid = np.linspace(0.0, 1.0, 101) if fpr_grid is None else np.asarray(fpr_grid)
    order = np.argsort(-np.asarray(scores), kind="stable")
    s_sorted = np.asarray(scores)[order]
    # Thresholds at each distinct score, from the highest down: cumulative weights give the
    # curve of every replica at once.
    ends = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s_sorted.size - 1]
    pos_sorted = y[order]
    w = np.atleast_2d(weights).astype(np.float64)[:, order]
    tp = np.cumsum(np.where(pos_sorted, w, 0.0), axis=1)[:, ends]
    fp = np.cumsum(np.where(pos_sorted, 0.0, w), axis=1)[:, ends]
    tpr = np.hstack([np.zeros((w.shape[0], 1)), tp / tp[:, -1:]])
    fpr = np.hstack([np.zeros((w.shape[0], 1)), fp / fp[:, -1:]])
    # Sensitivity at a given FPR on the empirical curve drawn as straight segments between its
    # points (ties between the classes give diagonal segments, as pROC draws them); on a
    # vertical segment the upper end is taken.
    sens = np.empty((w.shape[0], grid.size))
    for b in range(w.shape[0]):
        i = np.searchsorted(fpr[b], grid, side="right") - 1
        j = np.minimum(i + 1, fpr.shape[1] - 1)
        span = fpr[b][j] - fpr[b][i]
        frac = np.divide(grid - fpr[b][i], span, out=np.zeros_like(grid), where=span > 0)
        sens[b] = tpr[b][i] + frac * (tpr[b][j] - tpr[b][i])
    alpha = 1.0 - conf_level
    lo, hi = np.quantile(sens, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return {"fpr": grid, "tpr_lower": lo, "tpr_upper": hi, "tpr_median": np.median(sens, axis=0)}

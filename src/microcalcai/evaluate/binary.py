"""Binary decisions: sensitivity, specificity, accuracy, PPV, NPV with intervals; cut-offs; PR-AUC.

Intervals come from statsmodels (Wilson; exact Clopper-Pearson is its "beta" method) or from
the bootstrap in bootstrap.py. A proportion whose denominator is empty (a PPV when the model
never says positive) has no value; it is returned with value None and a note saying why, so a
report shows the reason instead of NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from microcalcai.errors import InputError
from microcalcai.evaluate.bootstrap import bootstrap_ci, weighted_proportion
from microcalcai.evaluate.roc import oriented, roc_points

CI_METHODS = {"wilson": "wilson", "clopper-pearson": "beta"}
METRICS = ("sensitivity", "specificity", "accuracy", "ppv", "npv")
METRIC_LABELS = {
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "accuracy": "Accuracy",
    "ppv": "PPV",
    "npv": "NPV",
}


@dataclass
class Proportion:
    value: float | None
    ci: tuple[float, float] | None
    successes: int
    total: int
    method: str
    note: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return d


def proportion(successes: int, total: int, *, method: str = "wilson", conf_level: float = 0.95) -> Proportion:
    if method not in CI_METHODS:
        raise InputError(f"interval method must be one of {', '.join(CI_METHODS)}, not {method!r}")
    if total == 0:
        return Proportion(None, None, 0, 0, method, note="not defined: no cases in the denominator")
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, total, alpha=1.0 - conf_level, method=CI_METHODS[method])
    return Proportion(successes / total, (float(lo), float(hi)), int(successes), int(total), method)


def outcome_masks(y: np.ndarray, decision: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each metric: (success, eligible) per case. The GEE and McNemar comparisons use these too."""
    y, d = np.asarray(y, bool), np.asarray(decision, bool)
    every = np.ones_like(y)
    return {
        "sensitivity": (d, y),
        "specificity": (~d, ~y),
        "accuracy": (d == y, every),
        "ppv": (y, d),
        "npv": (~y, ~d),
    }


def confusion_counts(y: np.ndarray, decision: np.ndarray) -> dict[str, int]:
    y, d = np.asarray(y, bool), np.asarray(decision, bool)
    return {
        "tp": int(np.sum(y & d)),
        "fn": int(np.sum(y & ~d)),
        "fp": int(np.sum(~y & d)),
        "tn": int(np.sum(~y & ~d)),
    }


def binary_metrics(
    y: np.ndarray, decision: np.ndarray, *, method: str = "wilson", conf_level: float = 0.95
) -> dict[str, Proportion]:
    """Sensitivity, specificity, accuracy, PPV and NPV with Wilson or Clopper-Pearson intervals."""
    out = {}
    for name, (success, eligible) in outcome_masks(y, decision).items():
        out[name] = proportion(
            int(np.sum(success & eligible)), int(np.sum(eligible)), method=method, conf_level=conf_level
        )
    return out


def bootstrap_metric_cis(
    y: np.ndarray,
    decision: np.ndarray,
    weights: tuple[np.ndarray, str],
    *,
    conf_level: float = 0.95,
    method: str = "percentile",
) -> dict[str, Proportion]:
    """The same five metrics with bootstrap intervals drawn from shared replica weights."""
    out = {}
    for name, (success, eligible) in outcome_masks(y, decision).items():
        k, n = int(np.sum(success & eligible)), int(np.sum(eligible))
        label = f"bootstrap-{method}-{weights[1]}"
        try:
            res = bootstrap_ci(
                weighted_proportion(success, eligible),
                y,
                weights=weights,
                conf_level=conf_level,
                method=method,
            )
        except InputError as exc:
            out[name] = Proportion(k / n if n else None, None, k, n, label, note=str(exc))
            continue
        out[name] = Proportion(res.estimate, res.ci, k, n, label)
    return out


def f1_scores(y: np.ndarray, decision: np.ndarray) -> dict[str, float]:
    """F1 of the positive class and the class-size weighted F1 (scikit-learn)."""
    from sklearn.metrics import f1_score

    y, d = np.asarray(y, bool), np.asarray(decision, bool)
    return {
        "f1": float(f1_score(y, d, zero_division=0.0)),
        "f1_weighted": float(f1_score(y, d, average="weighted", zero_division=0.0)),
    }


@dataclass
class Cutoff:
    threshold: float
    sensitivity: float
    specificity: float
    method: str
    rule: str  # how to apply it: positive when score >= threshold (or <= for direction "lower")

    def as_dict(self) -> dict:
        return asdict(self)


def _rule(direction: str) -> str:
    return "score <= threshold" if direction == "lower" else "score >= threshold"


def youden_cutoff(y: np.ndarray, scores: np.ndarray, *, direction: str = "higher") -> Cutoff:
    """The threshold with maximal Youden index (sensitivity + specificity - 1).

    The threshold is an observed score and a case is positive when its score is >= it. Among
    ties of the index the highest threshold (fewest positive calls) is taken.
    """
    fpr, tpr, thr = roc_points(y, scores, direction)
    valid = np.isfinite(thr)
    j = np.where(valid, tpr - fpr, -np.inf)
    best = int(np.argmax(j))
    return Cutoff(float(thr[best]), float(tpr[best]), float(1 - fpr[best]), "youden", _rule(direction))


def operating_point(
    y: np.ndarray,
    scores: np.ndarray,
    *,
    sensitivity: float | None = None,
    specificity: float | None = None,
    direction: str = "higher",
) -> Cutoff:
    """The cut-off reaching at least the target sensitivity (or specificity) with the best other value."""
    if (sensitivity is None) == (specificity is None):
        raise InputError("give exactly one of a target sensitivity or a target specificity")
    target = sensitivity if sensitivity is not None else specificity
    if not 0.0 <= target <= 1.0:
        raise InputError(f"a target sensitivity or specificity lies in [0, 1], not {target}")
    fpr, tpr, thr = roc_points(y, scores, direction)
    valid = np.isfinite(thr)
    if sensitivity is not None:
        ok = np.flatnonzero(valid & (tpr >= sensitivity - 1e-12))
        best = ok[np.argmin(fpr[ok])] if ok.size else None
        method = f"sensitivity>={sensitivity:g}"
    else:
        ok = np.flatnonzero(valid & (1 - fpr >= specificity - 1e-12))
        best = ok[np.argmax(tpr[ok])] if ok.size else None
        method = f"specificity>={specificity:g}"
    if best is None:
        raise InputError(f"no threshold reaches {method} on these scores")
    return Cutoff(float(thr[best]), float(tpr[best]), float(1 - fpr[best]), method, _rule(direction))


def apply_cutoff(scores: np.ndarray, threshold: float, direction: str = "higher") -> np.ndarray:
    return oriented(np.asarray(scores, np.float64), direction) >= oriented(np.float64(threshold), direction)


def pr_auc(y: np.ndarray, scores: np.ndarray, *, direction: str = "higher") -> dict:
    """Average precision (scikit-learn's step-wise PR-AUC), with the prevalence as the no-skill line."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    s = oriented(np.asarray(scores, np.float64), direction)
    precision, recall, _ = precision_recall_curve(y, s)
    return {
        "average_precision": float(average_precision_score(y, s)),
        "prevalence": float(np.mean(y)),
        "precision": precision,
        "recall": recall,
    }

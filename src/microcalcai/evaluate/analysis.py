"""Everything a Table 1 needs, per model and across models, as plain data (no rendering).

Per score column: the cut-off (the stored validation threshold, else the maximal-Youden
cut-off on the evaluated data, flagged as optimistic), AUC with DeLong and bootstrap CIs,
sensitivity, specificity, accuracy, PPV and NPV with Wilson/Clopper-Pearson and bootstrap
CIs, F1, PR-AUC, Brier score and reliability bins, operating points, the ROC curve and its
bootstrap band. Across columns: DeLong's overall chi-square with pairwise DeLong tests, and
for each proportion an overall GEE test with pairwise McNemar (one ROI per patient) or GEE
(several ROIs per patient) tests, all pairwise p-values Holm-adjusted within a metric.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from microcalcai.errors import InputError
from microcalcai.evaluate import binary, bootstrap, calibration, compare, gee
from microcalcai.evaluate.predictions import PredictionSet, ScoreColumn
from microcalcai.evaluate.roc import auc_delong, roc_points

log = logging.getLogger(__name__)

PAIRED_MCNEMAR = ("sensitivity", "specificity", "accuracy")  # defined on the same cases for every model


@dataclass
class Options:
    n_boot: int = bootstrap.DEFAULT_REPLICAS
    seed: int = 0
    conf_level: float = 0.95
    ci_method: str = "wilson"  # for the proportions in Table 1: wilson, clopper-pearson or bootstrap
    target_sensitivity: float = 0.90
    target_specificity: float = 0.90
    reader_threshold: float | None = None  # reader scores at or above it are positive; None: Youden
    reader_threshold_text: str = ""  # how the user wrote it, e.g. "4a", for the table


def evaluate_predictions(data: PredictionSet, options: Options | None = None) -> dict:
    """The whole evaluation as a JSON-ready dict (numbers, None where undefined, with notes)."""
    opt = options or Options()
    if opt.ci_method not in ("wilson", "clopper-pearson", "bootstrap"):
        raise InputError(f"--ci must be wilson, clopper-pearson or bootstrap, not {opt.ci_method!r}")
    y = data.y
    clusters = data.patient_id if data.clustered else None
    weights = bootstrap.bootstrap_weights(y, opt.n_boot, seed=opt.seed, clusters=clusters)
    models, decisions, started = {}, {}, time.monotonic()
    for i, col in enumerate(data.columns, 1):
        models[col.name], decisions[col.name] = _one_model(y, col, weights, clusters, opt)
        log.info("evaluated %s (%d/%d, %.1f s)", col.name, i, len(data.columns), time.monotonic() - started)
    result = {
        "n_cases": int(y.size),
        "n_malignant": int(y.sum()),
        "n_benign": int((~y).sum()),
        "n_patients": int(np.unique(data.clusters).size),
        "clustered": bool(data.clustered),
        "conf_level": opt.conf_level,
        "bootstrap": {"n_boot": opt.n_boot, "seed": opt.seed, "resampling": weights[1]},
        "ci_method": opt.ci_method,
        "sources": data.sources,
        "notes": list(data.notes),
        "demonstration": list(data.demonstration),
        "models": models,
        "comparisons": _comparisons(data, decisions, opt) if len(data.columns) > 1 else {},
    }
    if data.clustered:
        result["notes"].append(
            f"{y.size} ROIs from {result['n_patients']} patients: bootstrap resamples patients and "
            "proportions are compared with GEE clustered by patient; the AUC CIs in Table 1 are "
            "DeLong's, which treat ROIs as independent (the patient-clustered bootstrap CIs are under "
            "Further measures)"
        )
    return result


def _one_model(y, col: ScoreColumn, weights, clusters, opt: Options) -> tuple[dict, np.ndarray]:
    s = col.scores
    auc = auc_delong(y, s, conf_level=opt.conf_level)
    auc_stat = bootstrap.weighted_auc(y, s)
    boot = {}
    for m in bootstrap.METHODS:
        try:
            boot[m] = bootstrap.bootstrap_ci(
                auc_stat, y, weights=weights, clusters=clusters, conf_level=opt.conf_level, method=m
            ).as_dict()
        except InputError as exc:  # e.g. BCa when every replica equals the estimate (AUC = 1)
            boot[m] = {"estimate": auc.auc, "ci": None, "method": m, "note": str(exc)}
    if col.kind == "reader" and opt.reader_threshold is not None:
        # A reader's clinical cut-off, e.g. BI-RADS 4 (biopsy recommended): 4, 4a-4c and 5 positive.
        cutoff = {"threshold": opt.reader_threshold, "method": "given", "rule": "score >= threshold"}
        cutoff["label"] = f"\u2265 {opt.reader_threshold_text or format(opt.reader_threshold, '.3g')}"
        decision = s >= opt.reader_threshold
        cutoff_note = ""
    elif isinstance(col.threshold, np.ndarray):
        lo, hi = float(col.threshold.min()), float(col.threshold.max())
        cutoff = {
            "threshold": None,
            "threshold_range": [lo, hi],
            "method": "stored-per-row",
            "rule": "probability >= the row's threshold",
            "label": f"per fold, {lo:.3g}\u2013{hi:.3g}",
        }
        decision = col.decision if col.decision is not None else s >= col.threshold
        cutoff_note = "each row's own stored threshold (out-of-fold predictions: each fold chose its own)"
    elif col.threshold is not None:
        cutoff = {"threshold": col.threshold, "method": "stored", "rule": "probability >= threshold"}
        decision = col.decision if col.decision is not None else s >= col.threshold
        cutoff_note = ""
    else:
        yc = binary.youden_cutoff(y, s)
        cutoff = yc.as_dict()
        decision = binary.apply_cutoff(s, yc.threshold)
        cutoff_note = (
            "maximal-Youden cut-off chosen on the evaluated cases themselves (no validation threshold "
            "stored for this column): its sensitivity and specificity are optimistic"
        )
    cutoff["note"] = cutoff_note
    if "label" not in cutoff:
        cutoff["label"] = f"\u2265 {cutoff['threshold']:.3g}"
    ci_method = "wilson" if opt.ci_method == "bootstrap" else opt.ci_method
    exact = binary.binary_metrics(y, decision, method=ci_method, conf_level=opt.conf_level)
    boot_props = binary.bootstrap_metric_cis(y, decision, weights, conf_level=opt.conf_level)
    table = boot_props if opt.ci_method == "bootstrap" else exact
    fpr, tpr, thr = roc_points(y, s)
    band = bootstrap.bootstrap_roc_band(y, s, weights[0], conf_level=opt.conf_level)
    pr = binary.pr_auc(y, s)
    out = {
        "kind": col.kind,
        "source": col.source,
        "direction": auc.direction,
        "cutoff": cutoff,
        "auc": auc.auc,
        "auc_ci": list(auc.ci),
        "auc_ci_method": "delong",
        "auc_variance": auc.variance,
        "auc_bootstrap": boot,
        "metrics": {k: v.as_dict() for k, v in table.items()},
        "metrics_ci_method": table["sensitivity"].method,
        "metrics_exact": {k: v.as_dict() for k, v in exact.items()},
        "metrics_bootstrap": {k: v.as_dict() for k, v in boot_props.items()},
        "confusion": binary.confusion_counts(y, decision),
        **binary.f1_scores(y, decision),
        "pr_auc": pr["average_precision"],
        "prevalence": pr["prevalence"],
        "operating_points": _operating_points(y, s, opt),
        "roc_curve": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": _finite_list(thr)},
        "roc_band": {k: v.tolist() for k, v in band.items()},
        "pr_curve": {"precision": pr["precision"].tolist(), "recall": pr["recall"].tolist()},
    }
    if col.is_probability:
        out["brier"] = calibration.brier_score(y, s, name=col.name)
        out["reliability"] = calibration.reliability(y, s, name=col.name).as_dict()
    return out, np.asarray(decision, bool)


def _finite_list(values: np.ndarray) -> list:
    # roc_curve's first threshold is +inf ("nothing positive"); JSON has no infinity.
    return [float(v) if np.isfinite(v) else None for v in values]


def _operating_points(y, s, opt: Options) -> list[dict]:
    points = []
    for kwargs in ({"sensitivity": opt.target_sensitivity}, {"specificity": opt.target_specificity}):
        try:
            point = binary.operating_point(y, s, **kwargs).as_dict()
            point["note"] = "chosen on the evaluated cases"
        except InputError as exc:  # e.g. many negatives tied at the top score: no cut-off reaches it
            ((target, value),) = kwargs.items()
            point = {
                "method": f"{target}>={value:g}",
                "threshold": None,
                "sensitivity": None,
                "specificity": None,
                "note": str(exc),
            }
        points.append(point)
    return points


def _comparisons(data: PredictionSet, decisions: dict[str, np.ndarray], opt: Options) -> dict:
    y = data.y
    scores = {c.name: c.scores for c in data.columns}
    out = {"auc": compare.delong_overall(y, scores, conf_level=opt.conf_level).as_dict()}
    masks = {name: binary.outcome_masks(y, d) for name, d in decisions.items()}
    for metric in binary.METRICS:
        per_model = {name: m[metric] for name, m in masks.items()}
        overall = gee.gee_compare(per_model, data.clusters, metric=metric)
        if metric in PAIRED_MCNEMAR and not data.clustered:
            names = list(per_model)
            pairs = [
                compare.mcnemar_paired(
                    per_model[a][0][per_model[a][1]],
                    per_model[b][0][per_model[b][1]],
                    names=(a, b),
                    metric=metric,
                )
                for i, a in enumerate(names)
                for b in names[i + 1 :]
            ]
            overall.pairwise = compare.with_holm(pairs)
            if len(pairs) == 1:  # two models: the overall question is the pairwise one
                overall = compare.OverallTest("mcnemar-exact", pairs[0].statistic, 1.0, pairs[0].p, pairs)
        out[metric] = overall.as_dict()
    return out

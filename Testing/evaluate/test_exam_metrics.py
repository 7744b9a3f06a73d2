"""Exam-level aggregation of four views and the imbalanced metrics with clustered intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

from microcalcai.errors import InputError
from microcalcai.evaluate.exam import (
    evaluate_exams,
    exam_scores,
    imbalanced_metrics,
    sensitivity_at_specificity,
)

VIEWS = pd.DataFrame(
    {
        "patient_id": ["P1"] * 4 + ["P2"] * 4,
        "exam_id": ["E1"] * 4 + ["E2"] * 4,
        "view": ["LCC", "LMLO", "RCC", "RMLO"] * 2,
        "score": [0.1, 0.2, 0.9, 0.6, 0.1, 0.3, 0.2, 0.4],
        "bac": [0, 0, 1, 1, 0, 0, 0, 0],
    }
)


def test_max_mean_and_noisy_or_aggregate_the_four_views():
    by = {how: exam_scores(VIEWS, how=how).set_index("exam") for how in ("max", "mean", "noisy_or")}
    assert by["max"].loc["E1", "score"] == 0.9 and by["max"].loc["E2", "score"] == 0.4
    assert by["mean"].loc["E1", "score"] == pytest.approx(0.45)
    assert by["noisy_or"].loc["E1", "score"] == pytest.approx(1 - 0.9 * 0.8 * 0.1 * 0.4)
    assert by["noisy_or"].loc["E2", "score"] == pytest.approx(1 - 0.9 * 0.7 * 0.8 * 0.6)
    exams = by["max"]
    assert exams["label"].to_dict() == {"E1": 1, "E2": 0}  # positive when any view is
    assert exams["views"].tolist() == [4, 4] and exams["patient"].tolist() == ["P1", "P2"]


def test_aggregation_refuses_what_it_cannot_score():
    with pytest.raises(InputError, match="one of max, mean, noisy_or"):
        exam_scores(VIEWS, how="median")
    with pytest.raises(InputError, match="probabilities within 0..1"):
        exam_scores(VIEWS.assign(score=VIEWS.score * 3), how="noisy_or")
    with pytest.raises(InputError, match="lack the column"):
        exam_scores(VIEWS.drop(columns="bac"))
    with pytest.raises(InputError, match="missing or non-numeric"):
        exam_scores(VIEWS.assign(score=["x"] + [0.1] * 7))
    with pytest.raises(InputError, match="more than one patient"):
        exam_scores(VIEWS.assign(patient_id=["P1", "P9"] + ["P1"] * 2 + ["P2"] * 4))


def _scored(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.12).astype(int)
    return y, y * 1.2 + rng.normal(0, 1, n)


def test_metrics_equal_scikit_learns_on_the_same_inputs():
    y, s = _scored()
    m = imbalanced_metrics(y, s, threshold=0.8, n_boot=100, seed=1)
    d = (s >= 0.8).astype(int)
    assert m["auc"]["estimate"] == pytest.approx(roc_auc_score(y, s))
    assert m["pr_auc"]["estimate"] == pytest.approx(average_precision_score(y, s))
    assert m["f1"]["estimate"] == pytest.approx(f1_score(y, d))
    assert m["mcc"]["estimate"] == pytest.approx(matthews_corrcoef(y, d))
    assert m["sensitivity"]["estimate"] == pytest.approx(d[y == 1].mean())
    assert m["specificity"]["estimate"] == pytest.approx(1 - d[y == 0].mean())
    assert m["operating_point"] == {"threshold": 0.8, "chosen": "given", "specificity_target": 0.9}
    assert m["prevalence"] == pytest.approx(y.mean())
    for name in ("auc", "pr_auc", "sensitivity_at_specificity", "f1", "mcc", "sensitivity", "specificity"):
        lo, hi = m[name]["ci"]
        assert lo <= m[name]["estimate"] <= hi and lo < hi, name


def test_sensitivity_at_fixed_specificity_on_a_hand_worked_example():
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.9])
    # specificity 0.75 allows one negative (0.4) above the threshold: both positives are caught
    assert sensitivity_at_specificity(y, s, 0.75) == 1.0
    # specificity 1 allows none: only the positive at 0.9 is above 0.4
    assert sensitivity_at_specificity(y, s, 0.99) == 0.5
    m = imbalanced_metrics(y, s, specificity=0.99, n_boot=50)
    assert m["operating_point"]["threshold"] == 0.9 and m["sensitivity"]["estimate"] == 0.5


def test_clustered_intervals_do_not_shrink_when_each_case_is_copied():
    """Four views of one exam are not four independent cases: copying every case four times and
    clustering the copies gives about the interval of the original cases, while treating the
    copies as independent would halve it."""
    y, s = _scored(150, seed=3)
    cases = np.arange(150)
    # the same resampling scheme (cases drawn whole, not stratified) in all three
    base = imbalanced_metrics(y, s, clusters=cases, threshold=0.8, n_boot=200, seed=2)
    y4, s4, exams = np.repeat(y, 4), np.repeat(s, 4), np.repeat(cases, 4)
    clustered = imbalanced_metrics(y4, s4, clusters=exams, threshold=0.8, n_boot=200, seed=2)
    naive = imbalanced_metrics(y4, s4, clusters=np.arange(600), threshold=0.8, n_boot=200, seed=2)
    assert clustered["bootstrap"]["resampling"] == "patient-clustered"
    for name in ("auc", "pr_auc", "f1"):
        width = {k: np.diff(v[name]["ci"])[0] for k, v in (("b", base), ("c", clustered), ("n", naive))}
        assert 0.7 < width["c"] / width["b"] < 1.4, name
        assert width["n"] < 0.7 * width["c"], name


def test_evaluate_exams_reports_images_and_exams():
    rng = np.random.default_rng(4)
    rows = []
    for e in range(60):
        positive = e % 5 == 0
        for k, view in enumerate(("LCC", "LMLO", "RCC", "RMLO")):
            bac = int(positive and k < 2)  # BAC in the left breast: both left views
            rows.append(dict(patient_id=f"P{e}", exam_id=f"E{e}", view=view, bac=bac,
                             score=float(np.clip(0.3 + 0.4 * bac + rng.normal(0, 0.15), 0, 1))))  # fmt: skip
    frame = pd.DataFrame(rows)
    result = evaluate_exams(frame, n_boot=60)
    assert result["aggregation"] == "max"
    assert (result["image"]["n"], result["image"]["n_positive"]) == (240, 24)
    assert (result["exam"]["n"], result["exam"]["n_positive"]) == (60, 12)
    exams = exam_scores(frame)
    assert result["exam"]["auc"]["estimate"] == pytest.approx(roc_auc_score(exams.label, exams.score))
    assert result["image"]["bootstrap"]["resampling"] == "patient-clustered"


def test_metrics_refuse_one_class_and_bad_specificity():
    with pytest.raises(InputError, match="both classes"):
        imbalanced_metrics(np.zeros(5), np.arange(5.0))
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        imbalanced_metrics(np.array([0, 1, 0, 1]), np.arange(4.0), specificity=1.0)


def test_stats_exams_joins_the_manifest_and_uses_the_validation_threshold(tmp_path, capsys):
    import json

    from microcalcai.cli.main import main

    rng = np.random.default_rng(7)
    manifest, predictions = [], []
    for e in range(40):
        for k, view in enumerate(("LCC", "LMLO", "RCC", "RMLO")):
            bac = int(e % 4 == 0 and k >= 2)
            image = f"E{e}-{view}"
            manifest.append(dict(image_id=image, exam_id=f"E{e}", patient_id=f"P{e}", bac=bac))
            score = float(np.clip(0.3 + 0.4 * bac + rng.normal(0, 0.2), 0, 1))
            predictions.append(dict(image_id=image, probability=score, threshold=0.55))
    pd.DataFrame(manifest).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame(predictions).to_csv(tmp_path / "predictions.csv", index=False)
    args = ["stats", "exams", "--predictions", str(tmp_path / "predictions.csv")]
    assert main([*args, "--manifest", str(tmp_path / "manifest.csv"), "--n-boot", "50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["exam"]["n"] == 40 and result["exam"]["n_positive"] == 10
    assert result["image"]["operating_point"] == {
        "threshold": 0.55,
        "chosen": "given",
        "specificity_target": 0.9,
    }
    assert result["exam"]["operating_point"]["threshold"] == 0.55
    views = pd.DataFrame(manifest).merge(pd.DataFrame(predictions), on="image_id")
    exams = exam_scores(views, score="probability")
    assert result["exam"]["auc"]["estimate"] == pytest.approx(roc_auc_score(exams.label, exams.score))
    # without the manifest the exam column is missing: a clear error, exit 1
    assert main(args) == 1
    assert "no 'exam_id' for every view" in capsys.readouterr().err

"""Model comparisons: overall DeLong, Holm, McNemar, GEE, Wilcoxon across folds."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats

from microcalcai.errors import InputError
from microcalcai.evaluate import binary, compare, gee


def test_overall_delong_of_three_scores(asah):
    y = (asah.outcome == "Poor").to_numpy()
    scores = {n: asah[n].to_numpy() for n in ("wfns", "ndka", "s100b")}
    overall = compare.delong_overall(y, scores)
    assert overall.df == 2 and 0 < overall.p < 0.05  # wfns differs from ndka (pROC t2: p = 0.005)
    # The Wald statistic does not depend on the order of the scores (the contrasts differ).
    reordered = compare.delong_overall(y, {n: scores[n] for n in ("s100b", "wfns", "ndka")})
    assert reordered.statistic == pytest.approx(overall.statistic, rel=1e-10)
    # Pairwise follow-ups are the paired DeLong tests, Holm-adjusted.
    raw = [t.p for t in overall.pairwise]
    assert [t.p_holm for t in overall.pairwise] == pytest.approx(holm_by_hand(raw))
    wfns_ndka = next(t for t in overall.pairwise if {t.a, t.b} == {"wfns", "ndka"})
    assert wfns_ndka.p == pytest.approx(0.00514557970691098, abs=1e-6)  # pROC test-roc.test.R line 38


def holm_by_hand(p):
    order = np.argsort(p)
    adjusted = np.empty(len(p))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_holm():
    p = [0.01, 0.04, 0.03, 0.5]
    assert compare.holm(p) == pytest.approx(holm_by_hand(p))
    assert compare.holm([]) == []


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs():
    rng = np.random.default_rng(1)
    a = rng.random(120) < 0.8
    b = np.where(rng.random(120) < 0.15, ~a, a)
    t = compare.mcnemar_paired(a, b)
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert t.p == pytest.approx(stats.binomtest(n01, n01 + n10, 0.5).pvalue)
    assert t.method == "mcnemar-exact" and t.difference == pytest.approx(a.mean() - b.mean())


@pytest.fixture(scope="module")
def three_models():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.random(n) < 0.4
    patients = np.arange(n) // 3
    good = np.where(y, rng.random(n) < 0.85, rng.random(n) < 0.15)
    weak = np.where(y, rng.random(n) < 0.6, rng.random(n) < 0.3)
    return y, patients, {"good": good, "weak": weak, "copy": good.copy()}


def test_gee_detects_a_difference_and_none_between_copies(three_models):
    y, patients, decisions = three_models
    for metric in binary.METRICS:
        outcomes = {k: binary.outcome_masks(y, d)[metric] for k, d in decisions.items()}
        result = gee.gee_compare(outcomes, patients, metric=metric)
        assert result.method == "gee-logit"
        pairs = {(t.a, t.b): t for t in result.pairwise}
        assert pairs[("good", "copy")].p == 1.0
        assert pairs[("good", "weak")].p < 0.05 and result.p < 0.05
        # The copy adds no information: one contrast without variance is left out of the overall test.
        assert result.df == 1.0 and "left out" in result.note
        success, eligible = outcomes["good"]
        assert pairs[("good", "weak")].estimate_a == pytest.approx(success[eligible].mean())
        assert all(t.p_holm >= t.p for t in result.pairwise)


def test_gee_two_models_overall_equals_pairwise(three_models):
    y, patients, decisions = three_models
    outcomes = {k: binary.outcome_masks(y, decisions[k])["sensitivity"] for k in ("good", "weak")}
    result = gee.gee_compare(outcomes, patients)
    assert result.p == pytest.approx(result.pairwise[0].p)


def test_gee_uses_the_patient_clusters(three_models):
    # The same outcomes counted as three identical ROIs per patient must not look three times as
    # informative: the cluster-robust p-value of the tripled data equals that of one ROI each.
    y, _, decisions = three_models
    first = np.arange(0, y.size, 3)
    one = {k: tuple(a[first] for a in binary.outcome_masks(y, d)["accuracy"]) for k, d in decisions.items()}
    tripled = {k: tuple(np.repeat(a, 3) for a in v) for k, v in one.items()}
    p_one = gee.gee_compare(one, np.arange(first.size)).pairwise[0].p
    p_tripled = gee.gee_compare(tripled, np.repeat(np.arange(first.size), 3)).pairwise[0].p
    p_naive = gee.gee_compare(tripled, np.arange(3 * first.size)).pairwise[0].p
    assert p_tripled == pytest.approx(p_one, rel=0.05)
    assert p_naive < p_one / 5


def test_gee_falls_back_to_identity_link_when_a_proportion_is_one(three_models):
    y, patients, decisions = three_models
    outcomes = {
        "perfect": binary.outcome_masks(y, y)["sensitivity"],
        "weak": binary.outcome_masks(y, decisions["weak"])["sensitivity"],
    }
    result = gee.gee_compare(outcomes, patients)
    assert result.method == "gee-identity"
    assert result.pairwise[0].estimate_a == 1.0 and result.p < 1e-6


def test_wilcoxon_five_folds_cannot_reach_significance():
    a = np.array([0.91, 0.88, 0.90, 0.93, 0.89])
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    with pytest.warns(UserWarning, match="cannot reach significance"):
        t = compare.wilcoxon_folds(a, b)
    assert t.p == pytest.approx(0.0625)  # 2 / 2**5: all five differences positive
    assert t.min_attainable_p == pytest.approx(0.0625) and t.statistic == 0.0


def test_wilcoxon_six_folds_exact():
    a = np.arange(6) * 0.01 + 0.9
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = compare.wilcoxon_folds(a, b)
    assert t.p == pytest.approx(2 / 64) and t.warning == ""
    # One negative difference of rank 1: W = 1, exact two-sided p = 2 * 2 / 64.
    b2 = a - np.array([-0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    assert compare.wilcoxon_folds(a, b2).p == pytest.approx(4 / 64)
    with pytest.raises(InputError, match="equal in every fold"):
        compare.wilcoxon_folds(a, a)


def test_two_models_without_clusters_use_mcnemar_overall(predictions_factory):
    from microcalcai.evaluate.analysis import Options, evaluate_predictions
    from microcalcai.evaluate.predictions import read_predictions

    path = predictions_factory(n=120, seed=4, members={"a": 1.5}, threshold=0.5)
    other = predictions_factory.make(n=120, seed=4, members={"b": 0.7}, threshold=0.5, model="b")
    data = read_predictions([path, predictions_factory(other)])
    assert [c.name for c in data.columns] == ["ensemble", "b"] and not data.clustered
    result = evaluate_predictions(data, Options(n_boot=20))
    for metric in ("sensitivity", "specificity", "accuracy"):
        c = result["comparisons"][metric]
        assert c["method"] == "mcnemar-exact" and c["p"] == c["pairwise"][0]["p"]
    assert result["comparisons"]["ppv"]["method"].startswith("gee")


def test_stats_folds_command(tmp_path, capsys):
    from microcalcai.cli.main import main

    path = tmp_path / "folds.csv"
    path.write_text("fold,cnn,radiologist\n1,0.91,0.88\n2,0.89,0.86\n3,0.93,0.90\n4,0.90,0.86\n5,0.92,0.87\n")
    assert main(["stats", "folds", "--csv", str(path), "--a", "cnn", "--b", "radiologist", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["p"] == pytest.approx(0.0625) and out["n_folds"] == 5
    assert "cannot reach significance" in captured.err


def test_difference_without_variance_is_not_estimable_not_an_error():
    # A perfect score (AUC 1) against a constant one (AUC 0.5): DeLong's variance is zero.
    y = np.array([0] * 6 + [1] * 4, bool)
    perfect, constant = y * 1.0, np.full(10, 0.3)
    noisy = np.array([0.1, 0.5, 0.2, 0.7, 0.3, 0.4, 0.6, 0.9, 0.35, 0.8])
    t = compare.delong_paired(y, perfect, constant)
    assert t.p is None and t.statistic is None and "not estimable" in t.note
    overall = compare.delong_overall(y, {"perfect": perfect, "flat": constant, "other": noisy})
    assert overall.pairwise[0].p is None and overall.pairwise[0].p_holm is None
    assert all(p.p_holm is not None for p in overall.pairwise[1:])

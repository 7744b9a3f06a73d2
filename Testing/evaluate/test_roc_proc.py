"""AUC, DeLong variance and CI, and DeLong tests against the R package pROC, to 1e-6.

Expected values are pROC's own, from its test suite at github.com/xrobin/pROC, commit
ee2877e858bcd2757c05ce797ea64ade2c05885b (version 1.19.0.1). In pROC's tests the curves are
`r.wfns <- roc(aSAH$outcome, aSAH$wfns)` etc. (tests/testthat/helper-rocs.R, lines 3-5): default
levels c("Good", "Poor") (so Poor is the positive class) and direction "auto" (controls < cases for
all three scores).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from microcalcai.cli.main import main
from microcalcai.evaluate import compare, roc

TOL = 1e-6

# tests/testthat/test-auc.R line 7 (wfns) and line 10 (ndka); s100b: the DeLong theta in
# tests/testthat/helper-deLongPlacementsCpp-expected.R line 144, which pROC checks equals auc(r.s100b)
# (R/delong.R lines 144-150).
PROC_AUC = {"wfns": 0.823678861788618, "ndka": 0.611957994579946, "s100b": 0.731368563685637}
# tests/testthat/test-var.R lines 6, 7 and 8.
PROC_VAR = {"wfns": 0.00146991470882363, "ndka": 0.0031908105493913, "s100b": 0.00266868245717244}
# tests/testthat/test-ci.auc.R line 6: ci.auc(r.ndka) = (lower, auc, upper).
PROC_CI_NDKA = (0.501244999271703, 0.722670989888189)
# tests/testthat/test-cov.R lines 5, 6 and 7.
PROC_COV = {
    ("wfns", "ndka"): -0.000532967856762438,
    ("ndka", "s100b"): -0.000756164938056579,
    ("s100b", "wfns"): 0.00119615567376754,
}
# tests/testthat/test-roc.test.R lines 10-12 define t1 = roc.test(r.wfns, r.s100b),
# t2 = roc.test(r.wfns, r.ndka), t3 = roc.test(r.ndka, r.s100b); lines 28-31, 37-40 and 46-49
# give Z, p and the 95% CI of the AUC difference.
PROC_PAIRED = {
    ("wfns", "s100b"): (2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
    ("wfns", "ndka"): (2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
    ("ndka", "s100b"): (-1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
}
# tests/testthat/test-roc.test.R lines 72-74 define the unpaired tests on the same pairs; lines
# 78-79, 83-84 and 88-89 give D and p.
PROC_UNPAIRED = {
    ("wfns", "s100b"): (1.43490640926908, 0.152825378808796),
    ("wfns", "ndka"): (3.10125096778969, 0.00220950791756457),
    ("ndka", "s100b"): (-1.55995743389685, 0.120192832430845),
}


@pytest.fixture(scope="module")
def y(asah):
    return (asah.outcome == "Poor").to_numpy()


@pytest.mark.parametrize("score", ["wfns", "ndka", "s100b"])
def test_auc_and_delong_variance_match_proc(asah, y, score):
    r = roc.auc_delong(y, asah[score].to_numpy(), direction="auto")
    assert r.direction == "higher"  # pROC: "Setting direction: controls < cases"
    assert r.auc == pytest.approx(PROC_AUC[score], abs=TOL)
    assert r.variance == pytest.approx(PROC_VAR[score], abs=TOL * 1e-2)  # variances are ~1e-3: 1e-8 here
    assert (r.n_positive, r.n_negative) == (41, 72)


def test_delong_ci_matches_proc_ndka(asah, y):
    r = roc.auc_delong(y, asah.ndka.to_numpy())
    assert r.ci == pytest.approx(PROC_CI_NDKA, abs=TOL)


@pytest.mark.parametrize("score", ["wfns", "s100b"])
def test_delong_ci_matches_proc_formula(asah, y, score):
    # pROC prints these CIs only rounded; ci_auc_delong (R/delong.R line 80) is
    # qnorm(c(0.025, 0.975), mean = auc, sd = sqrt(var)), so the exact expected bounds follow
    # from pROC's published AUC and variance above.
    expected = stats.norm.ppf([0.025, 0.975], loc=PROC_AUC[score], scale=np.sqrt(PROC_VAR[score]))
    r = roc.auc_delong(y, asah[score].to_numpy())
    assert r.ci == pytest.approx(tuple(expected), abs=TOL)


def test_reversed_direction_gives_the_same_ci(asah, y):
    # tests/testthat/test-ci.auc.R line 40: ci.auc(aSAH$outcome, -aSAH$ndka) equals the ndka CI
    # because direction "auto" turns the curve round.
    r = roc.auc_delong(y, -asah.ndka.to_numpy(), direction="auto")
    assert r.direction == "lower"
    assert r.auc == pytest.approx(PROC_AUC["ndka"], abs=TOL)
    assert r.ci == pytest.approx(PROC_CI_NDKA, abs=TOL)
    # With the direction forced the other way the AUC is its complement, as pROC's direction = ">".
    forced = roc.auc_delong(y, asah.ndka.to_numpy(), direction="lower")
    assert forced.auc == pytest.approx(1 - PROC_AUC["ndka"], abs=TOL)


def test_delong_covariances_match_proc(asah, y):
    names = ["wfns", "ndka", "s100b"]
    auc, cov = roc.delong_covariance(y, np.vstack([asah[n].to_numpy() for n in names]))
    for (a, b), expected in PROC_COV.items():
        assert cov[names.index(a), names.index(b)] == pytest.approx(expected, abs=1e-9)
    assert auc == pytest.approx([PROC_AUC[n] for n in names], abs=TOL)


@pytest.mark.parametrize("pair", list(PROC_PAIRED))
def test_paired_delong_test_matches_proc(asah, y, pair):
    z, p, lo, hi = PROC_PAIRED[pair]
    t = compare.delong_paired(y, asah[pair[0]].to_numpy(), asah[pair[1]].to_numpy(), names=pair)
    assert t.statistic == pytest.approx(z, abs=TOL)
    assert t.p == pytest.approx(p, abs=TOL)
    assert t.difference_ci == pytest.approx((lo, hi), abs=TOL)
    # tests/testthat/test-roc.test.R lines 56-67: swapping the curves flips Z, keeps p.
    swapped = compare.delong_paired(y, asah[pair[1]].to_numpy(), asah[pair[0]].to_numpy())
    assert swapped.statistic == pytest.approx(-z, abs=TOL)
    assert swapped.p == pytest.approx(p, abs=TOL)


def test_paired_delong_of_identical_curves(asah, y):
    # tests/testthat/test-roc.test.R lines 19-23: roc.test(r.wfns, r.wfns) has Z = 0 and p = 1.
    t = compare.delong_paired(y, asah.wfns.to_numpy(), asah.wfns.to_numpy())
    assert (t.statistic, t.p) == (0.0, 1.0)


@pytest.mark.parametrize("pair", list(PROC_UNPAIRED))
def test_unpaired_delong_test_matches_proc(asah, y, pair):
    d, p = PROC_UNPAIRED[pair]
    t = compare.delong_unpaired(y, asah[pair[0]].to_numpy(), y, asah[pair[1]].to_numpy())
    assert t.statistic == pytest.approx(d, abs=TOL)
    assert t.p == pytest.approx(p, abs=TOL)


def test_overall_test_of_two_scores_is_the_paired_test(asah, y):
    # DeLong's chi-square with one contrast is the square of pROC's paired Z (t1 above).
    z, p, _, _ = PROC_PAIRED[("wfns", "s100b")]
    overall = compare.delong_overall(y, {"wfns": asah.wfns.to_numpy(), "s100b": asah.s100b.to_numpy()})
    assert overall.statistic == pytest.approx(z**2, abs=TOL)
    assert overall.p == pytest.approx(p, abs=TOL)
    assert overall.pairwise[0].p_holm == pytest.approx(p, abs=TOL)  # one pair: Holm changes nothing


def test_stats_roc_json_reproduces_proc(asah_csv, capsys):
    argv = ["stats", "roc", "--csv", str(asah_csv), "--label", "outcome", "--positive", "Poor"]
    argv += ["--score", "wfns", "--score", "s100b", "--score", "ndka", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"scores", "comparisons"}
    for name in ("wfns", "s100b", "ndka"):
        s = out["scores"][name]
        assert set(s) == {"auc", "auc_ci", "auc_variance", "n_positive", "n_negative"}
        assert s["auc"] == pytest.approx(PROC_AUC[name], abs=TOL)
        assert s["auc_variance"] == pytest.approx(PROC_VAR[name], abs=1e-8)
        assert (s["n_positive"], s["n_negative"]) == (41, 72)
    assert out["scores"]["ndka"]["auc_ci"] == pytest.approx(list(PROC_CI_NDKA), abs=TOL)
    pairs = {(c["a"], c["b"]): c for c in out["comparisons"]}
    assert set(pairs) == {("wfns", "s100b"), ("wfns", "ndka"), ("s100b", "ndka")}
    for (a, b), c in pairs.items():
        assert set(c) == {"a", "b", "method", "z", "p"} and c["method"] == "delong-paired"
        if (a, b) in PROC_PAIRED:
            z, p = PROC_PAIRED[(a, b)][:2]
        else:  # pROC's t1 is wfns vs s100b; the other order flips Z (test-roc.test.R lines 56-67)
            z, p = -PROC_PAIRED[(b, a)][0], PROC_PAIRED[(b, a)][1]
        assert c["z"] == pytest.approx(z, abs=TOL)
        assert c["p"] == pytest.approx(p, abs=TOL)

"""`microcalcai evaluate` end to end on predictions.csv files written here."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg
from sklearn.metrics import roc_auc_score

from microcalcai.cli.main import main
from microcalcai.evaluate.analysis import Options, evaluate_predictions
from microcalcai.evaluate.predictions import read_predictions
from microcalcai.evaluate.report import render_markdown

FIGURES = (
    "roc_curves.png",
    "roc_bootstrap_bands.png",
    "confusion_matrices.png",
    "calibration.png",
    "pr_curves.png",
)
TABLES = ("table1.csv", "comparisons.csv", "roc_curves.csv", "roc_bands.csv", "calibration.csv")


@pytest.fixture(scope="module")
def clustered_report(tmp_path_factory, prediction_table):
    """An ensemble file (two members and a reader, two ROIs per patient, some val and unlabelled
    rows) and a second file for one member alone with its own validation threshold."""
    tmp = tmp_path_factory.mktemp("clustered")
    ens = prediction_table(n=160, seed=3, rois_per_patient=2, threshold=0.5, reader=True)
    ens.loc[:19, "split"] = "val"
    ens.loc[20:23, "label"] = ""
    ens.to_csv(tmp / "ensemble.csv", index=False)
    single = ens[["case_id", "patient_id", "image_id", "label", "split", "p_resnet101"]].copy()
    single["probability"] = single["p_resnet101"]
    single["threshold"] = 0.4
    single["decision"] = np.where(single["probability"] >= 0.4, "malignant", "benign")
    single["model"] = "resnet101"
    single.iloc[::-1].to_csv(tmp / "resnet101.csv", index=False)  # row order must not matter
    out = tmp / "report"
    argv = [
        "evaluate",
        "--predictions",
        str(tmp / "ensemble.csv"),
        "--predictions",
        str(tmp / "resnet101.csv"),
    ]
    assert main([*argv, "--out", str(out), "--n-boot", "200", "--seed", "5"]) == 0
    return ens, out


def test_report_files_and_numbers(clustered_report):
    ens, out = clustered_report
    for name in ("report.md", "report.html", "metrics.json", *FIGURES, *TABLES):
        assert (out / name).is_file(), name
    result = json.loads((out / "metrics.json").read_text())
    assert result["generator"] == "microcalcai evaluate"
    test = ens[(ens.split == "test") & (ens.label != "")]
    assert result["n_cases"] == len(test) == 136 and result["clustered"] is True
    assert result["n_patients"] == test.patient_id.nunique()
    assert set(result["models"]) == {"ensemble", "resnet101", "densenet201", "radiologist"}
    assert any("split 'test'" in n for n in result["notes"]) and any(
        "without a label" in n for n in result["notes"]
    )
    assert result["demonstration"] == []  # no intended_use column: nothing to warn of
    assert "demonstration" not in (out / "report.md").read_text()
    y = (test.label == "malignant").to_numpy()
    ensemble = result["models"]["ensemble"]
    assert ensemble["auc"] == pytest.approx(roc_auc_score(y, test.probability))
    decided = (test.decision == "malignant").to_numpy()
    assert ensemble["metrics"]["sensitivity"]["value"] == pytest.approx(decided[y].mean())
    assert ensemble["metrics"]["ppv"]["value"] == pytest.approx(y[decided].mean())
    assert ensemble["cutoff"]["method"] == "stored" and ensemble["cutoff"]["threshold"] == 0.5
    # The member seen in both files is kept once, with the threshold its own file stores.
    resnet = result["models"]["resnet101"]
    assert resnet["cutoff"] == {**resnet["cutoff"], "method": "stored", "threshold": 0.4}
    assert resnet["metrics"]["sensitivity"]["value"] == pytest.approx((test.p_resnet101[y] >= 0.4).mean())
    dense = result["models"]["densenet201"]
    assert dense["cutoff"]["method"] == "youden" and "optimistic" in dense["cutoff"]["note"]
    assert (
        "brier" not in result["models"]["radiologist"] and result["models"]["radiologist"]["kind"] == "reader"
    )
    assert result["bootstrap"] == {"n_boot": 200, "seed": 5, "resampling": "patient-clustered"}
    lo, hi = ensemble["auc_bootstrap"]["percentile"]["ci"]
    assert lo < ensemble["auc"] < hi


def test_comparisons_cover_every_pair_with_holm(clustered_report):
    _, out = clustered_report
    result = json.loads((out / "metrics.json").read_text())
    comps = result["comparisons"]
    assert set(comps) == {"auc", "sensitivity", "specificity", "accuracy", "ppv", "npv"}
    assert comps["auc"]["method"] == "delong-chi2" and comps["auc"]["df"] == 3
    assert len(comps["auc"]["pairwise"]) == 6
    for metric in ("sensitivity", "ppv"):
        assert comps[metric]["method"].startswith("gee")  # several ROIs per patient
        assert {t["method"] for t in comps[metric]["pairwise"]} <= {"gee-logit", "gee-identity"}
    for c in comps.values():
        for t in c["pairwise"]:
            assert t["p_holm"] is None or t["p_holm"] >= t["p"] - 1e-15


def test_table1_reads_like_the_paper(clustered_report):
    _, out = clustered_report
    md = (out / "report.md").read_text()
    table = md.split("## Table 1")[1].split("\n\n")[1].splitlines()
    assert table[0].startswith("| Model | Cut-off | AUC (95% CI) | Sensitivity, % (95% CI)")
    ensemble_row = next(r for r in table if r.startswith("| ensemble |"))
    assert re.match(
        r"\| ensemble \| ≥ 0\.5 \| 0\.\d{3} \(0\.\d{3}–[01]\.\d{3}\) \| \d+\.\d\d \(\d+\.\d\d–\d+\.\d\d\) \|",
        ensemble_row,
    )
    assert "†" in next(r for r in table if r.startswith("| densenet201 |"))
    assert "radiologist (reader)" in md
    p_row = next(r for r in table if r.startswith("| p (overall) |"))
    assert len(p_row.split("|")) == len(table[0].split("|"))
    assert "Holm-adjusted" in md and "GEE" in md


def test_no_nan_or_infinity_anywhere(clustered_report):
    _, out = clustered_report
    for name in ("report.md", "report.html", "metrics.json", *TABLES):
        text = (out / name).read_text()
        assert not re.search(r"\b(nan|NaN|inf|Infinity)\b", text), name


def test_csv_tables_agree_with_json(clustered_report):
    _, out = clustered_report
    result = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert {r["model"] for r in rows} == set(result["models"])
    for r in rows:
        m = result["models"][r["model"]]
        assert float(r["auc"]) == pytest.approx(m["auc"])
        assert float(r["sensitivity_ci_low"]) == pytest.approx(m["metrics"]["sensitivity"]["ci"][0])
        assert int(r["tp"]) == m["confusion"]["tp"]
    comps = list(csv.DictReader((out / "comparisons.csv").open()))
    assert len(comps) == 6 * 6


def test_figures_are_real_pictures(clustered_report):
    _, out = clustered_report
    for name in FIGURES:
        img = mpimg.imread(out / name)
        assert img.shape[0] > 400 and img.shape[1] > 400, name
        assert img[..., :3].std() > 0.05, name  # not a blank canvas
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "<table>" in html and 'src="roc' not in html


def test_rerun_replaces_an_earlier_report(clustered_report, capsys):
    ens, out = clustered_report
    before = json.loads((out / "metrics.json").read_text())
    path = out.parent / "ensemble.csv"
    argv = ["evaluate", "--predictions", str(path), "--out", str(out), "--n-boot", "100", "--split", "all"]
    argv += ["--target-sensitivity", "0.8", "--target-specificity", "0.95"]
    assert main([*argv, "--ci", "bootstrap", "--reader-threshold", "4a"]) == 0
    after = json.loads((out / "metrics.json").read_text())
    assert after["n_cases"] == len(ens[ens.label != ""]) != before["n_cases"]
    assert set(after["models"]) == {"ensemble", "resnet101", "densenet201", "radiologist"}
    assert capsys.readouterr().out.strip().endswith("report.md")
    # --ci bootstrap puts the (patient-clustered) bootstrap intervals into Table 1.
    ensemble = after["models"]["ensemble"]
    assert ensemble["metrics_ci_method"] == "bootstrap-percentile-patient-clustered"
    assert ensemble["metrics"]["sensitivity"]["ci"] == ensemble["metrics_bootstrap"]["sensitivity"]["ci"]
    assert "bootstrap percentile intervals" in (out / "report.md").read_text()
    assert pd.read_csv(out / "table1.csv")["ci_method"].str.startswith("bootstrap").all()
    # BI-RADS 4a and above called malignant for the reader.
    reader = after["models"]["radiologist"]
    assert reader["cutoff"]["method"] == "given" and reader["cutoff"]["threshold"] == 4.25
    assert "| radiologist (reader) | ≥ 4a |" in (out / "report.md").read_text()
    by_sens, by_spec = ensemble["operating_points"]
    assert by_sens["method"] == "sensitivity>=0.8" and by_sens["sensitivity"] >= 0.8
    assert by_spec["method"] == "specificity>=0.95" and by_spec["specificity"] >= 0.95
    labelled = ens[ens.label != ""]
    positive = labelled.reader_radiologist.isin(["4a", "4b", "4c", "5"]).to_numpy()
    malignant = (labelled.label == "malignant").to_numpy()
    assert reader["metrics"]["sensitivity"]["value"] == pytest.approx(positive[malignant].mean())


def test_one_roi_per_patient_uses_mcnemar(predictions_factory):
    path = predictions_factory(n=120, seed=8, members={"a": 1.5, "b": 0.8}, threshold=None, split=None)
    result = evaluate_without_figures(path, n_boot=200, ci_method="clopper-pearson")
    assert result["clustered"] is False and result["bootstrap"]["resampling"] == "stratified"
    comps = result["comparisons"]
    assert {t["method"] for t in comps["sensitivity"]["pairwise"]} == {"mcnemar-exact"}
    assert {t["method"] for t in comps["ppv"]["pairwise"]} <= {"gee-logit", "gee-identity"}
    assert result["models"]["ensemble"]["metrics_ci_method"] == "clopper-pearson"
    # No threshold stored anywhere: every cut-off is Youden's and flagged.
    assert {m["cutoff"]["method"] for m in result["models"].values()} == {"youden"}
    assert "exact McNemar" in render_markdown(result, {})


def test_console_script(asah_csv):
    cmd = [sys.executable, "-m", "microcalcai", "stats", "roc", "--csv", str(asah_csv), "--label", "outcome"]
    proc = subprocess.run(
        [*cmd, "--positive", "Poor", "--score", "wfns", "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scores"]["wfns"]["auc"] == pytest.approx(0.823678861788618, abs=1e-9)


def evaluate_without_figures(*paths, **options) -> dict:
    """The statistics and the Markdown of a report, without drawing figures (they cost seconds)."""
    data = read_predictions(list(paths))
    return evaluate_predictions(data, Options(**options))


def test_out_of_fold_predictions_with_a_threshold_per_fold(predictions_factory):
    # `microcalcai train` writes out-of-fold predictions whose rows carry their own fold's threshold.
    df = predictions_factory.make(n=100, seed=6, members={"m": 1.4}, model="cv")
    df["threshold"] = np.where(np.arange(100) % 2 == 0, 0.3, 0.6)
    df["decision"] = np.where(df.probability >= df.threshold, "malignant", "benign")
    result = evaluate_without_figures(predictions_factory(df), n_boot=50)
    cv = result["models"]["cv"]
    assert cv["cutoff"]["method"] == "stored-per-row" and cv["cutoff"]["threshold_range"] == [0.3, 0.6]
    y = (df.label == "malignant").to_numpy()
    called = (df.probability >= df.threshold).to_numpy()
    assert cv["metrics"]["sensitivity"]["value"] == pytest.approx(called[y].mean())
    assert "| cv | per fold, 0.3–0.6 |" in render_markdown(result, {})
    json.dumps(result, allow_nan=False)  # raises on any NaN or infinity


def test_reads_what_the_training_code_writes(tmp_path):
    # predictions.csv as microcalcai.train.predictions writes it for `predict` and for
    # cross-validation (a threshold per row); evaluate must read it without adaptation.
    from microcalcai.train.predictions import predictions_table, write_predictions

    rng = np.random.default_rng(2)
    n = 80
    y = rng.random(n) < 0.4
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i // 2}" for i in range(n)],
            "image_path": [f"/data/img{i}.dcm" for i in range(n)],
            "label": np.where(y, "malignant", "benign"),
            "split": "test",
        }
    )
    members = {
        name: 1 / (1 + np.exp(-(sep * (2 * y - 1) + rng.normal(size=n))))
        for name, sep in (("resnet101", 1.5), ("densenet201", 1.0))
    }
    prob = np.mean(list(members.values()), axis=0)
    table = predictions_table(frame, [f"case{i}" for i in range(n)], members, prob, 0.45, "ens")
    path = write_predictions(table, tmp_path / "predictions.csv")
    result = evaluate_without_figures(path, n_boot=50)
    assert set(result["models"]) == {"ens", "resnet101", "densenet201"}
    assert result["models"]["ens"]["cutoff"]["threshold"] == 0.45 and result["clustered"] is True
    assert result["models"]["ens"]["auc"] == pytest.approx(roc_auc_score(y, prob), abs=1e-6)


def test_member_judged_at_its_stored_validation_threshold(predictions_factory):
    # `predict` writes threshold_<member>: the member's own validation threshold from its model.json.
    df = predictions_factory.make(n=150, seed=11, threshold=0.5)
    df["threshold_resnet101"] = 0.37  # densenet201 has none: Youden on these cases, flagged †
    result = evaluate_without_figures(predictions_factory(df), n_boot=50)
    resnet = result["models"]["resnet101"]
    assert resnet["cutoff"]["method"] == "stored" and resnet["cutoff"]["threshold"] == 0.37
    assert resnet["cutoff"]["note"] == ""
    y = (df.label == "malignant").to_numpy()
    p = df.p_resnet101.to_numpy()
    tp, fn = int(np.sum((p >= 0.37) & y)), int(np.sum((p < 0.37) & y))
    tn, fp = int(np.sum((p < 0.37) & ~y)), int(np.sum((p >= 0.37) & ~y))
    assert resnet["metrics"]["sensitivity"]["value"] == pytest.approx(tp / (tp + fn))
    assert resnet["metrics"]["specificity"]["value"] == pytest.approx(tn / (tn + fp))
    assert result["models"]["densenet201"]["cutoff"]["method"] == "youden"
    table = render_markdown(result, {}).split("## Table 1")[1].split("\n\n")[1].splitlines()
    resnet_row = next(r for r in table if r.startswith("| resnet101 |"))
    assert resnet_row.startswith("| resnet101 | ≥ 0.37 |") and "†" not in resnet_row
    assert "†" in next(r for r in table if r.startswith("| densenet201 |"))


def test_member_thresholds_written_by_the_training_code_are_read(tmp_path):
    # predictions_table with member_thresholds (as `predict` calls it) round-trips through evaluate.
    from microcalcai.train.predictions import predictions_table, write_predictions

    rng = np.random.default_rng(4)
    n = 60
    y = rng.random(n) < 0.45
    frame = pd.DataFrame(
        {"patient_id": [f"P{i}" for i in range(n)], "image_path": [f"/d/i{i}.dcm" for i in range(n)]}
    ).assign(label=np.where(y, "malignant", "benign"), split="test")
    members = {name: rng.random(n) * 0.5 + 0.5 * y for name in ("a", "b")}
    prob = np.mean(list(members.values()), axis=0)
    table = predictions_table(
        frame, [f"c{i}" for i in range(n)], members, prob, 0.5, "ens", member_thresholds={"a": 0.3, "b": 0.6}
    )
    assert list(table.columns[5:9]) == ["p_a", "p_b", "threshold_a", "threshold_b"]
    result = evaluate_without_figures(write_predictions(table, tmp_path / "p.csv"), n_boot=50)
    for name, cut in (("a", 0.3), ("b", 0.6)):
        m = result["models"][name]
        assert m["cutoff"]["method"] == "stored" and m["cutoff"]["threshold"] == cut
        called = members[name] >= cut
        assert m["metrics"]["specificity"]["value"] == pytest.approx(np.mean(~called[~y]))

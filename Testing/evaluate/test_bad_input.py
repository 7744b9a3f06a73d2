"""Bad input stops with one clear message (exit status 1), never a NaN in the output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microcalcai.cli.main import main
from microcalcai.errors import InputError
from microcalcai.evaluate import inputs, roc


def run_stats(capsys, csv, *extra):
    argv = ["stats", "roc", "--csv", str(csv), "--label", "outcome", "--positive", "Poor", "--score", "s100b"]
    code = main([*argv, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def asah_copy(asah, tmp_path):
    def write(df: pd.DataFrame) -> str:
        path = tmp_path / "data.csv"
        df.to_csv(path, index=False)
        return path

    return write


def test_one_class_only(asah, asah_copy, capsys):
    code, out, err = run_stats(capsys, asah_copy(asah[asah.outcome == "Poor"]))
    assert code == 1 and out == ""
    assert "microcalcai stats: error:" in err and "only positive cases" in err


def test_fewer_than_two_cases_in_a_class(asah, asah_copy, capsys):
    df = pd.concat([asah[asah.outcome == "Good"], asah[asah.outcome == "Poor"].head(1)])
    code, _, err = run_stats(capsys, asah_copy(df))
    assert code == 1 and "1 positive and 72 negative" in err and "at least 2" in err


@pytest.mark.parametrize(
    ("value", "words"), [("", "NaN (empty)"), ("inf", "infinite"), ("-Infinity", "infinite")]
)
def test_missing_or_infinite_score(asah, asah_copy, capsys, value, words):
    df = asah.astype({"s100b": object})
    df.loc[7, "s100b"] = value
    code, out, err = run_stats(capsys, asah_copy(df))
    assert code == 1 and out == ""
    assert "'s100b'" in err and "row 8" in err and words in err


def test_text_in_a_score_column(asah, asah_copy, capsys):
    df = asah.astype({"s100b": object})
    df.loc[2, "s100b"] = "high"
    code, _, err = run_stats(capsys, asah_copy(df))
    assert code == 1 and "not numeric" in err and "'high'" in err and "row 3" in err


def test_positive_value_absent(asah_csv, capsys):
    code = main(
        [
            "stats",
            "roc",
            "--csv",
            str(asah_csv),
            "--label",
            "outcome",
            "--positive",
            "poor",
            "--score",
            "ndka",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "'poor' does not occur" in err and "'Good', 'Poor'" in err


def test_missing_column_and_file(asah_csv, tmp_path, capsys):
    code = main(
        ["stats", "roc", "--csv", str(asah_csv), "--label", "outcome", "--positive", "Poor", "--score", "crp"]
    )
    assert code == 1 and "no column(s) 'crp'" in capsys.readouterr().err
    code = main(
        [
            "stats",
            "roc",
            "--csv",
            str(tmp_path / "nope.csv"),
            "--label",
            "a",
            "--positive",
            "1",
            "--score",
            "b",
        ]
    )
    assert code == 1 and "does not exist" in capsys.readouterr().err


def test_numeric_labels_match_as_numbers():
    y = inputs.binary_labels(["1.0", "0.0", "1", "0"], "1", name="outcome")
    assert y.tolist() == [True, False, True, False]
    assert inputs.binary_labels([1, 0, 1], 1).tolist() == [True, False, True]


def test_a_third_label_value_is_refused(asah, asah_copy, capsys):
    df = asah.copy()
    df.loc[3, "outcome"] = "Unknown"
    code, _, err = run_stats(capsys, asah_copy(df))
    assert code == 1 and "3 different values" in err and "'Unknown'" in err


def test_library_checks_name_the_problem():
    with pytest.raises(InputError, match="empty label"):
        inputs.binary_labels(["a", "", "b"], "a", name="outcome")
    with pytest.raises(InputError, match="only negative"):
        roc.auc_delong(np.zeros(5, bool), np.arange(5.0))
    with pytest.raises(InputError, match="direction"):
        roc.auc_delong(np.array([0, 0, 1, 1], bool), np.arange(4.0), direction="up")


# evaluate


def run_evaluate(capsys, out_dir, *files, extra=()):
    argv = ["evaluate", "--out", str(out_dir), "--n-boot", "50"]
    for f in files:
        argv += ["--predictions", str(f)]
    code = main([*argv, *extra])
    return code, capsys.readouterr().err


def test_mismatched_case_ids_between_files(predictions_factory, tmp_path, capsys):
    a = predictions_factory.make(n=60, seed=1)
    b = a.copy()
    b.loc[3, "case_id"] = "roi9999"
    code, err = run_evaluate(capsys, tmp_path / "r", predictions_factory(a), predictions_factory(b))
    assert code == 1 and "different cases" in err and "roi0003" in err and "roi9999" in err
    assert not (tmp_path / "r").exists()


def test_labels_that_disagree_between_files(predictions_factory, tmp_path, capsys):
    a = predictions_factory.make(n=60, seed=1)
    b = a.copy()
    b.loc[5, "label"] = "malignant" if a.loc[5, "label"] == "benign" else "benign"
    code, err = run_evaluate(capsys, tmp_path / "r", predictions_factory(a), predictions_factory(b))
    assert code == 1 and "'roi0005' is labelled differently" in err


def test_nan_probability_in_predictions(predictions_factory, tmp_path, capsys):
    df = predictions_factory.make(n=60).astype({"probability": object})
    df.loc[10, "probability"] = ""
    code, err = run_evaluate(capsys, tmp_path / "r", predictions_factory(df))
    assert code == 1 and "'probability'" in err and "line 12" in err and "roi0010" in err and "empty" in err


def test_predictions_with_one_class(predictions_factory, tmp_path, capsys):
    df = predictions_factory.make(n=60)
    df = df[df.label == "benign"]
    code, err = run_evaluate(capsys, tmp_path / "r", predictions_factory(df))
    assert code == 1 and "only negative cases" in err


def test_predictions_missing_columns_and_bad_labels(predictions_factory, tmp_path, capsys):
    df = predictions_factory.make(n=60)
    code, err = run_evaluate(capsys, tmp_path / "r", predictions_factory(df.drop(columns=["probability"])))
    assert code == 1 and "lacks the column(s) probability" in err
    bad = df.copy()
    bad.loc[4, "label"] = "suspicious"
    code, err = run_evaluate(capsys, tmp_path / "r", predictions_factory(bad))
    assert code == 1 and "'suspicious'" in err and "roi0004" in err
    dup = pd.concat([df, df.head(1)])
    code, err = run_evaluate(capsys, tmp_path / "r", predictions_factory(dup))
    assert code == 1 and "'roi0000' occurs more than once" in err


def test_refuses_to_overwrite_a_folder_that_is_not_a_report(predictions_factory, tmp_path, capsys):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    code, err = run_evaluate(capsys, target, predictions_factory(n=60))
    assert code == 1 and "does not hold an earlier evaluation report" in err
    assert (target / "notes.txt").read_text() == "keep me"


def test_predictions_without_a_test_split_are_evaluated_whole_with_a_warning(predictions_factory):
    """Predictions without test rows are all evaluated, and the report says that training cases
    may be among them; predictions with test rows are evaluated on those alone."""
    from microcalcai.evaluate.predictions import read_predictions

    df = predictions_factory.make(n=60)
    whole = read_predictions([predictions_factory(df.assign(split=""))])
    assert whole.y.size == 60
    assert any("no rows of split 'test'" in n and "overstate" in n for n in whole.notes)
    held = df.assign(split=["test" if i % 3 == 0 else "train" for i in range(60)])
    tested = read_predictions([predictions_factory(held)])
    assert tested.y.size == 20 and not any("overstate" in n for n in tested.notes)


def test_a_significance_level_outside_0_1_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["stats", "folds", "--csv", str(tmp_path / "f.csv"), "--alpha", "0"])
    assert stop.value.code == 2 and "strictly between 0 and 1" in capsys.readouterr().err

"""`microcalcai train`, `predict` and `ensemble` end to end on a phantom data set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from train_helpers import TINY, TINY_SIZES

from microcalcai.cli.main import main
from microcalcai.evaluate.operating_point import youden_threshold
from microcalcai.models import load_predictor, read_card

PREDICTION_COLUMNS = ["case_id", "patient_id", "image_id", "label", "split"]


def _train(manifest, out, tiny, *extra):
    args = ["train", "--recipe", "kang2021", "--data", str(manifest), "--out", str(out), "--no-progress"]
    for item in tiny:
        args += ["--set", item]
    return main(args + list(extra))


@pytest.fixture(scope="module")
def two_runs(phantom_manifest, tmp_path_factory, tiny_settings):
    root = tmp_path_factory.mktemp("runs")
    assert _train(phantom_manifest, root / "a", tiny_settings, "--epochs", "2") == 0
    assert _train(phantom_manifest, root / "b", tiny_settings, "--epochs", "1", "--set", "seed=1") == 0
    return root / "a", root / "b"


@pytest.fixture(scope="module")
def tiny_settings():
    return list(TINY)


def test_a_run_writes_a_complete_model_and_its_records(two_runs, phantom_manifest):
    run = two_runs[0] / "tf_efficientnet_lite0"
    card = read_card(run / "model")
    assert card.arch == "tf_efficientnet_lite0" and card.input_size == 64
    assert card.weights_init["source"] == "imagenet-package"
    assert card.recipe["name"] == "kang2021" and card.recipe["optimizer"]["weight_decay"] == 5e-4
    assert len(card.manifest_sha256) == 64 and card.split["train"] > 0 and card.split["val"] > 0
    assert card.val_metrics["best_epoch"] in (1, 2) and card.test_metrics["n"] == card.split["test"]
    assert len(pd.read_csv(run / "metrics.csv")) == 2
    assert (run / "learning_curve.png").is_file() and (run / "checkpoints" / "last.pt").is_file()
    summary = json.loads((two_runs[0] / "summary.json").read_text())
    assert summary["archs"]["tf_efficientnet_lite0"]["model_dir"] == str(run / "model")
    # the model keeps which case it saw in which split, with the counts its card gives
    split = pd.read_csv(run / "model" / "split.csv")["split"].value_counts().to_dict()
    assert split == {k: card.split[k] for k in ("train", "val", "test")}
    val = pd.read_csv(run / "predictions_val.csv")["case_id"].astype(str)
    recorded = pd.read_csv(run / "model" / "split.csv", dtype=str).set_index("case_id")["split"]
    assert set(recorded[val]) == {"val"}


def test_threshold_is_chosen_on_validation_predictions_only(two_runs):
    run = two_runs[0] / "tf_efficientnet_lite0"
    val = pd.read_csv(run / "predictions_val.csv")
    test = pd.read_csv(run / "predictions_test.csv")
    assert set(val["split"]) == {"val"} and set(test["split"]) == {"test"}
    assert not set(val["patient_id"]) & set(test["patient_id"])
    expected = youden_threshold((val["label"] == "malignant").astype(int), val["probability"]).threshold
    assert read_card(run / "model").threshold == pytest.approx(expected, abs=1e-6)


def test_the_card_records_the_models_calibration_on_its_validation_predictions(two_runs):
    from sklearn.metrics import brier_score_loss

    run = two_runs[0] / "tf_efficientnet_lite0"
    val = pd.read_csv(run / "predictions_val.csv")
    metrics = read_card(run / "model").val_metrics
    truth = (val["label"] == "malignant").astype(int)
    assert metrics["brier"] == pytest.approx(brier_score_loss(truth, val["probability"]), abs=1e-6)
    # the clients' reliability note reads it from the card
    from microcalcai_logic.certainty import reliability_note

    note = reliability_note(metrics)
    assert "expected calibration error" in note and f"{metrics['brier']:.3f}" in note
    assert read_card(run / "model").threshold_method.endswith("on validation predictions")


def test_rerunning_a_finished_run_trains_nothing(two_runs, phantom_manifest, tiny_settings):
    model = two_runs[0] / "tf_efficientnet_lite0" / "model"
    before = (model / "weights.safetensors").stat().st_mtime_ns
    assert _train(phantom_manifest, two_runs[0], tiny_settings, "--epochs", "2") == 0
    assert (model / "weights.safetensors").stat().st_mtime_ns == before


def test_a_different_recipe_in_the_same_folder_is_refused(two_runs, phantom_manifest, tiny_settings, capsys):
    assert _train(phantom_manifest, two_runs[0], tiny_settings, "--epochs", "7") == 1
    err = capsys.readouterr().err
    assert "different recipe, settings or data" in err
    assert "2 there, 7 now" in err  # the setting that differs is named


def test_a_run_that_failed_before_training_does_not_block_its_folder(phantom_manifest, tmp_path, capsys):
    """A run that stopped before training anything (here: a weights file that does not exist)
    leaves its folder free for the corrected command."""
    out = tmp_path / "run"
    settings = [*TINY_SIZES, "archs=[mobilenetv2_100]"]
    assert (
        _train(phantom_manifest, out, settings, "--epochs", "1", "--weights", str(tmp_path / "no.pth")) == 1
    )
    assert "no.pth" in capsys.readouterr().err
    assert _train(phantom_manifest, out, settings, "--epochs", "1", "--weights", "none") == 0


def test_a_run_continues_with_another_loader_worker_count(two_runs, phantom_manifest, tiny_settings):
    # how many loader processes augment the crops is not part of what a run learns: a folder started
    # with 0 workers (the default before 'auto') resumes under 'auto', and back
    model = two_runs[1] / "tf_efficientnet_lite0" / "model"
    before = (model / "weights.safetensors").stat().st_mtime_ns
    for workers in ("0", "auto"):
        args = ["--epochs", "1", "--set", "seed=1", "--set", f"num_workers={workers}"]
        assert _train(phantom_manifest, two_runs[1], tiny_settings, *args) == 0
    assert (model / "weights.safetensors").stat().st_mtime_ns == before
    assert "num_workers: auto" in (two_runs[1] / "recipe.yaml").read_text()


def test_predict_writes_the_design_columns_and_matches_the_predictor(two_runs, phantom_manifest, tmp_path):
    model = two_runs[0] / "tf_efficientnet_lite0" / "model"
    out = tmp_path / "predictions.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                "--data",
                str(phantom_manifest),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    table = pd.read_csv(out, keep_default_na=False)
    name = read_card(model).name
    assert list(table.columns) == PREDICTION_COLUMNS + [
        f"p_{name}",
        f"threshold_{name}",
        "probability",
        "threshold",
        "decision",
        "model",
        "intended_use",
    ]
    assert (table["intended_use"] == "").all()  # not a demonstration model
    assert table["case_id"].is_unique and len(table) == len(pd.read_csv(phantom_manifest))
    assert set(table["decision"]) <= {"benign", "malignant"}
    np.testing.assert_array_equal(
        table["decision"] == "malignant", table["probability"] >= table["threshold"]
    )
    # the member's own validation threshold, as its model card stores it
    np.testing.assert_allclose(table[f"threshold_{name}"], read_card(model).threshold, rtol=0, atol=1e-8)
    # the same crops through a freshly loaded predictor give the same numbers
    from microcalcai.data.manifest import read_manifest
    from microcalcai.train.predictions import predict_frame

    again = predict_frame(
        load_predictor(model, device="cpu"), read_manifest(phantom_manifest), progress=False
    )
    np.testing.assert_allclose(again["probability"], table["probability"], atol=1e-7)


def test_predict_gives_the_trainings_own_probabilities_when_input_and_roi_sizes_differ(
    phantom_manifest, tmp_path
):
    """A model fed 48 px inputs from the manifest's 64 px ROIs (the recipe's roi_size, 224, only
    the fallback): its card records the 64 px crops, and predict resizes each crop once, straight
    to 48, as training did, so its numbers are the training's validation predictions."""
    settings = [s for s in TINY if not s.startswith(("input_size", "roi_size"))] + ["input_size=48"]
    assert _train(phantom_manifest, tmp_path / "run", settings, "--epochs", "1") == 0
    model = tmp_path / "run" / "tf_efficientnet_lite0" / "model"
    card = read_card(model)
    assert card.input_size == 48 and card.crop["roi_size"] == 64
    out = tmp_path / "predictions.csv"
    argv = ["predict", "--model", str(model), "--data", str(phantom_manifest), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    predicted = pd.read_csv(out).set_index("case_id")
    val = pd.read_csv(tmp_path / "run" / "tf_efficientnet_lite0" / "predictions_val.csv").set_index("case_id")
    np.testing.assert_allclose(predicted.loc[val.index, "probability"], val["probability"], atol=1e-5)


def test_outputs_that_would_overwrite_an_input_are_refused(two_runs, phantom_manifest, tmp_path, capsys):
    before = phantom_manifest.read_bytes()
    model = two_runs[0] / "tf_efficientnet_lite0" / "model"
    argv = ["predict", "--model", str(model), "--data", str(phantom_manifest), "--no-progress"]
    assert main([*argv, "--out", str(phantom_manifest)]) == 1
    assert "would write over the manifest" in capsys.readouterr().err
    assert phantom_manifest.read_bytes() == before
    weights = sorted(p.name for p in two_runs[1].rglob("*"))
    member = ["ensemble", "--member", str(two_runs[0]), "--member", str(two_runs[1])]
    assert main([*member, "--out", str(two_runs[1]), "--overwrite"]) == 1
    assert "would write over the member" in capsys.readouterr().err
    assert sorted(p.name for p in two_runs[1].rglob("*")) == weights
    # An output folder that exists already: one line, no traceback (the library says what to do).
    taken = tmp_path / "taken"
    taken.mkdir()
    assert main([*member, "--out", str(taken)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_demonstration_models_predictions_and_their_report_say_so(two_runs, phantom_manifest, tmp_path):
    import shutil

    from microcalcai.server.bootstrap import INTENDED_USE, mark_demonstration

    demo = shutil.copytree(two_runs[0] / "tf_efficientnet_lite0" / "model", tmp_path / "demo")
    mark_demonstration(demo)
    predictions, report = tmp_path / "predictions.csv", tmp_path / "report"
    argv = ["predict", "--model", str(demo), "--data", str(phantom_manifest), "--out", str(predictions)]
    assert main([*argv, "--no-progress"]) == 0
    name = read_card(demo).name
    assert set(pd.read_csv(predictions, keep_default_na=False)["intended_use"]) == {f"{name}: {INTENDED_USE}"}
    assert main(["evaluate", "--predictions", str(predictions), "--out", str(report), "--n-boot", "50"]) == 0
    banner = f"> **Scores from a demonstration model**: {name}: {INTENDED_USE}."
    markdown = (report / "report.md").read_text()
    assert banner in markdown and markdown.index(banner) < markdown.index("## Table 1")
    assert "Scores from a demonstration model</strong>" in (report / "report.html").read_text()
    assert json.loads((report / "metrics.json").read_text())["demonstration"] == [f"{name}: {INTENDED_USE}"]


def test_ensemble_of_two_runs_and_its_predictions(two_runs, phantom_manifest, tmp_path):
    out = tmp_path / "ens"
    assert (
        main(["ensemble", "--member", str(two_runs[0]), "--member", str(two_runs[1]), "--out", str(out)]) == 0
    )
    card = json.loads((out / "ensemble.json").read_text())
    assert card["combine"] == "mean" and len(card["members"]) == 2
    # the ensemble threshold is Youden on the mean of the members' validation probabilities
    vals = [
        pd.read_csv(r / "tf_efficientnet_lite0" / "predictions_val.csv").set_index("case_id")
        for r in two_runs
    ]
    mean = (vals[0]["probability"] + vals[1]["probability"].loc[vals[0].index]) / 2
    expected = youden_threshold((vals[0]["label"] == "malignant").astype(int), mean).threshold
    assert card["threshold"] == pytest.approx(expected, abs=1e-6)
    predictions = tmp_path / "ens.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(out),
                "--data",
                str(phantom_manifest),
                "--out",
                str(predictions),
                "--no-progress",
            ]
        )
        == 0
    )
    table = pd.read_csv(predictions)
    members = [c for c in table.columns if c.startswith("p_")]
    assert len(members) == 2
    np.testing.assert_allclose(table[members].mean(axis=1), table["probability"], atol=1e-7)
    # each member's column of validation thresholds holds what that member's model.json stores
    assert sorted(c for c in table.columns if c.startswith("threshold_")) == sorted(
        f"threshold_{n}" for n in card["member_names"]
    )
    for name, folder in zip(card["member_names"], card["members"], strict=True):
        assert f"p_{name}" in members
        stored = read_card(out / folder).threshold
        np.testing.assert_allclose(table[f"threshold_{name}"], stored, rtol=0, atol=1e-8)


def test_cross_validation_folds_keep_patients_apart(phantom_manifest, tmp_path, tiny_settings):
    out = tmp_path / "cv"
    assert (
        _train(phantom_manifest, out, tiny_settings, "--folds", "3", "--epochs", "1", "--set", "split.test=0")
        == 0
    )
    oof = pd.read_csv(out / "tf_efficientnet_lite0" / "oof_predictions.csv")
    manifest = pd.read_csv(phantom_manifest)
    assert len(oof) == len(manifest) and oof["case_id"].is_unique and oof["probability"].notna().all()
    assert sorted(oof["fold"].unique()) == [0, 1, 2]
    assert oof.groupby("patient_id")["fold"].nunique().max() == 1, "a patient is in two folds"
    for fold in range(3):
        fold_dir = out / "tf_efficientnet_lite0" / f"fold{fold}"
        card = read_card(fold_dir / "model")
        assert card.split["fold"] == fold
        held_out = set(oof.loc[oof["fold"] == fold, "patient_id"])
        val = pd.read_csv(fold_dir / "predictions_val.csv")
        assert not held_out & set(val["patient_id"]), "a held-out patient was used for validation"
    summary = json.loads((out / "tf_efficientnet_lite0" / "cv_summary.json").read_text())
    assert len(summary["folds"]) == 3 and 0 <= summary["oof_auc"] <= 1


def _arlan(manifest, out, *extra):
    return [
        "train",
        "--recipe",
        "arlan2025",
        "--data",
        str(manifest),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_double_transfer_seeds_each_stage_with_the_previous_best(phantom_manifest, tmp_path, tiny_settings):
    out = tmp_path / "dtl"
    args = _arlan(phantom_manifest, out, "--stage-data", f"intermediate={phantom_manifest}", "--epochs", "1")
    for item in tiny_settings:
        args += ["--set", item]
    stages = "stages=[{name: intermediate, data: intermediate, epochs: 1}, {name: target, data: target}]"
    assert main([*args, "--set", stages]) == 0
    intermediate = out / "tf_efficientnet_lite0" / "stages" / "intermediate" / "model"
    final = read_card(out / "tf_efficientnet_lite0" / "model")
    assert read_card(intermediate).weights_init["source"] == "imagenet-package"
    assert final.weights_init["source"] == "model" and str(intermediate) in final.weights_init["detail"]


def test_missing_stage_data_is_named(phantom_manifest, tmp_path, capsys):
    assert main(_arlan(phantom_manifest, tmp_path / "x", "--set", "archs=[tf_efficientnet_lite0]")) == 1
    assert "--stage-data intermediate=MANIFEST" in capsys.readouterr().err


def test_stage_data_no_stage_trains_on_is_refused(phantom_manifest, tmp_path, tiny_settings, capsys):
    stray = f"intermedaite={phantom_manifest}"
    assert _train(phantom_manifest, tmp_path / "x", tiny_settings, "--stage-data", stray) == 1
    assert "--stage-data names ['intermedaite'], which no stage of this recipe trains on" in (
        capsys.readouterr().err
    )


def test_without_progress_bars_each_epoch_is_one_log_line_with_an_eta(
    phantom_manifest, tmp_path, tiny_settings, caplog
):
    """--no-progress (or a log file) still shows long training moving: a line an epoch."""
    import logging

    with caplog.at_level(logging.INFO, logger="microcalcai.train.loop"):
        assert _train(phantom_manifest, tmp_path / "run", tiny_settings, "--epochs", "2") == 0
    lines = [r.getMessage() for r in caplog.records if ": epoch " in r.getMessage()]
    assert [line.split(": epoch ")[1].split(":")[0] for line in lines] == ["1/2", "2/2"]
    assert all("val AUC" in line and "ETA" in line for line in lines)


def test_whole_image_recipe_with_balanced_sampling(phantom_manifest, tmp_path, tiny_settings):
    out = tmp_path / "whole"
    args = [
        "train",
        "--recipe",
        "mobini2024",
        "--data",
        str(phantom_manifest),
        "--out",
        str(out),
        "--no-progress",
    ]
    for item in [*tiny_settings, "roi_size=256", "epochs=1"]:
        args += ["--set", item]
    assert main(args) == 0
    card = read_card(out / "tf_efficientnet_lite0" / "model")
    assert card.crop == {"task": "whole_image", "roi_size": 256}
    assert card.recipe["imbalance"] == "balanced_sampler"
    # predict repeats the whole-image crop the model was trained on
    predictions = tmp_path / "whole.csv"
    model = out / "tf_efficientnet_lite0" / "model"
    command = ["predict", "--model", str(model), "--data", str(phantom_manifest), "--out", str(predictions)]
    # The manifest has no split column: predict takes the split the model was trained with...
    assert main([*command, "--split", "test", "--no-progress"]) == 0
    tested = pd.read_csv(predictions)
    assert set(tested["split"]) == {"test"} and len(tested) == card.split["test"]
    assert main([*command, "--no-progress"]) == 0
    everything = pd.read_csv(predictions, keep_default_na=False)
    assert everything["probability"].between(0, 1).all()
    # Training stored each view at roi_size (256) as predict and the server prepare it, then sized
    # it for the network (64): predict gives the training's own validation scores (to float16;
    # views stored at the input size instead differed by up to 0.03).
    val = pd.read_csv(out / "tf_efficientnet_lite0" / "predictions_val.csv").set_index("case_id")
    scored = everything.astype({"case_id": str}).set_index("case_id").loc[val.index.astype(str)]
    np.testing.assert_allclose(scored["probability"], val["probability"], atol=2e-3)
    assert everything["split"].value_counts().to_dict() == {
        k: card.split[k] for k in ("train", "val", "test")
    }
    # ...which another manifest (here: one row fewer) has not, so --split selects nothing there.
    other = tmp_path / "other.csv"
    pd.read_csv(phantom_manifest).iloc[1:].to_csv(other, index=False)
    elsewhere = ["predict", "--model", str(model), "--data", str(other), "--out", str(tmp_path / "o.csv")]
    assert main([*elsewhere, "--split", "test", "--no-progress"]) == 1


def test_an_interrupted_training_says_how_to_continue(
    phantom_manifest, tmp_path, tiny_settings, capsys, monkeypatch
):
    import microcalcai.train.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(microcalcai.train.run, "train_recipe", interrupted)
    assert _train(phantom_manifest, tmp_path / "run", tiny_settings) == 130
    assert "interrupted; run the same command again to continue" in capsys.readouterr().err


def test_training_into_a_pipe_logs_lines_not_progress_bars(phantom_manifest, tmp_path, tiny_settings):
    import subprocess
    import sys

    command = [sys.executable, "-m", "microcalcai", "train", "--recipe", "kang2021"]
    command += ["--data", str(phantom_manifest), "--out", str(tmp_path / "run"), "--epochs", "1"]
    for item in tiny_settings:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "epoch 1/1: train loss" in done.stderr and "\r" not in done.stderr


def test_crops_for_a_smaller_network_are_resized_straight_from_the_image(phantom_manifest):
    """Networks of several input sizes in one run: each gets its crops resized once from the image
    (as predict and the server give them), not through the largest size."""
    import torch

    from microcalcai.data.manifest import read_manifest
    from microcalcai.train.data import load_crops
    from microcalcai.train.recipes import load_recipe
    from microcalcai.train.run import load_data

    recipe = load_recipe("kang2021")
    data = load_data("target", phantom_manifest, recipe, 64, progress=False, input_sizes={48, 64})
    small = data.crops.subset(np.arange(len(data.crops)) % 2 == 0).resized(48)
    frame = read_manifest(phantom_manifest)
    straight = load_crops(frame.iloc[::2], roi_size=64, out_size=48, progress=False)
    assert torch.equal(small.grey, straight)
    through = data.crops.subset(np.arange(len(data.crops)) % 2 == 0)
    # what training gave that network before: the 64 px crops resized again
    from microcalcai.models.preprocess import resize_grey

    assert not torch.equal(resize_grey(through.grey.float(), 48).half(), straight)

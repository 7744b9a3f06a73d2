"""The first start's default models, smaller: trained, tested on other patients, marked as
demonstrations; then retrainings over HTTP that start from the served weights and keep every
earlier label and the reference ROIs.

The full-size figures (test AUC >= 0.85 on >= 150 ROIs) are measured by `make run` and recorded
in benchmarks/RESULTS.md; here 60 training patients, 4 epochs at 96 px, must already beat chance
on held-out patients by a margin the test set can tell (its 95% CI above 0.5).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from server_helpers import label_part

pytestmark = [pytest.mark.server, pytest.mark.slow]

SMALL = {"patients": 60, "test_patients": 60, "epochs": 4, "input_size": 96}


@pytest.fixture(scope="module")
def first_start(tmp_path_factory):
    from microcalcai.server import bootstrap
    from microcalcai.server.workspace import prepare_app

    workspace = tmp_path_factory.mktemp("first-start") / "workspace"
    prepare_app(workspace)
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        names = bootstrap.ensure_default_models(workspace, workers=1, progress=False, **SMALL)
    return {"workspace": workspace, "names": names, "printed": printed.getvalue()}


def test_first_start_models_beat_chance_on_other_patients_and_say_they_are_demonstrations(first_start):
    from microcalcai.models.artifact import read_card
    from microcalcai.models.ensemble import read_ensemble
    from microcalcai.server import bootstrap
    from microcalcai.server.hosted import ModelStore, describe

    workspace = first_start["workspace"]
    store = ModelStore(workspace / "models")
    assert first_start["names"] == list(bootstrap.MEMBER_NAMES)
    assert store.names() == [*bootstrap.MEMBER_NAMES, "ensemble"]
    for name in bootstrap.MEMBER_NAMES:
        card = read_card(store.current_dir(name))
        assert card.demonstration is True and card.intended_use == bootstrap.INTENDED_USE
        assert card.recipe["name"] == bootstrap.DEFAULT_RECIPE and card.input_size == SMALL["input_size"]
    ensemble, _ = read_ensemble(store.current_dir("ensemble"))
    test = ensemble.test_metrics
    assert describe(store.current_dir("ensemble"))["demonstration"] is True

    # the held-out set: other patients than training and validation, every calcification ROI
    reference = pd.read_csv(workspace / "bootstrap" / bootstrap.REFERENCE)
    held_out = pd.read_csv(workspace / "bootstrap" / "phantom-test" / "manifest.csv")
    held_out = held_out[held_out["finding"] == "calcification"]
    assert not set(reference["patient_id"]) & set(held_out["patient_id"])
    by_split = reference.groupby("split")["patient_id"].apply(set)
    assert set(by_split.index) == {"train", "val"} and not by_split["train"] & by_split["val"]
    assert test["n"] == len(held_out) and test["patients"] == SMALL["test_patients"]
    assert test["n_malignant"] == int((held_out["label"] == "malignant").sum())

    # the quality floor of this small build, and its limits beside it
    lo, hi = test["auc_ci95"]
    assert lo <= test["auc"] <= hi
    assert test["auc"] >= 0.6 and lo > 0.5, test
    assert 0.75 < test["bayes_optimal_auc"] <= 1.0
    assert test["crop_ceiling_auc_expected"] <= bootstrap_bayes_expected() + 1e-9

    # what the first start printed and kept
    report = json.loads((workspace / "bootstrap" / bootstrap.REPORT).read_text())
    assert report["test"] == test and report["n_val"] == int((reference["split"] == "val").sum())
    printed = first_start["printed"]
    assert f"ensemble test AUC {test['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f}) on {test['n']}" in printed
    assert f"Bayes-optimal AUC of these ROIs {test['bayes_optimal_auc']:.3f}" in printed
    assert "not for real images" in printed
    # a second start trains nothing
    assert bootstrap.ensure_default_models(workspace, workers=1, progress=False, **SMALL) == []


def bootstrap_bayes_expected() -> float:
    from microcalcai.phantom.malignancy import expected_bayes_auc

    return expected_bayes_auc()


def _wait_done(http, url: str, model: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"{url}/train/", timeout=30).json()
        if status.get("status") in ("DONE", "ERROR"):
            assert status["status"] == "DONE", "\n".join(status.get("details", []))
            return http.get(f"{url}/info/", timeout=30).json()["train_stats"][model]
        time.sleep(1.0)
    raise AssertionError(f"training of {model} did not finish within {timeout:.0f} s")


def _label(http, url: str, row: dict, label: str) -> None:
    roi = {"x": int(row["roi_x"]), "y": int(row["roi_y"]), "size": int(row["roi_size"])}
    saved = http.put(
        f"{url}/datastore/label",
        params={"image": Path(row["image_path"]).stem, "tag": "final"},
        data={"params": "{}"},
        files=label_part({"roi": roi, "label": label}),
        timeout=30,
    )
    assert saved.status_code == 200, saved.text


def test_retraining_starts_from_served_weights_and_keeps_earlier_labels(first_start, tmp_path, http):
    from server_helpers import phantom_studies

    from microcalcai.data.manifest import read_manifest
    from microcalcai.models.artifact import read_card
    from microcalcai.server.hosted import ModelStore
    from microcalcai.server.launch import LocalServer

    workspace = first_start["workspace"]
    store = ModelStore(workspace / "models")
    studies = phantom_studies(tmp_path, patients=4)
    rows = studies["rows"]
    reference = pd.read_csv(workspace / "bootstrap" / "reference.csv")
    model = "lite0-phantom-a"
    server = LocalServer(studies["folder"], workspace, env={"OMP_NUM_THREADS": "2"})
    server.start()
    try:
        trained_from = []
        for round_rows in (rows[:2], rows[2:4]):
            for row in round_rows:
                _label(http, server.url, row, row["label"])
            served = store.current_dir(model)
            started = http.post(
                f"{server.url}/train/{model}", json={"max_epochs": 1, "publish_if": "always"}, timeout=30
            )
            assert started.status_code == 200, started.text
            stats = _wait_done(http, server.url, model)
            run = read_manifest(store.folder(model) / stats["run_dir"] / "manifest.csv")
            trained_from.append((served, stats, run))
    finally:
        server.stop()

    for round_no, (served, stats, run) in enumerate(trained_from, start=1):
        # the run fine-tuned the version served when it started (shrunk halfway toward ImageNet)
        new_card = read_card(store.version_dir(model, stats["published_version"]))
        base = read_card(served)
        start = Path(new_card.recipe["weights"])
        assert start.resolve() == (store.folder(model) / stats["run_dir"] / "start").resolve()
        assert read_card(start).weights_init["base_sha256"] == base.weights_sha256
        assert new_card.weights_init["retrained_from"]["weights_sha256"] == base.weights_sha256
        assert new_card.demonstration is True  # still a demonstration model
        # every label saved so far (earlier rounds too), plus the reference ROIs
        labelled = run[run["source"] == "label"]
        assert stats["n_labels"] == len(labelled) == 2 * round_no
        assert {int(x) for x in labelled["roi_x"]} == {int(r["roi_x"]) for r in rows[: 2 * round_no]}
        assert stats["n_reference"] == len(reference)
        # judged on the fixed held-out validation ROIs of the reference (labels too few to split)
        assert stats["n_val"] == int((reference["split"] == "val").sum())
        assert stats["val_auc_difference"] == pytest.approx(stats["new_val_auc"] - stats["base_val_auc"])
        lo, hi = stats["val_auc_difference_ci95"]
        assert lo <= stats["val_auc_difference"] <= hi
    assert trained_from[1][0] == store.version_dir(model, trained_from[0][1]["published_version"])

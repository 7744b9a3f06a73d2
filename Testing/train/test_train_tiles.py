"""Tile training for breast arterial calcification on whole four-view phantom exams (recipe task
tiles): tile geometry, tile labels from the vessel masks, the model folder scoring a whole view as
the server does, and a short training run that ranks BAC-positive exams above negative ones."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from microcalcai.data.manifest import read_manifest
from microcalcai.errors import InputError
from microcalcai.models.tiles import (
    TileSettings,
    box_fractions,
    breast_tiles,
    score_whole_image,
    tile_boxes,
    whole_image_saliency,
)
from microcalcai.phantom.exam import generate_exams

# 600 x 450 or 750 x 600 pixel views; 40% of the women with BAC, so train and test hold both kinds
FAST = dict(spacing_mm=0.4, prevalence=0.3, bilateral_fraction=0.5)
# Measured (2026-12-03, torch 2.14.1, timm 1.0.31): on the 8 test exams AUC 1.000 (exam) and 0.992
# (image, 95% CI 0.966-1.000) after 2 epochs on 10 training exams; the file takes 40 CPU-seconds
# with the phantom (36 s wall on 2 cores at load average 2). The bar leaves room for another library
# version's random stream and stays far above chance (a model that learnt nothing scores ~0.5).
EXAM_AUC_BAR = 0.85


@pytest.fixture(scope="module")
def bac_exams(tmp_path_factory):
    """22 exams at 0.4 mm; a split by exam, stratified by exam BAC: 10 train, 4 val, 8 test."""
    out = tmp_path_factory.mktemp("bac") / "exams"
    result = generate_exams(out, exams=22, seed=3, workers=2, progress=False, **FAST)
    frame = pd.read_csv(result.manifest_path)
    exams = frame.groupby("exam_id")["exam_bac"].first().sort_values(kind="stable")
    # every other exam of the sorted list: both kinds reach every part
    order = [*range(0, 22, 2), *range(1, 22, 2)]
    parts = ["train"] * 10 + ["val"] * 4 + ["test"] * 8
    split = {exams.index[i]: parts[k] for k, i in enumerate(order)}
    frame["split"] = frame["exam_id"].map(split)
    manifest = out / "split.csv"
    frame.to_csv(manifest, index=False)
    test = frame[frame["split"] == "test"]
    assert 0 < test.groupby("exam_id")["exam_bac"].first().sum() < test["exam_id"].nunique()
    return manifest


def test_tiles_cover_the_image_and_fractions_match_direct_counts():
    boxes = tile_boxes((150, 100), 64, 32)
    covered = np.zeros((150, 100), bool)
    for r0, c0, r1, c1 in boxes:
        assert r1 - r0 == 64 and c1 - c0 == 64 and r1 <= 150 and c1 <= 100
        covered[r0:r1, c0:c1] = True
    assert covered.all()
    plane = np.random.default_rng(0).random((150, 100)) > 0.7
    direct = [plane[r0:r1, c0:c1].mean() for r0, c0, r1, c1 in boxes]
    np.testing.assert_allclose(box_fractions(plane, boxes), direct)
    with pytest.raises(InputError, match="smaller than one tile"):
        tile_boxes((40, 100), 64, 32)


def test_only_breast_tiles_are_scored():
    pixels = np.zeros((256, 256), np.float32)
    pixels[:, :100] = 0.5  # breast on the left, air on the right
    boxes, crops = breast_tiles(pixels, TileSettings(min_tissue=0.3), spacing_mm=0.4)
    assert crops.shape[1:] == (64, 64) and len(boxes) == len(crops)
    assert boxes[:, 1].max() < 100  # no tile starts in the air
    assert all((crop > 0).mean() >= 0.3 for crop in crops)
    # the same 25.6 mm tile on a finer image: twice the pixels (the network input resizes them)
    assert TileSettings().tile_px(0.2) == 128 and TileSettings().tile_px(0.4) == 64


def test_training_tiles_are_labelled_from_the_vessel_masks(bac_exams):
    from microcalcai.train.tiles import training_tiles

    frame = read_manifest(bac_exams).head(12)
    settings = TileSettings()
    tiles = training_tiles(frame, settings, 64, progress=False)
    assert tiles.grey.shape[1:] == (1, 64, 64)
    table = tiles.frame
    for (_, row), label in zip(table.iterrows(), tiles.labels, strict=True):
        r0, c0, r1, c1 = map(int, row["tile_box"].split(","))
        vessel = (np.asarray(Image.open(row["mask_path"]))[r0:r1, c0:c1] > 0).mean()
        if label:
            assert int(row["bac"]) == 1 and vessel >= settings.positive_fraction
        else:
            assert vessel == 0
    per_image = table.groupby("image_id")["label"].value_counts().unstack(fill_value=0)
    assert (per_image.get("malignant", 0) <= settings.positives_per_image).all()
    assert (per_image["benign"] <= settings.negatives_per_image).all()
    assert set(table["image_id"][tiles.labels == 1]) <= set(frame["image_id"][frame["bac"].astype(int) == 1])
    assert tiles.labels.sum() > 0


def test_bad_tile_settings_are_refused_with_the_reason(bac_exams):
    from microcalcai.train.recipes import load_recipe
    from microcalcai.train.tiles import training_tiles

    with pytest.raises(InputError, match="stride"):
        load_recipe("mobini2024", ["task=tiles", "tiles.stride=0"])
    with pytest.raises(InputError, match="tiles.aggregate"):
        load_recipe("mobini2024", ["task=tiles", "tiles.aggregate=mean"])
    with pytest.raises(InputError, match="unknown setting 'tiles.size_px'"):
        load_recipe("mobini2024", ["task=tiles", "tiles.size_px=64"])
    for name in ("positives_per_image", "negatives_per_image"):  # the error names the bad field
        with pytest.raises(InputError, match=rf"tiles\.{name}=0: give at least one positive"):
            load_recipe("mobini2024", ["task=tiles", f"tiles.{name}=0"])
    with pytest.raises(InputError, match="does not cross-validate"):
        load_recipe("mobini2024", ["task=tiles", "folds=3"])
    frame = read_manifest(bac_exams)
    # no validation images (the manifest's split says train and test only): refused before any tiling
    from microcalcai.train.run import load_data

    no_val = bac_exams.with_name("split-no-val.csv")
    frame.assign(split=frame["split"].replace("val", "train")).to_csv(no_val, index=False)
    recipe = load_recipe("mobini2024", ["task=tiles", "split.val=0"])
    with pytest.raises(InputError, match="task tiles needs validation images.*set split.val"):
        load_data("no-val", no_val, recipe, 64, progress=False)
    positive = frame[frame["bac"].astype(int) == 1].head(1).assign(mask_path="")
    with pytest.raises(InputError, match="no mask_path"):
        training_tiles(positive, TileSettings(), 64, progress=False)


def test_a_short_tile_training_ranks_bac_exams_above_negative_ones(bac_exams, tmp_path):
    from microcalcai.evaluate.exam import evaluate_exams
    from microcalcai.models.predictor import load_predictor
    from microcalcai.train.recipes import load_recipe
    from microcalcai.train.run import train_recipe

    recipe = load_recipe(
        "mobini2024",
        [
            "archs=[tf_efficientnet_lite0]",
            "task=tiles",
            "input_size=64",
            "batch_size=32",
            "epochs=2",
            "optimizer.name=adamw",
            "optimizer.lr=1e-3",
            "augment.vflip=true",
            "tiles.stride=1.0",  # a quarter of the tiles of the default 0.5: the test stays short
        ],
    )
    summary = train_recipe(recipe, bac_exams, tmp_path / "run", device="cpu", progress=False)
    arch_dir = tmp_path / "run" / "tf_efficientnet_lite0"
    views = pd.read_csv(arch_dir / "predictions_test.csv").merge(
        pd.read_csv(bac_exams)[["image_id", "exam_id", "bac"]], on="image_id"
    )
    assert len(views) == 8 * 4 and views["exam_id"].nunique() == 8  # every test view scored whole
    result = evaluate_exams(views, score="probability", n_boot=50)
    assert result["exam"]["auc"]["estimate"] >= EXAM_AUC_BAR, json.dumps(result["exam"]["auc"])
    assert result["image"]["auc"]["estimate"] >= EXAM_AUC_BAR
    assert summary["archs"]["tf_efficientnet_lite0"]["test"]["auc"] == pytest.approx(
        result["image"]["auc"]["estimate"]
    )

    # the model folder alone scores a whole view as training did (what the server calls)
    predictor = load_predictor(arch_dir / "model", device="cpu")
    assert predictor.card.crop["task"] == "tiles" and predictor.input_size == 64
    row = read_manifest(bac_exams).set_index("image_id").loc[views["image_id"].iloc[0]]
    from microcalcai.io import read_image

    image = read_image(row["image_path"])
    scored = score_whole_image(predictor, image.pixels, float(row["spacing_mm"]))
    assert scored.task == "tiles" and len(scored.boxes) == len(scored.tile_probability) > 1
    assert scored.score == pytest.approx(views["probability"].iloc[0], abs=1e-6)
    heat = scored.map(image.pixels.shape)
    assert heat.shape == image.pixels.shape and heat.max() == pytest.approx(scored.score, abs=1e-6)
    with pytest.raises(InputError, match="pixel spacing"):
        score_whole_image(predictor, image.pixels)
    # a Grad-CAM++ map over the whole view, from its best tiles only
    saliency = whole_image_saliency(predictor, image.pixels, scored=scored, top=3)
    assert saliency.shape == image.pixels.shape and 0 < saliency.max() <= 1
    best = scored.boxes[np.argsort(scored.tile_probability)[-3:]]
    inside = np.zeros(image.pixels.shape, bool)
    for r0, c0, r1, c1 in best:
        inside[r0:r1, c0:c1] = True
    assert not saliency[~inside].any()
    # `microcalcai predict` on whole-image rows scores them the same way
    from microcalcai.train.predictions import predict_frame

    rows = read_manifest(bac_exams).set_index("image_id").loc[views["image_id"].iloc[:2]].reset_index()
    table = predict_frame(predictor, rows, progress=False)
    np.testing.assert_allclose(table["probability"], views["probability"].iloc[:2], atol=1e-6)


def test_a_whole_image_model_scores_the_padded_view_in_one_piece(tmp_path):
    from microcalcai.models.artifact import card_for, save_model
    from microcalcai.models.predictor import load_predictor
    from microcalcai.models.registry import create_model

    card = card_for("tf_efficientnet_lite0", input_size=64, crop={"task": "whole_image", "roi_size": 64})
    save_model(create_model("tf_efficientnet_lite0", "none"), card, tmp_path / "model")
    predictor = load_predictor(tmp_path / "model", device="cpu")
    pixels = np.random.default_rng(1).random((90, 60)).astype(np.float32)
    scored = score_whole_image(predictor, pixels)  # no spacing needed: nothing is cut in mm
    square = np.zeros((90, 90), np.float32)
    square[:, :60] = pixels
    assert scored.task == "whole_image" and scored.boxes.tolist() == [[0, 0, 90, 60]]
    # the padded view as whole-image training stores it (resized to crop.roi_size, float16), so the
    # score is the one `microcalcai predict` and training's evaluation give
    from microcalcai.models.preprocess import whole_image_input

    stored = whole_image_input(square, 64).float().numpy()
    assert scored.score == pytest.approx(predictor.predict_proba(stored)[0], abs=1e-7)
    saliency = whole_image_saliency(predictor, pixels, scored=scored)
    assert saliency.shape == pixels.shape
    # the map explains that same stored input (its probability is the score), resized back onto the view
    import torch

    from microcalcai.explain.saliency import explain_crops
    from microcalcai.models.preprocess import resize_grey

    explained = explain_crops(predictor, stored, method="gradcam++", target="malignant")
    assert explained.maps.shape == (1, 64, 64)
    assert explained.probability[0] == pytest.approx(scored.score, abs=1e-6)
    back = resize_grey(torch.as_tensor(explained.maps)[:, None], 90)[0, 0, :, :60].numpy()
    np.testing.assert_allclose(saliency, np.clip(back, 0, 1), atol=1e-6)

"""Whole-image (BAC) models over HTTP on the real server: one view, an exam, the whole-image map.

One server for the module: phantom four-view exams (two exams, the second without its RMLO
view, the first with an extra XCCL view), a PNG without a header, a tiny whole-image model, a
tiny tile model (the kind BAC training makes, scored tile by tile) and a tiny ROI model.
docs/server-api.md, "Whole-image models".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from server_helpers import (
    bac_exam_studies,
    error_detail,
    multipart_answer,
    post_infer,
    running_server,
    synthetic_mammogram,
    tile_model,
    tiny_model,
    whole_image_model,
)

pytestmark = pytest.mark.server
IMAGE_SIZE = 128
VIEW_ORDER = ["LCC", "LMLO", "RCC", "RMLO"]


@pytest.fixture(scope="module")
def bac_env(tmp_path_factory):
    import pydicom
    from PIL import Image

    from microcalcai.server.workspace import install_model, prepare_app

    root = tmp_path_factory.mktemp("bac-server")
    made = bac_exam_studies(root, exams=2)
    folder, rows = made["folder"], made["rows"]
    exams = sorted({r["exam_id"] for r in rows})
    first = [r for r in rows if r["exam_id"] == exams[0]]
    second = [r for r in rows if r["exam_id"] == exams[1]]
    dropped = next(r["image_id"] for r in second if r["laterality"] + r["view"] == "RMLO")
    (folder / f"{dropped}.dcm").unlink()  # the second exam lacks a view
    # a view that is not CC/MLO in the first exam's study: the exam leaves it out, saying why
    extra = pydicom.dcmread(folder / f"{first[0]['image_id']}.dcm")
    extra.ViewPosition = "XCCL"
    extra.SOPInstanceUID = extra.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    extra.save_as(folder / "extra-xccl.dcm")
    # a header with a laterality but no view position, in a study of its own
    half = pydicom.dcmread(folder / f"{first[0]['image_id']}.dcm")
    for keyword in ("ViewPosition", "ViewCodeSequence", "PatientOrientation", "SeriesDescription"):
        if keyword in half:
            delattr(half, keyword)
    half.PatientID = half.PatientName = "HALFHEADER"
    half.StudyInstanceUID = pydicom.uid.generate_uid()
    half.SOPInstanceUID = half.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    half.save_as(folder / "half-header.dcm")
    pixels, _ = synthetic_mammogram(7, False)
    Image.fromarray((pixels >> 4).astype(np.uint8)).save(folder / "plain_png.png")

    workspace = root / "workspace"
    prepare_app(workspace)
    bac_folder = whole_image_model(root / "built", "bac-tiny", image_size=IMAGE_SIZE)
    install_model(workspace, bac_folder)
    tiles_folder = tile_model(root / "built", "bac-tiles")
    install_model(workspace, tiles_folder)
    install_model(workspace, tiny_model(root / "built", "roi-tiny", 1))
    study_uids = {
        e: str(pydicom.dcmread(made["exams"] / next(r for r in rows if r["exam_id"] == e)["image_path"],
                               stop_before_pixels=True).StudyInstanceUID)
        for e in exams
    }  # fmt: skip
    return {
        "studies": folder,
        "workspace": workspace,
        "rows": rows,
        "first": first,
        "second": [r for r in second if r["image_id"] != dropped],
        "dropped": dropped,
        "study_uids": [study_uids[e] for e in exams],
        "exams_dir": made["exams"],
        "model_dir": bac_folder,
        "tiles_dir": tiles_folder,
    }


@pytest.fixture(scope="module")
def bac_server(bac_env):
    with running_server(bac_env["studies"], bac_env["workspace"], threads=2) as local:
        yield local


def _infer(http, server, model, image, params, output="json", files=None):
    return post_infer(http, server, model, image, params, output=output, files=files, timeout=300)


def _view_id(rows, name: str) -> str:
    return next(r["image_id"] for r in rows if r["laterality"] + r["view"] == name)


def _library_probabilities(env, rows) -> dict[str, float]:
    """What `microcalcai predict` (training's crops, predict_frame) gives for these views."""
    import pandas as pd

    from microcalcai.models.predictor import load_predictor
    from microcalcai.train.predictions import predict_frame

    frame = pd.DataFrame(rows)
    frame["image_path"] = [str(env["exams_dir"] / p) for p in frame["image_path"]]
    table = predict_frame(load_predictor(env["model_dir"], device="cpu"), frame, progress=False)
    return dict(zip(frame["image_id"], table["probability"].astype(float), strict=True))


def test_info_entry_says_whole_image_and_bac(bac_server, http):
    info = http.get(f"{bac_server.url}/info/", timeout=30).json()
    model = info["models"]["bac-tiny"]
    assert model["task"] == "whole_image" and model["finding"] == "bac"
    assert model["finding_name"] == "breast arterial calcification"
    assert model["labels"] == {"no_bac": 0, "bac": 1}
    assert model["version"] == "1" and model["versions"] == ["1"] and model["threshold"] == 0.5
    assert model["image_size"] == IMAGE_SIZE and model["default_saliency"] == "gradcam++"
    assert model["scoring"] == "whole_image" and model["needs_spacing"] is False
    assert model["exam_aggregation"] == "max" and model["exam_aggregations"] == ["max", "mean", "noisy_or"]
    assert model["exam_threshold"] == 0.5 and model["exam_views"] == VIEW_ORDER
    assert model["demonstration"] is True and "demonstration" in model["intended_use"]
    assert "default_roi_size" not in model and "gradcam++" in model["saliency_methods"]
    assert info["models"]["roi-tiny"]["task"] == "roi"
    # a tile model is asked as a whole-image model; its entry says how it scores a view
    tiles = info["models"]["bac-tiles"]
    assert tiles["task"] == "whole_image" and tiles["labels"] == {"no_bac": 0, "bac": 1}
    assert tiles["scoring"] == "tiles" and tiles["needs_spacing"] is True
    assert tiles["tile_size_mm"] == 51.2 and tiles["tile_stride"] == 1.0 and tiles["tile_aggregate"] == "max"
    assert "image_size" not in tiles and tiles["exam_views"] == VIEW_ORDER
    # whole-image models (tile models too) are not fine-tuned on ROI labels
    assert set(info["trainers"]) == {"roi-tiny"}


def test_one_view_answers_what_predict_gives(bac_server, http, bac_env):
    image = _view_id(bac_env["first"], "LCC")
    response = _infer(http, bac_server, "bac-tiny", image, {})
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = _library_probabilities(bac_env, bac_env["first"])[image]
    assert answer["probability"] == pytest.approx(expected, abs=1e-5)
    assert answer["task"] == "whole_image" and answer["finding"] == "bac" and answer["roi"] is None
    assert answer["decision"] is (answer["probability"] >= 0.5)
    assert answer["label"] == ("bac" if answer["decision"] else "no_bac")
    assert answer["view"] == {"name": "LCC", "laterality": "L", "view_position": "CC", "source": "header"}
    assert answer["study"]["study_uid"] == bac_env["study_uids"][0]
    assert answer["image"]["id"] == image and answer["image"]["spacing_mm"] == [0.8, 0.8]
    assert answer["saliency"] is None  # output=json without params.saliency: no map
    assert answer["demonstration"] is True


def test_map_nrrd_lies_on_the_whole_image(bac_server, http, bac_env, tmp_path):
    """Default Grad-CAM++; an MLO view (more rows than columns): the NRRD has the image's size and
    the identity geometry, and it is the library's map (models.tiles.whole_image_saliency)."""
    import nrrd

    from microcalcai.io import read_image
    from microcalcai.models.predictor import load_predictor
    from microcalcai.models.tiles import whole_image_saliency

    image = _view_id(bac_env["first"], "RMLO")
    response = _infer(http, bac_server, "bac-tiny", image, {}, output="all")
    assert response.status_code == 200, response.text
    answer, blob = multipart_answer(response)
    mammogram = read_image(bac_env["studies"] / f"{image}.dcm")
    rows, cols = mammogram.shape
    assert rows != cols
    assert answer["saliency"]["method"] == "gradcam++" and answer["saliency"]["target"] == "bac"
    assert answer["saliency"]["shape"] == [rows, cols]
    assert answer["saliency"]["origin_xy"] == [0.0, 0.0] and answer["saliency"]["step_xy"] == [1.0, 1.0]
    path = tmp_path / "map.nrrd"
    path.write_bytes(blob)
    data, header = nrrd.read(str(path), index_order="C")
    assert data.shape == (rows, cols) and data.dtype == np.float32
    np.testing.assert_allclose(header["space origin"], [0.0, 0.0])
    np.testing.assert_allclose(header["space directions"], np.eye(2))
    assert header["microcalcai_method"] == "gradcam++" and header["microcalcai_view"] == "RMLO"
    assert float(header["microcalcai_probability"]) == pytest.approx(answer["probability"], abs=1e-5)
    assert 0.0 <= data.min() and data.max() <= 1.0 and data.max() > 0.0
    predictor = load_predictor(bac_env["model_dir"], device="cpu")
    expected = whole_image_saliency(predictor, mammogram.pixels, method="gradcam++")
    np.testing.assert_allclose(data, expected, atol=1e-4)


def test_exam_of_an_image_scores_the_four_views_and_aggregates(bac_server, http, bac_env):
    from microcalcai.evaluate.exam import aggregate

    image = _view_id(bac_env["first"], "RCC")
    response = _infer(http, bac_server, "bac-tiny", image, {"exam": True})
    assert response.status_code == 200, response.text
    answer = response.json()
    views = answer["views"]
    assert [v["name"] for v in views] == VIEW_ORDER
    assert {v["image"] for v in views} == {r["image_id"] for r in bac_env["first"]}
    expected = _library_probabilities(bac_env, bac_env["first"])
    for view in views:
        assert view["probability"] == pytest.approx(expected[view["image"]], abs=1e-5)
        assert view["decision"] is (view["probability"] >= 0.5) and view["threshold"] == 0.5
    exam = answer["exam"]
    scores = np.array([v["probability"] for v in views])
    assert exam["probability"] == pytest.approx(aggregate(scores, "max"), abs=1e-12)
    assert exam["aggregation"] == "max" and exam["complete"] is True and exam["missing_views"] == []
    assert exam["study_uid"] == bac_env["study_uids"][0] and exam["views_scored"] == 4
    assert exam["label"] == ("bac" if exam["probability"] >= 0.5 else "no_bac")
    assert [s["image"] for s in answer["skipped"]] == ["extra-xccl"]
    reason = answer["skipped"][0]["reason"]
    assert "its view is XCCL (CC or MLO needed)" in reason
    assert "params.view" not in reason  # an exam takes views from headers: that advice would not help


def test_exam_by_study_names_the_missing_view(bac_server, http, bac_env):
    """params.study without image=; noisy-OR chosen in params; the RMLO view is missing."""
    from microcalcai.evaluate.exam import aggregate

    response = _infer(http, bac_server, "bac-tiny", "", {"study": bac_env["study_uids"][1],
                                                        "aggregation": "noisy_or"})  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [v["name"] for v in answer["views"]] == ["LCC", "LMLO", "RCC"]
    assert answer["missing_views"] == ["RMLO"] and answer["exam"]["missing_views"] == ["RMLO"]
    assert answer["exam"]["complete"] is False and answer["skipped"] == []
    scores = np.array([v["probability"] for v in answer["views"]])
    assert answer["exam"]["probability"] == pytest.approx(aggregate(scores, "noisy_or"), abs=1e-12)
    assert answer["exam"]["aggregation"] == "noisy_or"


@pytest.mark.parametrize(
    ("model", "image", "params", "output", "status", "words"),
    [
        ("bac-tiny", "FIRST-LCC", {"roi": {"x": 50, "y": 50, "size": 64}}, "json", 400, "send no params.roi"),
        ("bac-tiny", "plain_png", {}, "json", 400, "not a mammogram view"),
        ("bac-tiny", "FIRST-LCC", {"view": "RMLO"}, "json", 400, "disagrees"),
        ("bac-tiny", "FIRST-LCC", {"view": "AP"}, "json", 400, "params.view must be one of"),
        ("bac-tiny", "FIRST-LCC", {"dicom_out": True}, "json", 400, "dicom_out"),
        ("roi-tiny", "FIRST-LCC", {"exam": True}, "json", 400, "classifies ROIs"),
        ("roi-tiny", "", {"study": "1.2.3"}, "json", 400, "whole-image models (bac-tiles, bac-tiny)"),
        ("bac-tiles", "FIRST-LCC", {"roi": {"x": 50, "y": 50}}, "json", 400, "send no params.roi"),
        ("bac-tiles", "FIRST-LCC", {"saliency_target": "predicted"}, "all", 400, "must be one of ['bac']"),
        ("bac-tiles", "FIRST-LCC", {"spacing_mm": -1}, "json", 400, "params.spacing_mm must be"),
        ("bac-tiny", "", {"study": "1.2.3.4.5"}, "json", 404, "no datastore image belongs to study"),
        ("bac-tiny", "", {"study": "../etc"}, "json", 400, "StudyInstanceUID"),
        ("bac-tiny", "FIRST-LCC", {"exam": "yes"}, "json", 400, "params.exam must be true or false"),
        ("bac-tiny", "FIRST-LCC", {"exam": True}, "image", 400, "JSON"),
        ("bac-tiny", "FIRST-LCC", {"exam": True, "saliency": "gradcam++"}, "json", 400, "no map"),
        ("bac-tiny", "FIRST-LCC", {"exam": True, "aggregation": "median"}, "json", 400, "noisy_or"),
        ("bac-tiny", "plain_png", {"exam": True}, "json", 400, "StudyInstanceUID"),
        ("bac-tiny", "", {"exam": True}, "json", 400, "no image given"),
    ],
)
def test_whole_image_errors_say_what_to_do(bac_server, http, bac_env, model, image, params, output, status,
                                           words):  # fmt: skip
    image = _view_id(bac_env["first"], "LCC") if image == "FIRST-LCC" else image
    response = _infer(http, bac_server, model, image, params, output=output)
    assert response.status_code == status, response.text
    assert words in error_detail(response)


def test_params_view_fills_only_what_the_header_lacks(bac_server, http, bac_env):
    """The header gives the laterality (L) and no view position: params.view supplies the position."""
    lcc = _view_id(bac_env["first"], "LCC")
    assert _infer(http, bac_server, "bac-tiny", "half-header", {}).status_code == 400
    for asked in ("LCC", "lmlo"):
        response = _infer(http, bac_server, "bac-tiny", "half-header", {"view": asked})
        assert response.status_code == 200, response.text
        view = response.json()["view"]
        assert view["name"] == asked.upper() and view["source"] == "header+params"
    full = _infer(http, bac_server, "bac-tiny", lcc, {}).json()
    filled = _infer(http, bac_server, "bac-tiny", "half-header", {"view": "LCC"}).json()
    assert filled["probability"] == pytest.approx(full["probability"], abs=1e-6)  # same pixels
    refused = _infer(http, bac_server, "bac-tiny", "half-header", {"view": "RCC"})
    assert refused.status_code == 400 and "disagrees" in error_detail(refused)
    assert "header says L?" in error_detail(refused)


def test_png_view_named_in_params_is_classified(bac_server, http):
    response = _infer(http, bac_server, "bac-tiny", "plain_png", {"view": "lmlo"})
    assert response.status_code == 200, response.text
    assert response.json()["view"] == {"name": "LMLO", "laterality": "L", "view_position": "MLO",
                                       "source": "params"}  # fmt: skip


def test_exam_of_an_upload_is_refused(bac_server, http, bac_env):
    image = _view_id(bac_env["first"], "LCC")
    upload = {"file": (f"{image}.dcm", (bac_env["studies"] / f"{image}.dcm").read_bytes())}
    response = _infer(http, bac_server, "bac-tiny", "", {"exam": True}, files=upload)
    assert response.status_code == 400 and "PUT /datastore/image" in error_detail(response)
    # the same upload as one view is classified, its view read from its header
    response = _infer(http, bac_server, "bac-tiny", "", {}, files=upload)
    assert response.status_code == 200, response.text
    assert response.json()["view"]["name"] == "LCC"


def test_whole_image_model_is_not_fine_tuned_on_roi_labels(bac_server, http):
    response = http.post(f"{bac_server.url}/train/bac-tiny", json={"max_epochs": 1}, timeout=60)
    assert response.status_code == 400 and "whole-image model" in error_detail(response)


# -- a tile model (card crop task "tiles"): the same requests, scored tile by tile -------------------
def _tile_library(env):
    from microcalcai.models.predictor import load_predictor

    return load_predictor(env["tiles_dir"], device="cpu")


def test_tile_model_view_is_the_library_score_and_map(bac_server, http, bac_env, tmp_path):
    """One MLO view with its map: the probability is score_whole_image's at the DICOM's pixel
    size (and `microcalcai predict`'s), the NRRD lies on the whole image and is
    whole_image_saliency's, non-zero only inside the best tiles."""
    import nrrd

    from microcalcai.io import read_image
    from microcalcai.models.tiles import score_whole_image, whole_image_saliency

    image = _view_id(bac_env["first"], "LMLO")
    response = _infer(http, bac_server, "bac-tiles", image, {}, output="all")
    assert response.status_code == 200, response.text
    answer, blob = multipart_answer(response)
    mammogram = read_image(bac_env["studies"] / f"{image}.dcm")
    predictor = _tile_library(bac_env)
    scored = score_whole_image(predictor, mammogram.pixels, 0.8)
    assert scored.task == "tiles" and len(scored.boxes) > 8
    assert answer["probability"] == pytest.approx(scored.score, abs=1e-6)
    assert answer["threshold"] == 0.5 and answer["decision"] is (scored.score >= 0.5)
    assert answer["task"] == "whole_image" and answer["scoring"] == "tiles"
    assert answer["image"]["spacing_mm"] == [0.8, 0.8] and answer["image"]["spacing_source"] == "image"
    assert answer["members"] == {"bac-tiles": pytest.approx(scored.score, abs=1e-6)}
    # `microcalcai predict` on the same file gives the same score
    from microcalcai.train.predictions import predict_frame

    row = next(r for r in bac_env["first"] if r["image_id"] == image)
    frame = pd.DataFrame([{**row, "image_path": str(bac_env["exams_dir"] / row["image_path"])}])
    assert predict_frame(predictor, frame, progress=False)["probability"][0] == pytest.approx(
        answer["probability"], abs=1e-6
    )
    rows, cols = mammogram.shape
    assert answer["saliency"]["shape"] == [rows, cols] and answer["saliency"]["step_xy"] == [1.0, 1.0]
    path = tmp_path / "map.nrrd"
    path.write_bytes(blob)
    data, header = nrrd.read(str(path), index_order="C")
    assert data.shape == (rows, cols) and header["microcalcai_scoring"] == "tiles"
    np.testing.assert_allclose(header["space directions"], np.eye(2))
    expected = whole_image_saliency(predictor, mammogram.pixels, 0.8, method="gradcam++", scored=scored)
    np.testing.assert_allclose(data, expected, atol=1e-4)
    assert data.max() > 0.0
    inside = np.zeros((rows, cols), bool)
    for r0, c0, r1, c1 in scored.boxes[np.argsort(scored.tile_probability)[-8:]]:
        inside[r0:r1, c0:c1] = True
    assert not inside.all() and not data[~inside].any()  # the map comes from the best tiles only


def test_tile_model_exam_aggregates_the_library_scores(bac_server, http, bac_env):
    from microcalcai.io import read_image
    from microcalcai.models.tiles import score_whole_image

    image = _view_id(bac_env["first"], "RCC")
    response = _infer(http, bac_server, "bac-tiles", image, {"exam": True, "aggregation": "mean"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["scoring"] == "tiles" and [v["name"] for v in answer["views"]] == VIEW_ORDER
    predictor = _tile_library(bac_env)
    for view in answer["views"]:
        pixels = read_image(bac_env["studies"] / f"{view['image']}.dcm").pixels
        assert view["probability"] == pytest.approx(score_whole_image(predictor, pixels, 0.8).score, abs=1e-6)
        assert view["threshold"] == 0.5 and view["spacing_source"] == "image"
    scores = np.array([v["probability"] for v in answer["views"]])
    assert answer["exam"]["probability"] == pytest.approx(scores.mean(), abs=1e-12)
    assert answer["exam"]["aggregation"] == "mean" and answer["exam"]["complete"] is True


def test_tile_model_needs_the_pixel_spacing(bac_server, http, bac_env):
    """A PNG carries no pixel spacing: a tile model says to send params.spacing_mm, and scores the
    view at the spacing sent; a model of the whole view needs none."""
    from microcalcai.io import read_image
    from microcalcai.models.tiles import score_whole_image

    response = _infer(http, bac_server, "bac-tiles", "plain_png", {"view": "LMLO"})
    assert response.status_code == 400
    detail = error_detail(response)
    assert "no pixel spacing" in detail and "params.spacing_mm" in detail and "51.2 mm" in detail
    response = _infer(http, bac_server, "bac-tiles", "plain_png", {"view": "LMLO", "spacing_mm": "0.8"})
    assert response.status_code == 400 and "params.spacing_mm must be" in error_detail(response)
    response = _infer(http, bac_server, "bac-tiles", "plain_png", {"view": "LMLO", "spacing_mm": 0.8})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["image"]["spacing_source"] == "params" and answer["image"]["spacing_mm"] is None
    pixels = read_image(bac_env["studies"] / "plain_png.png").pixels
    expected = score_whole_image(_tile_library(bac_env), pixels, 0.8).score
    assert answer["probability"] == pytest.approx(expected, abs=1e-6)
    response = _infer(http, bac_server, "bac-tiny", "plain_png", {"view": "LMLO"})
    assert response.status_code == 200 and response.json()["image"]["spacing_source"] is None


def _card_settings(crop: dict):
    from microcalcai.models.artifact import ModelCard
    from microcalcai.server.whole_image import WholeImageSettings

    card = ModelCard("bac-card", "efficientnet_lite0", IMAGE_SIZE, [0.5] * 3, [0.25] * 3, threshold=0.4,
                     crop={"task": "whole_image", **crop})  # fmt: skip
    return WholeImageSettings.of(card)


def test_card_exam_threshold_null_is_the_threshold_and_bad_crop_settings_say_what_to_fix():
    from microcalcai.errors import MicrocalcError

    assert _card_settings({"exam_threshold": None}).exam_threshold == 0.4
    assert _card_settings({}).exam_threshold == 0.4
    assert _card_settings({"exam_threshold": 0.7}).exam_threshold == 0.7
    for bad in ("high", [0.5], 1.5, True):
        with pytest.raises(MicrocalcError, match="crop.exam_threshold must be a probability"):
            _card_settings({"exam_threshold": bad})
    with pytest.raises(MicrocalcError, match=r"choose one of bac in the model card's crop settings"):
        _card_settings({"finding": "mass"})
    with pytest.raises(MicrocalcError, match=r"choose one of max, mean, noisy_or in the model card's crop"):
        _card_settings({"exam_aggregation": "median"})


def test_study_index_keeps_one_entry_per_image_and_drops_removed_files(tmp_path):
    """The exam lookup's header index: a rewritten file replaces its image's entry (no stale
    duplicate), a deleted file's entry goes, so the index never outgrows the datastore."""
    import pydicom

    from microcalcai.server.datastore import StudiesDatastore
    from microcalcai.server.views import StudyIndex

    made = bac_exam_studies(tmp_path, exams=1)
    folder = made["folder"]
    datastore = StudiesDatastore(str(folder), extensions=("*.dcm",))
    ids = sorted(r["image_id"] for r in made["rows"])
    study = str(pydicom.dcmread(folder / f"{ids[0]}.dcm", stop_before_pixels=True).StudyInstanceUID)
    index = StudyIndex()
    assert sorted(e.image_id for e in index.images_of(datastore, study)) == ids and len(index) == 4
    for _ in range(3):  # the same file versions: read once, no new entries
        index.images_of(datastore, study)
    assert len(index) == 4
    moved = pydicom.dcmread(folder / f"{ids[0]}.dcm")
    moved.StudyInstanceUID = pydicom.uid.generate_uid()
    moved.PatientID = "MOVED"  # a longer header: the file's size changes with its content
    moved.save_as(folder / f"{ids[0]}.dcm")
    assert sorted(e.image_id for e in index.images_of(datastore, study)) == ids[1:] and len(index) == 4
    (folder / f"{ids[1]}.dcm").unlink()
    datastore.refresh()
    assert sorted(e.image_id for e in index.images_of(datastore, study)) == ids[2:] and len(index) == 3

"""`microcalcai predict --dicom-out` and `microcalcai explain --dicom-out` on real DICOM sources."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_tools import dciodvfy_errors
from PIL import Image

from microcalcai.cli.main import main
from microcalcai.dicom_out.readback import read_report


@pytest.fixture()
def manifest(tmp_path, mg_source):
    Image.fromarray(np.zeros((200, 200), np.uint8)).save(tmp_path / "flat.png")
    rows = [
        "patient_id,image_path,roi_x,roi_y,roi_size,label,finding",
        f"P7,{mg_source},130,170,96,malignant,calcification",
        f"P7,{mg_source},60,60,64,benign,calcification",
        f"P8,{tmp_path / 'flat.png'},100,100,64,benign,calcification",
    ]
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_predict_writes_one_valid_sr_per_dicom_roi(tmp_path, manifest, model_dirs, mg_source, capsys):
    out = tmp_path / "sr"
    status = main(
        ["predict", "--model", str(model_dirs["ensemble"]), "--data", str(manifest), "--out",
         str(tmp_path / "p.csv"), "--dicom-out", str(out), "--no-progress", "--device", "cpu"]
    )  # fmt: skip
    assert status == 1  # the PNG row has no SR, and says so
    captured = capsys.readouterr()
    assert "flat.png: DICOM results need a DICOM source image" in captured.err
    assert "2 DICOM SR(s)" in captured.out
    assert "note:" not in captured.err  # no demonstration model here
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 3  # the CSV holds every ROI all the same
    files = sorted((out / mg_source.stem).glob("sr-*.dcm"))
    assert len(files) == 2
    by_size = {}
    for path in files:
        assert dciodvfy_errors(path) == []
        report = read_report(path)
        groups = {g["algorithm_name"]: g for g in report["groups"]}
        side = groups["ens"]["polygon"][1][0] - groups["ens"]["polygon"][0][0]
        by_size[side] = groups
    for row, side in ((0, 96), (1, 64)):
        groups = by_size[side]
        assert groups["ens"]["probability"] == pytest.approx(predictions["probability"][row], abs=1e-6)
        assert groups["lite-a"]["probability"] == pytest.approx(predictions["p_lite-a"][row], abs=1e-6)
        assert groups["lite-b"]["threshold"] == pytest.approx(0.55)


def test_a_whole_image_models_sr_region_is_the_whole_image(tmp_path, model_dirs, mg_source):
    manifest = tmp_path / "whole.csv"
    header = "patient_id,image_path,roi_x,roi_y,label,finding"
    manifest.write_text(f"{header}\nP7,{mg_source},130,170,malignant,calcification\n")
    out = tmp_path / "sr"
    status = main(
        ["predict", "--model", str(model_dirs["whole"]), "--data", str(manifest), "--out",
         str(tmp_path / "p.csv"), "--dicom-out", str(out), "--no-progress", "--device", "cpu"]
    )  # fmt: skip
    assert status == 0
    (path,) = (out / mg_source.stem).glob("sr-*.dcm")
    assert dciodvfy_errors(path) == []
    (group,) = read_report(path)["groups"]
    source = pydicom.dcmread(mg_source, stop_before_pixels=True)
    rows, cols = source.Rows, source.Columns
    assert (rows, cols) == (320, 256)
    assert group["polygon"] == [[0, 0], [cols, 0], [cols, rows], [0, rows], [0, 0]]
    assert group["probability"] == pytest.approx(pd.read_csv(tmp_path / "p.csv")["probability"][0], abs=1e-6)


def test_explain_writes_sr_and_segmentation(tmp_path, model_dirs, mg_source, capsys):
    out = tmp_path / "dicom"
    status = main(
        ["explain", "--model", str(model_dirs["a"]), "--image", str(mg_source), "--roi", "130,170,96",
         "--out", str(tmp_path / "maps"), "--dicom-out", str(out), "--no-context", "--no-progress",
         "--device", "cpu"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    (sr_path,) = (out / mg_source.stem).glob("sr-*.dcm")
    (seg_path,) = (out / mg_source.stem).glob("saliency-*.dcm")
    assert dciodvfy_errors(sr_path) == [] and dciodvfy_errors(seg_path) == []
    summary = pd.read_csv(tmp_path / "maps" / "summary.csv")
    (group,) = read_report(sr_path)["groups"]
    assert group["algorithm_name"] == "lite-a"
    assert group["probability"] == pytest.approx(summary["probability"][0], abs=1e-5)
    saved_map = np.load(tmp_path / "maps" / f"{summary['name'][0]}.npy")
    seg = hd.seg.segread(seg_path).pixel_array.astype(np.float32) / 255
    x0, y0 = int(summary["origin_x"][0]), int(summary["origin_y"][0])
    assert np.abs(seg[y0 : y0 + 96, x0 : x0 + 96] - saved_map).max() <= 0.5 / 255 + 1e-6


def test_a_demonstration_models_results_say_so_on_the_console_and_in_dicom(
    tmp_path, model_dirs, mg_source, capsys
):
    import shutil

    from microcalcai.server.bootstrap import INTENDED_USE, mark_demonstration

    demo = shutil.copytree(model_dirs["a"], tmp_path / "lite-a")
    mark_demonstration(demo)
    out = tmp_path / "dicom"
    status = main(
        ["explain", "--model", str(demo), "--image", str(mg_source), "--roi", "130,170,96",
         "--out", str(tmp_path / "maps"), "--dicom-out", str(out), "--no-context", "--no-progress",
         "--device", "cpu"]
    )  # fmt: skip
    assert status == 0
    assert f"note: lite-a: {INTENDED_USE}" in capsys.readouterr().err
    (sr_path,) = (out / mg_source.stem).glob("sr-*.dcm")
    (seg_path,) = (out / mg_source.stem).glob("saliency-*.dcm")
    report = read_report(sr_path)
    assert "DEMONSTRATION MODEL" in report["series_description"] and report["groups"][0]["demonstration"]
    assert "DEMONSTRATION MODEL" in hd.seg.segread(seg_path).SeriesDescription

"""Four-view phantom exams with breast arterial calcification: prevalence, labels, masks, DICOM."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from microcalcai.errors import InputError
from microcalcai.phantom.exam import (
    IMAGE_PREVALENCE,
    WOMEN_PREVALENCE,
    ExamSettings,
    generate_exams,
    make_exam,
    plan_exam,
)

FAST = dict(spacing_mm=0.4, prevalence=0.5, bilateral_fraction=0.5)  # 600 x 450 pixel views


@pytest.fixture(scope="module")
def exam_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("bac") / "exams"
    result = generate_exams(out, exams=5, seed=2, progress=False, **FAST)
    return result, pd.read_csv(result.manifest_path)


def _within(observed: float, expected: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n)


def test_default_prevalence_is_the_studys_per_image_and_per_woman():
    settings = ExamSettings(exams=4000, seed=5).validate()
    assert settings.prevalence == pytest.approx(0.0973, abs=1e-4)  # 581 / 5,972 images
    assert settings.exam_prevalence == pytest.approx(WOMEN_PREVALENCE, abs=0.002)  # 194 / 1,493 women
    plans = [plan_exam(settings, i) for i in range(settings.exams)]
    breasts = np.array([[side in p.bac_sides for side in ("L", "R")] for p in plans])
    exams = breasts.any(axis=1)
    assert _within(breasts.mean(), IMAGE_PREVALENCE, breasts.size)
    assert _within(exams.mean(), settings.exam_prevalence, exams.size)
    bilateral = breasts.all(axis=1)[exams].mean()
    assert _within(bilateral, settings.bilateral_fraction, int(exams.sum()))


def test_prevalence_setting_is_followed_and_zero_means_none():
    plans = [plan_exam(ExamSettings(exams=1, seed=1, prevalence=0.3).validate(), i) for i in range(2000)]
    breasts = np.array([[s in p.bac_sides for s in ("L", "R")] for p in plans])
    assert _within(breasts.mean(), 0.3, breasts.size)
    none = ExamSettings(exams=1, seed=1, prevalence=0.0).validate()
    assert not any(plan_exam(none, i).exam_bac for i in range(500))


def test_bad_settings_are_refused_with_the_reason(tmp_path):
    with pytest.raises(InputError, match="share of breasts with BAC"):
        ExamSettings(exams=1, seed=0, prevalence=0.9, bilateral_fraction=0.5).validate()
    with pytest.raises(InputError, match="at least 1"):
        ExamSettings(exams=0, seed=0).validate()
    for spacing in (0.0, 50.0):  # 50 mm pixels once failed deep in the texture generator
        with pytest.raises(InputError, match=r"spacing_mm=.*at most 1"):
            ExamSettings(exams=1, seed=0, spacing_mm=spacing).validate()
    with pytest.raises(InputError, match="unknown exam phantom option"):
        generate_exams(tmp_path / "x", exams=1, seed=0, patients=3)
    assert not (tmp_path / "x").exists()


def test_four_views_per_exam_with_consistent_labels_masks_and_dicom(exam_set):
    result, frame = exam_set
    assert len(frame) == 4 * 5
    assert frame.groupby("exam_id").size().eq(4).all()
    assert set(zip(frame.laterality, frame.view, strict=True)) == {
        ("L", "CC"),
        ("L", "MLO"),
        ("R", "CC"),
        ("R", "MLO"),
    }
    assert frame.bac.sum() > 0 and (frame.bac == 0).sum() > 0
    # both views of a breast share its label; the exam label is BAC in any view
    per_breast = frame.groupby(["exam_id", "laterality"]).bac.nunique()
    assert per_breast.eq(1).all()
    assert (frame.groupby("exam_id").bac.max() == frame.groupby("exam_id").exam_bac.first()).all()
    assert (frame.label == np.where(frame.bac == 1, "malignant", "benign")).all()
    for row in frame.itertuples():
        ds = pydicom.dcmread(result.out_dir / row.image_path)
        assert (ds.Modality, ds.ImageLaterality, ds.ViewPosition) == ("MG", row.laterality, row.view)
        assert float(ds.PixelSpacing[0]) == pytest.approx(0.4)
        pixels = ds.pixel_array
        mask = np.asarray(Image.open(result.out_dir / row.mask_path))
        assert mask.shape == pixels.shape
        assert int(np.count_nonzero(mask)) == row.vessel_pixels
        # a mask exactly where there is BAC, lying inside the breast
        assert (row.vessel_pixels > 0) == bool(row.bac)
        if row.bac:
            assert np.all(pixels[mask > 0] > 0)
            assert set(np.unique(mask)) - {0} <= set(range(1, row.n_arteries + 1))
            # the calcified vessel is denser than the tissue around it (stored: higher = denser)
            ring = ndimage.binary_dilation(mask > 0, iterations=4) & ~(mask > 0) & (pixels > 0)
            assert pixels[mask > 0].mean() > pixels[ring].mean()
    info = json.loads(result.settings_path.read_text())
    assert info["counts"] == {
        "exams": 5,
        "images": 20,
        "bac_images": int(frame.bac.sum()),
        "bac_exams": int(frame.groupby("exam_id").exam_bac.first().sum()),
    }
    assert info["bayes_auc"]["exam"] == 1.0 and info["prevalence"]["images_expected"] == 0.5


def test_an_artery_lies_at_the_same_depth_along_the_nipple_line_in_cc_and_mlo():
    settings = ExamSettings(exams=1, seed=4, **FAST).validate()
    index = next(i for i in range(50) if plan_exam(settings, i).exam_bac)
    plan, images = make_exam(settings, index)
    for side in plan.bac_sides:
        depths = {}
        for im in (im for im in images if im.side == side):
            rows, cols = np.nonzero(im.view_image.labels == 1)
            assert cols.size > 0, f"artery 1 is missing from {im.image_id}"
            depths[im.view] = np.abs(cols - im.breast.nipple_xy[0]) * settings.spacing_mm
        # the same calcified runs, projected: their extent along the nipple line agrees to a few mm
        for stat in (np.min, np.max):
            assert abs(stat(depths["CC"]) - stat(depths["MLO"])) < 5.0
        # but the two views are different projections, not copies
        cc, mlo = (next(im for im in images if im.side == side and im.view == v) for v in ("CC", "MLO"))
        assert not np.array_equal(cc.view_image.labels > 0, mlo.view_image.labels > 0)


def test_an_exam_is_the_same_whatever_else_is_generated():
    small = ExamSettings(exams=2, seed=9, spacing_mm=0.4, prevalence=0.5).validate()
    large = ExamSettings(exams=40, seed=9, spacing_mm=0.4, prevalence=0.5).validate()
    (_, a), (_, b) = make_exam(small, 1), make_exam(large, 1)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.view_image.stored, y.view_image.stored)
        assert np.array_equal(x.view_image.labels, y.view_image.labels)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "microcalcai", "synth-exams", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_exams_and_refuses_bad_prevalence(tmp_path):
    bad = _cli("--out", str(tmp_path / "x"), "--exams", "2", "--seed", "1", "--prevalence", "1.5")
    assert bad.returncode == 2 and "--prevalence" in bad.stderr and "within 0..1" in bad.stderr
    too_high = _cli("--out", str(tmp_path / "y"), "--exams", "2", "--seed", "1", "--prevalence", "0.9")
    assert too_high.returncode == 1 and "share of breasts with BAC" in too_high.stderr
    assert "Traceback" not in too_high.stderr
    run = _cli(
        "--out", str(tmp_path / "set"), "--exams", "2", "--seed", "3", "--spacing-mm", "0.4",
        "--prevalence", "0.5", "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    frame = pd.read_csv(tmp_path / "set" / "manifest.csv")
    assert len(frame) == 8 and f"BAC in {int(frame.bac.sum())} images" in run.stdout


def test_a_calcified_wall_projects_as_tram_lines_without_rings_at_the_joints():
    from microcalcai.phantom.morphology import Particle, Tube
    from microcalcai.phantom.render import render_particle

    # a straight hollow tube along x sampled every 0.25 mm (as the arteries are), outer radius 1 mm
    path = np.column_stack([np.arange(-10.0, 10.0, 0.25), np.zeros(80)])
    particle = Particle(0.0, 0.0, [Tube(path, np.full(80, 1.0), 0.15)], width_mm=0.15)
    rows, cols, calcium, _ = render_particle(particle, 100.0, 100.0, 0.05, (200, 200))
    axis = calcium[100 - rows.start, 60 - cols.start : 140 - cols.start]  # along the lumen's centre
    wall = calcium[100 - rows.start - 17, 60 - cols.start : 140 - cols.start]  # 0.85 mm off the axis
    # the lumen holds only the two walls' chord (2 x 0.15 mm), the same all along: no ring per joint
    assert axis.mean() == pytest.approx(0.3, rel=0.05)
    assert axis.std() < 0.01 * axis.mean()
    assert wall.mean() > 2.5 * axis.mean()  # tram lines: bright walls either side of a darker lumen

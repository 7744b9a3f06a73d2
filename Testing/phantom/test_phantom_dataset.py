"""The written data set: manifest in the project's format, files, masks, ROIs, JSON, DICOM."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import SimpleITK as sitk
from PIL import Image

from microcalcai.data.manifest import read_manifest
from microcalcai.io import read_image
from microcalcai.roi import crop_roi

REQUIRED = [
    "patient_id",
    "image_path",
    "roi_x",
    "roi_y",
    "label",
    "finding",
    "study_id",
    "image_id",
    "roi_size",
    "view",
    "laterality",
    "study_date",
    "morphology",
    "distribution",
    "mask_path",
]


def test_manifest_is_valid_and_complete(spot_set):
    result, frame = spot_set
    assert list(frame.columns[:6]) == REQUIRED[:6]
    assert set(REQUIRED) <= set(frame.columns)
    checked = read_manifest(result.manifest_path)  # the data layer's validation, files included
    assert len(checked) == len(frame)
    calc = frame[frame.finding == "calcification"]
    normal = frame[frame.finding == "normal"]
    assert len(calc) >= 12 and len(normal) >= 6
    assert set(frame.label) <= {"benign", "malignant"}
    assert (normal.label == "benign").all() and normal.morphology.isna().all()
    assert calc.morphology.notna().all() and calc.distribution.notna().all()
    # patients have several images; a finding's ROIs share the patient's label per finding
    assert frame.groupby("patient_id").image_id.nunique().min() >= 2
    per_finding = calc.groupby(["patient_id", "finding_id"]).label.nunique()
    assert (per_finding == 1).all()
    assert (frame.roi_size == 96).all()


def test_study_dates_span_years_for_temporal_splits(spot_set):
    _, frame = spot_set
    years = frame.drop_duplicates("patient_id").study_date.str[:4].astype(int)
    assert years.min() >= 2012 and years.max() <= 2021 and years.nunique() >= 4


def test_masks_and_rois_agree_with_the_manifest(spot_set):
    result, frame = spot_set
    out = result.out_dir
    for _, row in frame.iterrows():
        mask = np.asarray(Image.open(out / row.mask_path))
        roi = np.load(out / row.roi_path)
        assert roi.shape == (96, 96) and roi.dtype == np.float32 and 0 <= roi.min() and roi.max() <= 1
        half = 48
        window = mask[
            max(row.roi_y - half, 0) : row.roi_y + half, max(row.roi_x - half, 0) : row.roi_x + half
        ]
        if row.finding == "calcification":
            assert (window == row.finding_id).sum() > 0  # the ROI holds its finding
        else:
            assert (window == 0).all()  # a normal ROI holds no calcification at all


def test_roi_crop_matches_the_dicom_read_back(spot_set):
    """The .npy ROI is what the io layer gives when reading the DICOM and cropping it."""
    result, frame = spot_set
    for _, row in frame.head(4).iterrows():
        image = read_image(result.out_dir / row.image_path)
        crop = crop_roi(image, (row.roi_x, row.roi_y), size_px=96).pixels
        np.testing.assert_allclose(np.load(result.out_dir / row.roi_path), crop, atol=1e-5)


def test_calcifications_table_counts_each_cluster(spot_set):
    import pandas as pd

    result, frame = spot_set
    particles = pd.read_csv(result.out_dir / "calcifications.csv")
    calc = frame[frame.finding == "calcification"]
    counts = particles.groupby("roi_id").size()
    for _, row in calc.iterrows():
        assert counts[row.roi_id] == row.n_calcifications >= 1
    assert (particles.size_mm > 0).all() and (particles.mask_pixels >= 1).all()


def test_settings_json_reports_bayes_auc(spot_set):
    result, frame = spot_set
    info = json.loads(result.settings_path.read_text())
    assert info["settings"]["seed"] == 7 and info["settings"]["roi_size"] == 96
    auc = info["bayes_auc"]
    assert 0.75 < auc["expected"] < 1.0
    calc = frame[frame.finding == "calcification"]
    if calc.label.nunique() == 2:
        from sklearn.metrics import roc_auc_score

        drawn = roc_auc_score(calc.label == "malignant", calc.p_malignant)
        assert abs(auc["drawn_rois"] - drawn) < 1e-9
    assert info["counts"]["rois"] == len(frame)
    assert len(info["probability_table"]) == 30


def test_dicom_files_are_valid_mammograms(spot_set, full_set):
    for result, frame in (spot_set, full_set):
        for _, row in frame.drop_duplicates("image_id").head(6).iterrows():
            path = result.out_dir / row.image_path
            ds = pydicom.dcmread(path)
            assert ds.Modality == "MG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"
            assert ds.ImageLaterality == row.laterality and ds.ViewPosition == row.view
            assert ds.PatientID == row.patient_id and ds.StudyID == row.study_id
            assert ds.StudyDate == row.study_date.replace("-", "")
            spacing = [float(v) for v in ds.PixelSpacing]
            assert spacing == [row.spacing_mm, row.spacing_mm]
            assert ds.BitsStored == 14 and ds.pixel_array.max() < 2**14
            img = sitk.ReadImage(str(path))
            assert np.allclose(img.GetSpacing()[:2], (row.spacing_mm, row.spacing_mm))
            assert sitk.GetArrayFromImage(img).squeeze().shape == ds.pixel_array.shape


def test_full_field_views_show_anatomy(full_set):
    result, frame = full_set
    images = frame.drop_duplicates("image_id")
    assert sorted(images.laterality + images.view) == ["LCC", "LMLO", "RCC", "RMLO"]
    for _, row in images.iterrows():
        image = read_image(result.out_dir / row.image_path)
        tissue = image.pixels > 0
        cols = tissue.mean(axis=0)
        # chest wall on the left for the left breast, on the right for the right breast (A/P)
        wall, far = (
            (cols[:5].mean(), cols[-5:].mean())
            if row.laterality == "L"
            else (cols[-5:].mean(), cols[:5].mean())
        )
        assert wall > 0.3 and far == 0.0
        assert 0.15 < tissue.mean() < 0.9
        if row.view == "MLO":  # the pectoral muscle: dense tissue in the upper chest-wall corner
            rows, ncols = image.pixels.shape
            band = slice(0, ncols // 12) if row.laterality == "L" else slice(ncols - ncols // 12, ncols)
            upper = image.pixels[: rows // 6, band]
            lower = image.pixels[rows // 2 : rows // 2 + rows // 6, band]
            assert np.median(upper[upper > 0]) > np.median(lower[lower > 0])
    png = result.out_dir / images.iloc[0].png_path
    assert Image.open(png).mode.startswith("I")


def test_a_finding_appears_in_both_views_at_a_similar_nipple_distance(full_set):
    result, frame = full_set
    calc = frame[frame.finding == "calcification"]
    assert calc.groupby("finding_id").view.nunique().eq(2).all()
    assert calc.finding_id.nunique() == 2

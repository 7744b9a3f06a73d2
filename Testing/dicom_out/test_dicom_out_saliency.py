"""The saliency map as a fractional Segmentation: valid, on its source, the map's values back."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_tools import dciodvfy_errors

from microcalcai.dicom_out import read_source
from microcalcai.dicom_out.saliency import MAX_FRACTION, map_on_source, saliency_segmentation
from microcalcai.dicom_out.store import write_files


def _map(n: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n]
    return np.exp(-((xx - 30) ** 2 + (yy - 12) ** 2) / 40.0).astype(np.float32)  # peak off-centre


def test_segmentation_holds_the_map_where_the_crop_lies(tmp_path, mg_source):
    import highdicom as hd

    header = read_source(mg_source)
    saliency = _map()
    to_source = np.array([[2.0, 0, 82], [0, 2.0, 122], [0, 0, 1]])  # 48 px map over a 96 px ROI
    seg = saliency_segmentation(
        header, saliency, to_source, model="ens", model_version="4", method="gradcam", target="malignant"
    )
    (path,) = write_files([seg], tmp_path)
    assert dciodvfy_errors(path) == []

    back = hd.seg.segread(path)
    assert back.SegmentationType == "FRACTIONAL" and back.SegmentationFractionalType == "PROBABILITY"
    assert back.StudyInstanceUID == header.StudyInstanceUID
    assert back.get_source_image_uids() == [
        (header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID)
    ]
    assert back.PatientOrientation == ["A", "R"]  # the source's, as Type 2C asks without a frame of reference
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    pixels = back.pixel_array.astype(np.float32) / MAX_FRACTION
    assert pixels.shape == (header.Rows, header.Columns)
    # Map pixel (30, 12) lies over stored pixel (82 + 60, 122 + 24); nothing outside the ROI.
    peak_y, peak_x = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert (peak_x, peak_y) == (142, 146)
    assert pixels[146, 142] == pytest.approx(1.0, abs=1 / MAX_FRACTION)
    inside = np.zeros_like(pixels, bool)
    inside[122 : 122 + 95, 82 : 82 + 95] = True
    assert pixels[~inside].max() == 0 and pixels[inside].max() > 0.99
    expected = map_on_source(saliency, to_source, pixels.shape)
    assert np.abs(pixels - expected).max() <= 0.5 / MAX_FRACTION + 1e-6
    algorithm = back.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("ens", "4")


def test_segmentation_over_a_real_cbis_ddsm_mammogram(tmp_path, real_mammograms):
    import highdicom as hd

    header = read_source(real_mammograms[1])
    to_source = np.array([[-4.0, 0, 1600], [0, 4.0, 2000], [0, 0, 1]])  # a mirrored crop, as flips give
    seg = saliency_segmentation(
        header, _map(), to_source, model="m", model_version="1", method="gradcam++", target="predicted"
    )
    (path,) = write_files([seg], tmp_path)
    assert dciodvfy_errors(path) == []
    assert path.stat().st_size < 2_000_000  # compressed: a full-size fraction map is mostly zeros
    pixels = hd.seg.segread(path).pixel_array
    assert pixels.shape == (header.Rows, header.Columns)
    ys, xs = np.nonzero(pixels)
    assert xs.min() >= 1600 - 4 * 47 and xs.max() <= 1600 and ys.min() >= 2000 and ys.max() <= 2000 + 4 * 47
    peak_y, peak_x = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert (peak_x, peak_y) == (1600 - 4 * 30, 2000 + 4 * 12)

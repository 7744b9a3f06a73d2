"""write_mg_dicom writes standard MG/DX files that pydicom and SimpleITK (GDCM) both read."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from microcalcai.errors import InputError
from microcalcai.io.dicom_write import MG_FOR_PRESENTATION, MG_FOR_PROCESSING, TRANSFER_SYNTAXES

LOSSLESS = [
    "explicit-little",
    "implicit-little",
    "deflated",
    "rle",
    "jpeg-lossless",
    "jpeg-lossless-p14",
    "jpeg-ls",
    "jpeg2000-lossless",
]


@pytest.mark.parametrize("syntax", LOSSLESS)
def test_lossless_syntaxes_round_trip_in_pydicom_and_simpleitk(write_dicom, ramp12, syntax):
    path = write_dicom(
        ramp12, f"{syntax}.dcm", bits_stored=12, transfer_syntax=syntax, spacing_mm=(0.07, 0.07)
    )
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[syntax]
    assert ds.file_meta.MediaStorageSOPClassUID == MG_FOR_PRESENTATION == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(ds.pixel_array, ramp12)
    if syntax != "deflated":  # GDCM in SimpleITK does not inflate deflated data sets
        itk = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        assert np.array_equal(itk.reshape(ramp12.shape), ramp12)


def test_simpleitk_takes_mammography_spacing_from_imager_pixel_spacing(write_dicom, ramp12):
    # GDCM (SimpleITK, and so Slicer's DICOM reader) reads Imager Pixel Spacing for MG/DX and
    # ignores Pixel Spacing: files meant for Slicer should carry both.
    both = write_dicom(
        ramp12, "both.dcm", spacing_mm=(0.1, 0.05), spacing_tag=("PixelSpacing", "ImagerPixelSpacing")
    )
    only_pixel = write_dicom(ramp12, "pixel.dcm", spacing_mm=(0.1, 0.05), spacing_tag="PixelSpacing")
    assert sitk.ReadImage(str(both)).GetSpacing()[:2] == pytest.approx((0.05, 0.1))  # (x, y)
    assert sitk.ReadImage(str(only_pixel)).GetSpacing()[:2] == pytest.approx((1.0, 1.0))


def test_8bit_and_16bit_full_range(write_dicom):
    rng = np.random.default_rng(1)
    for dtype, bits in ((np.uint8, 8), (np.uint16, 16)):
        pixels = rng.integers(0, 2**bits, (48, 36)).astype(dtype)
        for syntax in ("rle", "jpeg-ls", "jpeg2000-lossless"):
            ds = pydicom.dcmread(write_dicom(pixels, f"{bits}-{syntax}.dcm", transfer_syntax=syntax))
            assert ds.BitsAllocated == bits and ds.BitsStored == bits
            assert np.array_equal(ds.pixel_array, pixels)


def test_mammography_attributes(write_dicom, ramp12):
    path = write_dicom(
        ramp12,
        laterality="R",
        view="MLO",
        patient_id="P7",
        study_date="20240131",
        presentation_intent="FOR PROCESSING",
        spacing_mm=(0.1, 0.05),
        spacing_tag="ImagerPixelSpacing",
        chest_wall="right",
        bits_stored=12,
    )
    ds = pydicom.dcmread(path)
    assert ds.Modality == "MG" and ds.SOPClassUID == MG_FOR_PROCESSING
    assert ds.PresentationIntentType == "FOR PROCESSING"
    assert ds.ImageLaterality == "R" and ds.ViewPosition == "MLO"
    code = ds.ViewCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "399368009",
        "SCT",
        "medio-lateral oblique",
    )
    assert list(ds.ImagerPixelSpacing) == [0.1, 0.05] and "PixelSpacing" not in ds
    assert list(ds.PatientOrientation) == ["P", "FL"]
    assert (ds.PatientID, ds.StudyDate, ds.BitsStored, ds.HighBit) == ("P7", "20240131", 12, 11)
    assert pydicom.uid.UID(ds.StudyInstanceUID).is_valid


def test_window_lut_rescale_and_extra_tags(write_dicom, ramp12):
    lut = np.linspace(0, 255, 4096).astype(np.uint16)
    path = write_dicom(
        ramp12,
        bits_stored=12,
        window=[(2048, 4096), (1000, 500)],
        voi_function="SIGMOID",
        voi_lut={"first_mapped": 0, "bits": 8, "data": lut},
        rescale=(2.0, -10.0),
        extra={"InstitutionName": "Test", "BurnedInAnnotation": None},
    )
    ds = pydicom.dcmread(path)
    assert [float(c) for c in ds.WindowCenter] == [2048, 1000]
    assert [float(w) for w in ds.WindowWidth] == [4096, 500]
    assert ds.VOILUTFunction == "SIGMOID"
    assert list(ds.VOILUTSequence[0].LUTDescriptor) == [4096, 0, 8]
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (2.0, -10.0)
    assert ds.InstitutionName == "Test" and "BurnedInAnnotation" not in ds


def test_lossy_jpeg2000_is_marked_lossy(write_dicom, ramp12):
    ds = pydicom.dcmread(write_dicom(ramp12, transfer_syntax="jpeg2000", bits_stored=12))
    assert ds.LossyImageCompression == "01"
    assert ds.pixel_array.shape == ramp12.shape


@pytest.mark.parametrize(
    ("pixels", "options", "needle"),
    [
        (np.zeros((4, 4), np.float32), {}, "uint8, uint16 or int16"),
        (np.full((4, 4), 5000, np.uint16), {"bits_stored": 12}, "do not fit bits_stored=12"),
        (np.zeros((4, 4), np.uint16), {"transfer_syntax": "mpeg9"}, "transfer_syntax 'mpeg9'"),
        (np.zeros((4, 4), np.uint16), {"photometric": "RGB"}, "MONOCHROME1 or MONOCHROME2"),
        (np.zeros((4, 4), np.uint16), {"spacing_mm": (0, 0.1)}, "must be positive"),
        (np.zeros((4,), np.uint16), {}, "2D array"),
        (np.zeros((16, 64), np.uint16), {"transfer_syntax": "jpeg2000-lossless"}, "at least 32 x 32"),
    ],
)
def test_writer_refuses_bad_arguments(tmp_path, pixels, options, needle):
    from microcalcai.io import write_mg_dicom

    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        write_mg_dicom(tmp_path / "bad.dcm", pixels, **options)
    assert not (tmp_path / "bad.dcm").exists()

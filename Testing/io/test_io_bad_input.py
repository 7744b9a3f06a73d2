"""Bad input: one clear InputError naming the file (and tag or parameter) and what to do."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pydicom
import pytest

from microcalcai.errors import InputError
from microcalcai.io import inspect_file, read_image
from microcalcai.io.image import Mammogram
from microcalcai.roi import crop_roi

READERS = [read_image, inspect_file]


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4096, (128, 96)).astype(np.uint16)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    "syntax", ["explicit-little", "rle", "jpeg-ls", "jpeg2000-lossless", "jpeg-lossless"]
)
def test_truncated_dicom(write_dicom, pixels, tmp_path, reader, syntax):
    data = write_dicom(pixels, bits_stored=12, transfer_syntax=syntax).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(InputError, match=r"cut\.dcm.*truncated.*copy it again"):
        reader(cut)


@pytest.mark.parametrize("reader", READERS)
def test_dicom_without_pixel_data(write_dicom, pixels, reader):
    path = write_dicom(pixels, extra={"PixelData": None})
    with pytest.raises(InputError, match=r"image\.dcm: no Pixel Data \(7FE0,0010\).*not an image"):
        reader(path)


@pytest.mark.parametrize(
    ("uid", "needle"),
    [
        ("1.2.840.10008.1.2.4.94", "JPIP Referenced.*cannot be decoded here"),  # known, no decoder
        ("1.2.840.10008.1.2.4.99", "unknown to pydicom and cannot be decoded here"),
    ],
)
def test_unsupported_transfer_syntax_is_named(write_dicom, pixels, uid, needle):
    path = write_dicom(pixels, bits_stored=12, transfer_syntax="jpeg-ls")
    # Same length as the JPEG-LS UID, so the file meta stays valid (pydicom 2.4 refuses to write
    # transfer syntaxes it does not know).
    data = path.read_bytes()
    assert data.count(b"1.2.840.10008.1.2.4.80") == 1
    path.write_bytes(data.replace(b"1.2.840.10008.1.2.4.80", uid.encode()))
    with pytest.raises(
        InputError, match=rf"image\.dcm: the transfer syntax {uid.replace('.', '.')}.*{needle}.*convert"
    ):
        read_image(path)
    assert inspect_file(path)["rows"] == 128  # the header can still be described


def test_absurd_dimensions_are_refused_before_allocating(write_dicom, pixels):
    path = write_dicom(pixels, bits_stored=12, transfer_syntax="rle")
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 65535, 65535
    ds.save_as(path)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"claims 65535 x 65535 pixels.*header is probably corrupt"):
            read_image(path)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # the 8 GiB the header promises were never asked for


def test_too_many_frames_are_refused(write_dicom, pixels):
    path = write_dicom(pixels, bits_stored=12, extra={"NumberOfFrames": 100000})
    with pytest.raises(InputError, match=r"100000 frames.*beyond the limit"):
        read_image(path)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "the file is empty"),
        (b"patient_id,image_path\nP1,a.dcm\n", "not an image this tool reads"),
        (b"%PDF-1.7\n" + b"x" * 300, "not an image this tool reads"),
        (b"\0" * 128 + b"DICM" + b"\xff" * 64, "truncated or corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "corrupt image header|not a readable PNG"),
        (b"II*\x00" + b"\0" * 40, "corrupt TIFF header|holds no image"),
        (b"NRRD0004\ntype: short\n", "corrupt NRRD header"),
    ],
)
@pytest.mark.parametrize("reader", READERS)
def test_non_image_and_corrupt_files(tmp_path, content, needle, reader):
    path = tmp_path / "input.bin"
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle) as info:
        reader(path)
    assert "input.bin" in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "absent.dcm")
    with pytest.raises(InputError, match="is a folder"):
        inspect_file(tmp_path)


def test_truncated_png(tmp_path):
    from PIL import Image

    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 65535, (200, 200)).astype(np.uint16)).save(path)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(InputError, match=r"cut\.png: the PNG pixel data could not be decoded.*truncated"):
        read_image(path)


def test_colour_image_is_refused(tmp_path):
    from PIL import Image

    path = tmp_path / "colour.png"
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(path)
    with pytest.raises(InputError, match="colour.*greyscale"):
        read_image(path)


def test_invalid_window_width_names_the_tag(write_dicom, pixels):
    path = write_dicom(pixels, bits_stored=12, window=(100, 0.5))
    with pytest.raises(InputError, match=r"Window Width \(0028,1051\) = 0\.5 is invalid for LINEAR"):
        read_image(path)
    assert read_image(path, voi="none").pixels.max() <= 1.0


def test_unknown_voi_function_names_the_tag(write_dicom, pixels):
    path = write_dicom(pixels, bits_stored=12, window=(100, 50), voi_function="GAMMA")
    with pytest.raises(InputError, match=r"VOI LUT Function \(0028,1056\) is 'GAMMA'"):
        read_image(path)


@pytest.mark.parametrize(("slope", "intercept"), [("1", "nan"), ("1e308", "0"), ("inf", "0"), ("1e35", "0")])
def test_rescale_that_gives_no_finite_pixels_names_the_tags(write_dicom, pixels, slope, intercept):
    """NaN or an overflowing rescale would make every pixel NaN (and every crop and training that
    reads it fail); the file is refused on reading instead."""
    path = write_dicom(pixels, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.save_as(path)
    with pytest.raises(
        InputError, match=r"image\.dcm: Rescale Slope \(0028,1053\).*Rescale Intercept.*not map.*finite"
    ):
        read_image(path)


@pytest.fixture(scope="module")
def small_image() -> Mammogram:
    return Mammogram(pixels=np.zeros((50, 40), np.float32), spacing_mm=None)


@pytest.mark.parametrize("center", [(40, 10), (-1, 10), (10, 50), (10, -0.6), (float("nan"), 3)])
def test_roi_centre_outside_the_image(small_image, center):
    with pytest.raises(InputError, match=r"ROI centre .* is outside the image \(40 columns x 50 rows"):
        crop_roi(small_image, center, size_px=8)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"size_px": 0}, "size in pixels must be a positive number"),
        ({"size_px": -5}, "size in pixels must be a positive number"),
        ({"size_px": 2.5}, "whole number"),
        ({"size_mm": 0.0}, "size in mm must be a positive number"),
        ({"size_mm": -1.0}, "size in mm must be a positive number"),
        ({}, "give the ROI size"),
        ({"size_mm": 5.0}, "has no pixel spacing"),
        ({"size_px": 8, "spacing_mm": 0.1}, "needs the ROI size in mm"),
        ({"size_px": 8, "pad_mode": "mirror"}, "pad_mode 'mirror'"),
        ({"size_px": 100000}, "exceeds the limit"),
    ],
)
def test_roi_size_errors(small_image, options, needle):
    with pytest.raises(InputError, match=needle):
        crop_roi(small_image, (10, 10), **options)

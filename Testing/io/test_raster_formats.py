"""PNG, PGM, TIFF and NRRD at 8 and 16 bits: values, spacing and inspect."""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
import tifffile
from PIL import Image

from microcalcai.io import inspect_file, read_image


@pytest.fixture(scope="module")
def grey16() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 65536, (40, 56)).astype(np.uint16)


@pytest.fixture(scope="module")
def grey8(grey16) -> np.ndarray:
    return (grey16 >> 8).astype(np.uint8)


def test_png_8_and_16_bit_with_physical_spacing(tmp_path, grey8, grey16):
    for arr, full in ((grey8, 255.0), (grey16, 65535.0)):
        path = tmp_path / f"{arr.dtype}.png"
        # 0.1 mm = 10000 pixels per metre, stored exactly in the pHYs chunk.
        Image.fromarray(arr).save(path, dpi=(254, 254))
        image = read_image(path)
        np.testing.assert_allclose(image.pixels, arr / full, atol=1e-6)
        assert image.spacing_mm == pytest.approx((0.1, 0.1), rel=1e-3)
        assert image.spacing_source == "png:pHYs"
        info = inspect_file(path)
        assert (info["rows"], info["columns"], info["bits_stored"]) == (40, 56, 8 * arr.dtype.itemsize)
        assert info["pixel_spacing_mm"] == pytest.approx([0.1, 0.1], rel=1e-3)
        assert info["modality"] is None and info["photometric"] == "MONOCHROME2"


def test_png_without_spacing_and_grey_rgb(tmp_path, grey8):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.stack([grey8] * 3, axis=-1)).save(path)
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, grey8 / 255.0, atol=1e-6)
    assert image.spacing_mm is None and image.spacing_source is None
    with_default = read_image(path, default_spacing_mm=0.2)
    assert with_default.spacing_mm == (0.2, 0.2) and with_default.spacing_source == "user"


def _pgm(path, arr: np.ndarray, maxval: int) -> None:
    body = arr.astype(np.uint8).tobytes() if maxval < 256 else arr.astype(">u2").tobytes()
    path.write_bytes(b"P5\n# mini-MIAS style\n%d %d\n%d\n" % (arr.shape[1], arr.shape[0], maxval) + body)


@pytest.mark.parametrize("maxval", [255, 4095, 65535])
def test_pgm_binary_8_12_16_bit(tmp_path, maxval):
    arr = np.random.default_rng(maxval).integers(0, maxval + 1, (30, 20))
    path = tmp_path / "mdb001.pgm"
    _pgm(path, arr, maxval)
    image = read_image(path, default_spacing_mm=0.2)
    # The reader scales by the file's own maxval (Pillow maps it onto the full type range).
    np.testing.assert_allclose(image.pixels, arr / maxval, atol=1.0 / maxval)
    assert image.spacing_mm == (0.2, 0.2)
    info = inspect_file(path)
    assert (info["rows"], info["columns"], info["bits_stored"]) == (
        30,
        20,
        {255: 8, 4095: 12, 65535: 16}[maxval],
    )


def test_pgm_ascii(tmp_path):
    arr = np.array([[0, 128, 255], [255, 0, 64]])
    path = tmp_path / "ascii.pgm"
    path.write_text("P2\n3 2\n255\n" + " ".join(str(v) for v in arr.ravel()) + "\n")
    np.testing.assert_allclose(read_image(path).pixels, arr / 255.0, atol=1e-6)


@pytest.mark.parametrize("photometric", ["minisblack", "miniswhite"])
def test_tiff_8_and_16_bit_with_resolution(tmp_path, grey8, grey16, photometric):
    for arr, full in ((grey8, 255.0), (grey16, 65535.0)):
        path = tmp_path / f"{arr.dtype}-{photometric}.tif"
        # 200 pixels per cm in x (0.05 mm), 100 in y (0.1 mm).
        tifffile.imwrite(
            path, arr, photometric=photometric, resolution=(200, 100), resolutionunit="CENTIMETER"
        )
        image = read_image(path)
        want = arr / full
        if photometric == "miniswhite":
            want = 1.0 - want  # white = 0 means low values are dense
        np.testing.assert_allclose(image.pixels, want, atol=1e-6)
        assert image.spacing_mm == pytest.approx((0.1, 0.05))
        assert image.spacing_source == "tiff:resolution"
        info = inspect_file(path)
        assert info["photometric"] == ("MONOCHROME1" if photometric == "miniswhite" else "MONOCHROME2")
        assert info["bits_stored"] == 8 * arr.dtype.itemsize and info["pixel_spacing_mm"] == pytest.approx(
            [0.1, 0.05]
        )


def test_tiff_float_in_unit_range_is_kept(tmp_path):
    arr = np.linspace(0.1, 0.9, 24, dtype=np.float32).reshape(4, 6)
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, arr)
    np.testing.assert_allclose(read_image(path).pixels, arr, atol=1e-6)


def test_nrrd_from_slicer_is_a_3d_volume_with_one_slice(tmp_path, grey16):
    path = tmp_path / "volume.nrrd"
    header = {
        "space": "left-posterior-superior",
        # File axis order: x (columns) first. Columns 0.05 mm, rows 0.1 mm, slice 1 mm.
        "space directions": np.array([[-0.05, 0, 0], [0, -0.1, 0], [0, 0, 1.0]]),
        "space origin": np.zeros(3),
        "laterality": "R",
        "view": "MLO",
    }
    nrrd.write(str(path), grey16[np.newaxis], header, index_order="C")
    image = read_image(path)
    assert image.pixels.shape == grey16.shape
    lo, hi = grey16.min(), grey16.max()
    np.testing.assert_allclose(image.pixels, (grey16 - float(lo)) / (float(hi) - float(lo)), atol=1e-6)
    assert image.spacing_mm == pytest.approx((0.1, 0.05))
    assert image.spacing_source == "nrrd:space directions"
    assert (image.laterality, image.view) == ("R", "MLO")
    info = inspect_file(path)
    assert (info["rows"], info["columns"], info["bits_stored"]) == (40, 56, 16)
    assert info["pixel_spacing_mm"] == pytest.approx([0.1, 0.05]) and info["laterality"] == "R"


def test_nrrd_window_fields_and_monochrome1(tmp_path, grey16):
    path = tmp_path / "windowed.nrrd"
    header = {
        "spacings": [0.07, 0.07],
        "window_center": "30000",
        "window_width": "20001",
        "photometric": "MONOCHROME1",
    }
    nrrd.write(str(path), grey16, header, index_order="C")
    image = read_image(path)
    x = grey16.astype(np.float64)
    want = 1.0 - np.clip((x - (30000 - 0.5)) / 20000 + 0.5, 0, 1)
    np.testing.assert_allclose(image.pixels, want, atol=2e-6)
    assert image.spacing_mm == pytest.approx((0.07, 0.07)) and image.spacing_source == "nrrd:spacings"


@pytest.mark.parametrize("windowed", [False, True])
def test_nrrd_nan_and_infinity_become_the_darkest_and_brightest_values(tmp_path, windowed):
    """A float NRRD that marks background with NaN (or holds an infinity) reads as finite pixels:
    NaN and -inf as its darkest finite value, +inf as its brightest."""
    values = np.linspace(10.0, 20.0, 48, dtype=np.float32).reshape(6, 8)
    values[0, 0], values[0, 1], values[0, 2] = np.nan, np.inf, -np.inf
    header = {"window_center": "15", "window_width": "11"} if windowed else {}
    path = tmp_path / "holes.nrrd"
    nrrd.write(str(path), values, header, index_order="C")
    pixels = np.asarray(read_image(path).pixels)
    assert np.isfinite(pixels).all()
    darkest, brightest = pixels[np.isfinite(values)].min(), pixels[np.isfinite(values)].max()
    assert pixels[0, 0] == darkest and pixels[0, 2] == darkest and pixels[0, 1] == brightest
    assert brightest > darkest


def test_every_format_gives_the_same_unit_image(tmp_path, grey16, write_dicom):
    """One 16-bit image written five ways reads back to the same 0..1 pixels."""
    paths = [write_dicom(grey16, "same.dcm")]
    Image.fromarray(grey16).save(tmp_path / "same.png")
    tifffile.imwrite(tmp_path / "same.tif", grey16)
    _pgm(tmp_path / "same.pgm", grey16, 65535)
    nrrd.write(
        str(tmp_path / "same.nrrd"),
        grey16,
        {"window_center": "32768", "window_width": "65536"},
        index_order="C",
    )
    paths += [tmp_path / name for name in ("same.png", "same.tif", "same.pgm", "same.nrrd")]
    reference = read_image(paths[0]).pixels
    for path in paths[1:]:
        np.testing.assert_allclose(read_image(path).pixels, reference, atol=1e-6, err_msg=str(path))


def test_write_nrrd_round_trips_through_read_image(tmp_path):
    from microcalcai.io import write_nrrd

    unit = np.random.default_rng(4).random((30, 45)).astype(np.float32)
    path = write_nrrd(tmp_path / "map.nrrd", unit, spacing_mm=(0.1, 0.05), laterality="L", view="CC")
    image = read_image(path)
    assert np.array_equal(image.pixels, unit)
    assert image.spacing_mm == pytest.approx((0.1, 0.05)) and (image.laterality, image.view) == ("L", "CC")
    data, header = nrrd.read(str(path), index_order="C")
    assert data.shape == (1, 30, 45) and header["space"] == "left-posterior-superior"
    # ITK's NRRD reader (what 3D Slicer loads volumes with) sees the same geometry.
    import SimpleITK as sitk

    itk = sitk.ReadImage(str(path))
    assert itk.GetSize() == (45, 30, 1) and itk.GetSpacing() == pytest.approx((0.05, 0.1, 1.0))
    assert np.array_equal(sitk.GetArrayFromImage(itk)[0], unit)

    stored = (unit * 4095).astype(np.uint16)
    windowed = read_image(write_nrrd(tmp_path / "stored.nrrd", stored, window=(2048, 4096), compress=False))
    x = stored.astype(np.float64)
    np.testing.assert_allclose(windowed.pixels, np.clip((x - 2047.5) / 4095 + 0.5, 0, 1), atol=2e-6)
    assert inspect_file(tmp_path / "stored.nrrd")["bits_stored"] == 16

"""Files: NRRD geometry read back by two readers, .npy, PNG overlay and montage."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from microcalcai.errors import InputError
from microcalcai.explain.outputs import (
    MapGeometry,
    overlay_title,
    read_map_nrrd,
    write_map_npy,
    write_map_nrrd,
    write_montage_png,
    write_overlay_png,
)
from microcalcai.io.image import Mammogram
from microcalcai.roi import crop_roi


@pytest.fixture()
def crop_and_map():
    rng = np.random.default_rng(0)
    image = Mammogram(pixels=rng.random((100, 120), dtype=np.float32), spacing_mm=(0.05, 0.07))
    crop = crop_roi(image, (30.0, 20.0), size_px=40)
    yy, xx = np.mgrid[0:40, 0:40]
    saliency = np.exp(-((xx - 28) ** 2 + (yy - 12) ** 2) / 30.0).astype(np.float32)
    return crop, saliency


def test_nrrd_pixel_geometry_reads_back(tmp_path, crop_and_map):
    import SimpleITK as sitk

    crop, saliency = crop_and_map
    path = write_map_nrrd(
        tmp_path / "map.nrrd",
        saliency,
        MapGeometry.of(crop),
        model="lite0",
        method="gradcam",
        probability=0.734,
    )
    data, header = read_map_nrrd(path)
    np.testing.assert_array_equal(data, saliency)
    assert list(header["sizes"]) == [40, 40]
    np.testing.assert_allclose(header["space origin"], [30 - 20, 20 - 20])
    np.testing.assert_allclose(header["space directions"], [[1, 0], [0, 1]])
    assert header["microcalcai_probability"] == "0.734" and header["microcalcai_method"] == "gradcam"
    assert header["microcalcai_source_spacing_mm"] == "0.05 0.07"
    image = sitk.ReadImage(str(path))  # an independent reader agrees
    assert image.GetOrigin() == (10.0, 0.0) and image.GetSpacing() == (1.0, 1.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), saliency)


def test_nrrd_mm_geometry_reads_back(tmp_path, crop_and_map):
    import SimpleITK as sitk

    crop, saliency = crop_and_map
    path = write_map_nrrd(tmp_path / "map_mm.nrrd", saliency, MapGeometry.of(crop), units="mm")
    image = sitk.ReadImage(str(path))
    # x (columns) at 0.07 mm, y (rows) at 0.05 mm; origin = source pixel (10, 0) in mm.
    assert image.GetSpacing() == pytest.approx((0.07, 0.05))
    assert image.GetOrigin() == pytest.approx((10 * 0.07, 0.0))
    with pytest.raises(InputError, match="no pixel spacing"):
        write_map_nrrd(tmp_path / "x.nrrd", saliency, MapGeometry(np.eye(3)), units="mm")
    with pytest.raises(InputError, match="pixel, mm"):
        write_map_nrrd(tmp_path / "x.nrrd", saliency, units="inch")


def test_npy_round_trip(tmp_path, crop_and_map):
    _, saliency = crop_and_map
    np.testing.assert_array_equal(np.load(write_map_npy(tmp_path / "map.npy", saliency)), saliency)


def test_overlay_png_has_the_map_and_a_colour_bar(tmp_path, crop_and_map):
    crop, saliency = crop_and_map
    title = overlay_title(0.734, "Grad-CAM", "lite0", "malignant", threshold=0.5)
    assert "P(malignant) = 0.734 (malignant)" in title
    path = write_overlay_png(tmp_path / "overlay.png", crop, saliency, title=title)
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert picture.shape[0] > 200 and picture.shape[1] > 200
    colourful = (np.abs(picture[..., 0] - picture[..., 2]) > 80).sum()
    assert colourful > 2000  # the jet map and its colour bar; a grey crop alone has none
    with pytest.raises(InputError, match="same shape"):
        write_overlay_png(tmp_path / "bad.png", crop, saliency[:30])


def test_montage_png(tmp_path, crop_and_map):
    crop, saliency = crop_and_map
    items = [
        {"crop": crop, "saliency": np.roll(saliency, 5 * k, axis=1), "title": f"ROI {k}"} for k in range(7)
    ]
    width, height = Image.open(write_montage_png(tmp_path / "grid.png", items, suptitle="Grad-CAM")).size
    assert 0.7 < width / height < 1.4  # seven ROIs on a 3 x 3 grid
    width, height = Image.open(write_montage_png(tmp_path / "row.png", items, columns=7)).size
    assert width > 3 * height  # one row of seven
    with pytest.raises(InputError, match="at least one"):
        write_montage_png(tmp_path / "none.png", [])

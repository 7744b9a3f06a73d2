"""crop_roi: exact pixel crops, padding modes, millimetre resampling, the affine back to the
source, and RoiCrop.paste."""

from __future__ import annotations

import numpy as np
import pytest

from microcalcai.io.image import Mammogram
from microcalcai.io.orient import horizontal_flip_affine
from microcalcai.roi import PAD_MODES, crop_roi


@pytest.fixture(scope="module")
def image() -> Mammogram:
    pixels = np.random.default_rng(5).random((60, 50)).astype(np.float32)
    return Mammogram(pixels=pixels, spacing_mm=(0.1, 0.1))


@pytest.mark.parametrize("n", [1, 7, 8, 31])
@pytest.mark.parametrize("center", [(25, 30), (25.4, 29.6), (15, 40)])
def test_pixel_crop_is_the_exact_window_around_the_nearest_pixel(image, n, center):
    crop = crop_roi(image, center, size_px=n)
    cx, cy = round(center[0]), round(center[1])
    x0, y0 = cx - n // 2, cy - n // 2
    assert crop.pixels.dtype == np.float32 and crop.pixels.shape == (n, n)
    assert np.array_equal(crop.pixels, image.pixels[y0 : y0 + n, x0 : x0 + n])
    assert crop.crop_to_source(n // 2, n // 2) == (cx, cy)
    assert crop.source_to_crop(x0, y0) == pytest.approx((0, 0))
    assert not crop.padded and crop.pad_mode == "constant" and crop.spacing_mm == (0.1, 0.1)
    assert crop.center_xy == (float(center[0]), float(center[1]))


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("center", [(0, 0), (49, 59), (3, 55), (48, 2)])
def test_border_padding_matches_numpy_pad_of_the_whole_image(image, mode, center):
    n, big = 21, 30
    crop = crop_roi(image, center, size_px=n, pad_mode=mode, pad_value=0.25)
    options = {"constant_values": 0.25} if mode == "constant" else {}
    padded = np.pad(image.pixels, big, mode=mode, **options)
    x0, y0 = center[0] - n // 2 + big, center[1] - n // 2 + big
    assert np.array_equal(crop.pixels, padded[y0 : y0 + n, x0 : x0 + n])
    assert crop.padded and crop.pad_mode == mode


def test_large_reflect_padding_reflects_the_image_not_the_window():
    pixels = np.arange(10, dtype=np.float32)[np.newaxis].repeat(10, 0)
    crop = crop_roi(Mammogram(pixels=pixels), (0, 5), size_px=15, pad_mode="reflect")
    assert list(crop.pixels[5]) == [7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7]


def _disc_image(spacing=(0.05, 0.05), radius_mm=1.0, center_mm=(3.0, 2.5), shape=(120, 140)) -> Mammogram:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    inside = ((yy * spacing[0] - center_mm[0]) ** 2 + (xx * spacing[1] - center_mm[1]) ** 2) < radius_mm**2
    return Mammogram(pixels=inside.astype(np.float32), spacing_mm=spacing)


@pytest.mark.parametrize("spacing", [(0.05, 0.05), (0.1, 0.05), (0.04, 0.07)])
def test_mm_crop_is_resampled_to_the_target_spacing(spacing):
    # A 1 mm radius disc centred at 3 mm (rows) x 2.5 mm (columns).
    image = _disc_image(spacing)
    center_xy = (2.5 / spacing[1], 3.0 / spacing[0])
    crop = crop_roi(image, center_xy, size_mm=4.0, spacing_mm=0.1)
    assert crop.size_px == 40 and crop.spacing_mm == (0.1, 0.1) and crop.size_mm == pytest.approx(4.0)
    assert crop.metadata["resampled"]
    # In the crop the disc is round, 10 pixels in radius, centred on the crop's centre.
    weights = crop.pixels
    yy, xx = np.mgrid[0:40, 0:40]
    centroid = (float((weights * xx).sum() / weights.sum()), float((weights * yy).sum() / weights.sum()))
    assert centroid == pytest.approx((19.5, 19.5), abs=0.1)
    assert weights.sum() == pytest.approx(np.pi * 10**2, rel=0.03)
    assert crop.crop_to_source(19.5, 19.5) == pytest.approx(center_xy)


def test_mm_crop_on_a_linear_ramp_samples_the_source_where_to_source_says():
    rows, cols = 80, 100
    yy, xx = np.mgrid[0:rows, 0:cols]
    ramp = ((0.3 * xx + 0.7 * yy) / (0.3 * cols + 0.7 * rows)).astype(np.float32)
    image = Mammogram(pixels=ramp, spacing_mm=(0.1, 0.1))
    crop = crop_roi(image, (50.3, 40.2), size_mm=3.0, spacing_mm=0.075)  # finer: upsampling, no blur
    assert crop.size_px == 40
    for cx, cy in [(0, 0), (39, 0), (17, 23), (39, 39)]:
        sx, sy = crop.crop_to_source(cx, cy)
        want = (0.3 * sx + 0.7 * sy) / (0.3 * cols + 0.7 * rows)
        assert crop.pixels[cy, cx] == pytest.approx(want, abs=1e-5)


def test_shrinking_is_anti_aliased():
    # A one-pixel checkerboard has no content at a 4x coarser spacing: it must average to grey.
    checker = (np.indices((200, 200)).sum(axis=0) % 2).astype(np.float32)
    image = Mammogram(pixels=checker, spacing_mm=(0.05, 0.05))
    crop = crop_roi(image, (100, 100), size_mm=5.0, spacing_mm=0.2)
    assert crop.metadata["antialias_sigma_px"] == [1.5, 1.5]
    assert np.abs(crop.pixels - 0.5).max() < 0.05


def test_size_in_pixels_and_mm_together_fix_the_spacing(image):
    crop = crop_roi(image, (25, 30), size_px=16, size_mm=2.4)
    assert crop.size_px == 16 and crop.spacing_mm == pytest.approx((0.15, 0.15))


def test_mm_crop_at_the_image_spacing_is_exact(image):
    crop = crop_roi(image, (25, 30), size_mm=1.2)
    assert crop.size_px == 12 and not crop.metadata["resampled"]
    assert np.array_equal(crop.pixels, crop_roi(image, (25, 30), size_px=12).pixels)


def test_paste_puts_the_crop_back_where_it_came_from(image):
    crop = crop_roi(image, (20, 25), size_px=9)
    pasted = crop.paste(crop.pixels, image.pixels.shape)
    inside = ~np.isnan(pasted)
    assert inside.sum() == 81
    assert np.array_equal(pasted[inside], image.pixels[21:30, 16:25].ravel())
    # A map at half the crop's resolution (a network's saliency) covers the same square.
    coarse = crop.paste(np.ones((3, 3)), image.pixels.shape)
    assert np.array_equal(~np.isnan(coarse), inside)


def test_paste_of_a_resampled_crop_returns_to_the_source_grid():
    rows, cols = 80, 100
    yy, xx = np.mgrid[0:rows, 0:cols]
    ramp = (xx / cols).astype(np.float32)
    crop = crop_roi(Mammogram(pixels=ramp, spacing_mm=(0.05, 0.05)), (50, 40), size_mm=2.0, spacing_mm=0.1)
    pasted = crop.paste(crop.pixels, ramp.shape)
    inside = ~np.isnan(pasted)
    assert inside.sum() == pytest.approx(40 * 40, rel=0.12)
    assert np.abs(pasted[inside] - ramp[inside]).max() < 0.01
    ys, xs = np.nonzero(inside)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (30, 70, 20, 60)


def test_crop_of_an_oriented_image_maps_to_the_stored_grid():
    stored = np.random.default_rng(9).random((40, 30)).astype(np.float32)
    flipped = Mammogram(pixels=stored[:, ::-1].copy(), to_stored=horizontal_flip_affine(30))
    plain = Mammogram(pixels=stored)
    center = (7, 12)  # stored coordinates, whatever the display orientation
    a = crop_roi(flipped, center, size_px=5)
    b = crop_roi(plain, center, size_px=5)
    assert np.array_equal(a.pixels, b.pixels[:, ::-1])
    for x, y in [(0, 0), (4, 2), (2, 2)]:
        sx, sy = a.crop_to_source(x, y)
        assert a.pixels[y, x] == stored[int(sy), int(sx)]
    assert a.crop_to_source(2, 2) == (7.0, 12.0)
    pasted = a.paste(a.pixels, stored.shape)
    inside = ~np.isnan(pasted)
    assert np.array_equal(pasted[inside], stored[inside]) and inside.sum() == 25

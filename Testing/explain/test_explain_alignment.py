"""A map computed on a crop lands over the same stored pixels of the full mammogram."""

from __future__ import annotations

import numpy as np
import pytest

from microcalcai.explain import saliency_map
from microcalcai.explain.outputs import MapGeometry
from microcalcai.io.image import Mammogram
from microcalcai.roi import crop_roi


def _mammogram_with_cluster(rows: int, cols: int, spot_xy, seed: int = 0, to_stored=None) -> Mammogram:
    """A flat textured image with a calcification-like cluster centred at ``spot_xy`` (stored pixels)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    texture = gaussian_filter(rng.normal(size=(rows, cols)), 3.0)
    pixels = 0.35 + 0.08 * texture / texture.std() + rng.normal(0, 0.02, (rows, cols))
    yy, xx = np.mgrid[0:rows, 0:cols]
    for dx, dy in ((0, 0), (2.5, 1.0), (-1.5, 2.5)):
        pixels += 0.45 * np.exp(-((xx - spot_xy[0] - dx) ** 2 + (yy - spot_xy[1] - dy) ** 2) / (2 * 1.2**2))
    pixels = np.clip(pixels, 0, 1).astype(np.float32)
    if to_stored is None:
        return Mammogram(pixels=pixels, spacing_mm=(0.07, 0.07))
    # An image read with orient=True: pixels flipped left-right, to_stored maps back to the file's grid.
    return Mammogram(pixels=pixels[:, ::-1].copy(), spacing_mm=(0.07, 0.07), to_stored=to_stored)


def _peak(pasted: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.nanargmax(pasted)), pasted.shape)
    return int(col), int(row)


@pytest.mark.parametrize("flipped", [False, True], ids=["stored", "oriented"])
def test_map_of_an_off_centre_crop_at_the_border_lands_on_the_cluster(trained_cnn, flipped):
    rows, cols = 150, 200
    spot = (7.0, 60.0)  # 7 px from the left border of the stored image
    to_stored = np.array([[-1.0, 0.0, cols - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if flipped else None
    image = _mammogram_with_cluster(rows, cols, spot, to_stored=to_stored)
    # The crop is centred 10 px right of and 8 px below the cluster and overhangs the left border.
    crop = crop_roi(image, (spot[0] + 10, spot[1] + 8), size_px=48)
    assert crop.padded
    saliency = saliency_map(trained_cnn, crop)
    pasted = crop.paste(saliency, (rows, cols))  # on the stored grid of the file, whatever the orientation
    peak_x, peak_y = _peak(pasted)
    assert abs(peak_x - spot[0]) <= 3 and abs(peak_y - spot[1]) <= 3
    # The map covers exactly the crop's footprint on the stored grid (clipped to the image), NaN elsewhere.
    (x_a, y_a), (x_b, y_b) = crop.crop_to_source(0, 0), crop.crop_to_source(47, 47)
    expected = np.zeros((rows, cols), bool)
    x_lo, x_hi = max(0, int(min(x_a, x_b))), int(max(x_a, x_b))
    expected[int(min(y_a, y_b)) : int(max(y_a, y_b)) + 1, x_lo : x_hi + 1] = True
    assert 0 < expected.sum() < 48 * 48
    assert np.array_equal(np.isfinite(pasted), expected)


def test_map_of_a_resampled_crop_lands_on_the_cluster(trained_cnn):
    rows, cols = 160, 160
    spot = (100.0, 40.0)
    image = _mammogram_with_cluster(rows, cols, spot)
    # 40 source pixels resampled to 48 crop pixels (0.0583 mm), the cluster off-centre.
    crop = crop_roi(image, (spot[0] - 6, spot[1] + 5), size_px=48, size_mm=40 * 0.07)
    assert crop.metadata["resampled"]
    pasted = crop.paste(saliency_map(trained_cnn, crop), (rows, cols))
    peak_x, peak_y = _peak(pasted)
    assert abs(peak_x - spot[0]) <= 3 and abs(peak_y - spot[1]) <= 3


def test_geometry_of_a_crop_matches_its_pixels():
    image = _mammogram_with_cluster(120, 100, (50.0, 50.0))
    crop = crop_roi(image, (10, 100), size_px=32)
    geometry = MapGeometry.of(crop)
    assert geometry.origin_xy == (10 - 16, 100 - 16) and geometry.step_xy == (1.0, 1.0)
    assert geometry.source_spacing_mm == pytest.approx((0.07, 0.07))
    # Crop pixel (i, j) is source pixel origin + (i, j): compare stored values where both exist.
    i, j = 20, 5
    x, y = geometry.origin_xy[0] + i, geometry.origin_xy[1] + j
    assert crop.pixels[j, i] == image.pixels[int(y), int(x)]

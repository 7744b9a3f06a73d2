"""Calcifications inserted into a real mammogram; the montage figure per morphology."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from microcalcai.errors import InputError
from microcalcai.io import read_image
from microcalcai.phantom import generate_dataset
from microcalcai.phantom.malignancy import MORPHOLOGIES
from microcalcai.phantom.montage import example_roi, morphology_montage


def test_insertion_into_a_real_mammogram_respects_its_spacing(tmp_path, real_mammograms):
    background = real_mammograms[0]
    result = _one_view_on(
        background,
        tmp_path / "bg",
        seed=4,
        background_spacing_mm=0.05,
        roi_size=128,
        findings_per_breast=(1, 1),
        morphologies=["coarse_heterogeneous"],
    )
    frame = pd.read_csv(result.manifest_path)
    row = frame.iloc[0]
    original = read_image(background)
    out = read_image(result.out_dir / row.image_path, voi="none")
    assert out.spacing_mm == (0.05, 0.05) and out.pixels.shape == original.pixels.shape
    assert out.laterality == original.laterality and out.view == original.view
    mask = np.asarray(Image.open(result.out_dir / row.mask_path)) > 0
    assert mask[row.roi_y - 64 : row.roi_y + 64, row.roi_x - 64 : row.roi_x + 64].any()
    assert original.pixels[row.roi_y, row.roi_x] > 0.02  # inside the breast, not on the air
    # away from the calcifications the background is kept (to the output's quantisation)
    far = ~np.asarray(Image.fromarray(mask).resize(mask.shape[::-1]))  # same grid
    far[max(row.roi_y - 200, 0) : row.roi_y + 200, max(row.roi_x - 200, 0) : row.roi_x + 200] = False
    assert np.abs(out.pixels[far] - original.pixels[far]).max() < 2.0 / (2**14 - 1)
    # where calcium was added the image is denser
    assert out.pixels[mask].mean() > original.pixels[mask].mean() + 0.02
    # sizes in millimetres: a 0.05 mm grid holds more pixels per particle than the 0.07 mm default
    particles = pd.read_csv(result.out_dir / "calcifications.csv")
    assert (particles.mask_pixels >= 1).all()


def test_background_without_spacing_needs_one(tmp_path, real_mammograms):
    with pytest.raises(InputError, match="background-spacing-mm"):
        _one_view_on(real_mammograms[1], tmp_path / "bg", seed=4, roi_size=64)


@pytest.mark.parametrize("kind", ["noise", "small spot"])
def test_a_background_without_a_breast_interior_is_named(tmp_path, kind):
    """A noise image or a small spot crop holds no tissue deep enough to calibrate findings on:
    one clear error naming the file (before, an IndexError from an empty percentile)."""
    rng = np.random.default_rng(0)
    if kind == "noise":
        pixels = (rng.random((600, 800)) * 255).astype(np.uint8)
    else:
        pixels = np.zeros((96, 96), np.uint8)
        pixels[20:76, 0:60] = 180  # tissue a few mm across at 0.2 mm a pixel
    path = tmp_path / "background.png"
    Image.fromarray(pixels).save(path)
    with pytest.raises(
        InputError, match=r"background .*background\.png: (no breast found|the breast found reaches only)"
    ):
        _one_view_on(path, tmp_path / "bg", seed=1, background_spacing_mm=0.2, roi_size=32)
    assert not (tmp_path / "bg").exists()


@pytest.mark.parametrize("morphology", MORPHOLOGIES)
def test_every_morphology_is_visible_in_its_example(morphology):
    image, labels = example_roi(
        morphology, "grouped" if morphology != "vascular" else "linear", 3, spacing_mm=0.1, size=160
    )
    calc = labels > 0
    assert calc.sum() >= 3
    # calcifications stand out of the tissue around them (white top-hat against a local median)
    from scipy.ndimage import median_filter

    local = image - median_filter(image, size=25)
    faint = 2.5 if morphology == "amorphous" else 4.0  # amorphous: hazy by definition
    assert np.percentile(local[calc], 90) > faint * np.std(local[~calc])


def test_montage_figure(tmp_path):
    path = morphology_montage(
        tmp_path / "m.png",
        per_morphology=2,
        size=96,
        spacing_mm=0.1,
        morphologies=["rim", "fine_linear_branching"],
    )
    figure = Image.open(path)
    assert figure.width > 300 and figure.height > 300


def test_patient_overview_figure(tmp_path, full_set):
    from microcalcai.phantom.montage import patient_overview

    result, frame = full_set
    path = patient_overview(result.manifest_path, tmp_path / "p.png", max_side=300)
    figure = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert figure.shape[1] > 4 * 200  # four views side by side
    # ROI outlines are drawn in colour (the images themselves are grey)
    colour = (np.abs(figure[..., 0] - figure[..., 1]) > 60) | (np.abs(figure[..., 1] - figure[..., 2]) > 60)
    assert colour.sum() > 100


def _one_view_on(background, out, **options):
    """One patient's CC view with findings inserted into `background`."""
    return generate_dataset(
        out, patients=1, backgrounds=[background], bilateral=False, views=("CC",), progress=False, **options
    )

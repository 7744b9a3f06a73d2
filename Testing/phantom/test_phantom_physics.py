"""Contrast follows calcification size and breast thickness; noise and bit depth are as set."""

from __future__ import annotations

import numpy as np

from microcalcai.phantom.anatomy import make_breast
from microcalcai.phantom.morphology import Ellipsoid, FindingGeometry, Particle
from microcalcai.phantom.physics import LOG_FULL_SCALE, Detector
from microcalcai.phantom.scene import Placement, synthesize_view


def _contrast(diameter_mm: float, thickness_mm: float, detector: Detector) -> float:
    """Peak log-exposure signal of one sphere: the image with it minus the same image without."""
    a = diameter_mm / 2
    finding = FindingGeometry(
        "round", "grouped", [Particle(0.0, 0.0, [Ellipsoid(0, 0, a, a, a)], size_mm=2 * a)]
    )

    def image(placements):
        rng = np.random.default_rng(9)
        breast = make_breast(
            rng,
            spacing_mm=detector.spacing_mm,
            view="CC",
            laterality="L",
            field_shape=(160, 160),
            thickness_mm=thickness_mm,
        )
        return synthesize_view(breast, placements, rng, density=0.3, beta=3.0, detector=detector).stored

    with_calc = image([Placement(1, finding, 79.5, 79.5, 0.0)]).astype(float)
    without = image([]).astype(float)
    return float((with_calc - without).max()) * LOG_FULL_SCALE / detector.max_value


def test_contrast_grows_with_size_and_falls_with_thickness():
    det = Detector(spacing_mm=0.07, bits_stored=16, photons_per_mm2=1e9, electronic_noise=0.0)
    sizes = [_contrast(d, 45.0, det) for d in (0.15, 0.3, 0.6)]
    assert sizes[0] < sizes[1] < sizes[2]
    # a 0.3 mm calcification: tens of percent of log exposure, as seen clinically
    assert 0.1 < sizes[1] < 1.0
    thin, thick = _contrast(0.3, 30.0, det), _contrast(0.3, 75.0, det)
    assert thick < 0.85 * thin  # more scatter in a thicker breast


def test_noise_falls_with_dose_and_bit_depth_bounds_values():
    rng = np.random.default_rng(0)

    def noise(photons):
        """Pixel-to-pixel differences: quantum noise dominates them, texture barely varies there."""
        breast = make_breast(
            np.random.default_rng(1),
            spacing_mm=0.1,
            view="CC",
            laterality="L",
            field_shape=(128, 128),
            thickness_mm=50,
        )
        det = Detector(spacing_mm=0.1, bits_stored=16, photons_per_mm2=photons)
        a = synthesize_view(breast, [], np.random.default_rng(2), density=0.3, beta=3.0, detector=det).stored
        return np.std(np.diff(a.astype(float), axis=1))

    assert noise(1e4) > 3 * noise(1e6)
    breast = make_breast(rng, spacing_mm=0.1, view="CC", laterality="L", field_shape=(64, 64))
    view = synthesize_view(
        breast, [], rng, density=0.3, beta=3.0, detector=Detector(spacing_mm=0.1, bits_stored=10)
    )
    assert view.stored.max() <= 1023 and view.stored.dtype == np.uint16

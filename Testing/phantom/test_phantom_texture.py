"""The parenchyma has the power-law spectrum it is made with, in the field and in the image."""

from __future__ import annotations

import numpy as np
import pytest

from microcalcai.errors import InputError
from microcalcai.phantom.anatomy import make_breast
from microcalcai.phantom.physics import Detector
from microcalcai.phantom.scene import synthesize_view
from microcalcai.phantom.texture import power_law_field, spectral_slope


@pytest.mark.parametrize("beta", [2.5, 3.0, 3.5])
def test_field_slope_matches_beta(beta):
    slopes = [
        spectral_slope(
            power_law_field((256, 256), beta, np.random.default_rng(s), spacing_mm=0.1), 0.1, (0.15, 3.0)
        )
        for s in range(4)
    ]
    assert abs(np.mean(slopes) - beta) < 0.15, slopes


def test_anisotropic_field_keeps_slope_and_is_stretched():
    field = power_law_field((256, 256), 3.0, np.random.default_rng(0), spacing_mm=0.1, anisotropy=2.0)
    assert abs(spectral_slope(field, 0.1, (0.15, 3.0)) - 3.0) < 0.2
    # stretched along the column axis (angle 0): neighbours along a row differ less than along a column
    along = np.mean(np.diff(field, axis=1) ** 2)
    across = np.mean(np.diff(field, axis=0) ** 2)
    assert along < 0.6 * across


def test_field_amplitude_is_physical_not_per_image():
    # Unit variance for an infinite field; a spot field holds less of the low frequencies.
    big = power_law_field((1024, 1024), 3.0, np.random.default_rng(1), spacing_mm=0.1)
    small = power_law_field((128, 128), 3.0, np.random.default_rng(1), spacing_mm=0.1)
    assert 0.5 < big.std() < 1.2
    assert small.std() < big.std()


def test_generated_image_keeps_the_texture_slope():
    """On a spot field without calcifications, in the band where texture dominates noise."""
    slopes = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        breast = make_breast(rng, spacing_mm=0.1, view="CC", laterality="L", field_shape=(512, 512))
        view = synthesize_view(breast, [], rng, density=0.35, beta=3.0, detector=Detector(spacing_mm=0.1))
        slopes.append(spectral_slope(view.stored.astype(float), 0.1, (0.1, 1.0)))
    assert abs(np.mean(slopes) - 3.0) < 0.25, slopes


def test_bad_beta_is_refused():
    with pytest.raises(InputError, match="beta"):
        power_law_field((64, 64), 1.5, np.random.default_rng(0))

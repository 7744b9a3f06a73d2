"""Phantom data sets shared by the phantom tests (generated once per session, small and fast)."""

from __future__ import annotations

import pandas as pd
import pytest

from microcalcai.phantom import generate_dataset

SPOT = dict(
    patients=12,
    seed=7,
    spacing_mm=0.1,
    roi_size=96,
    full_field=False,
    bilateral=False,
    negatives=True,
    views=("CC", "MLO"),
    progress=False,
)
FULL = dict(
    patients=1,
    seed=11,
    spacing_mm=0.2,
    roi_size=96,
    negatives=True,
    progress=False,
    findings_per_breast=(2, 2),
    write_png=True,
    roi_png=True,
)


def _generate(tmp_path_factory, name: str, settings: dict):
    out = tmp_path_factory.mktemp("phantom") / name
    result = generate_dataset(out, **settings)
    return result, pd.read_csv(result.manifest_path, dtype={"birads": str})


@pytest.fixture(scope="session")
def spot_set(tmp_path_factory):
    """Spot fields: many small images, the mode downstream tests use."""
    return _generate(tmp_path_factory, "spot", SPOT)


@pytest.fixture(scope="session")
def full_set(tmp_path_factory):
    """One patient, four full-field views (coarse 0.2 mm pixels to stay quick)."""
    return _generate(tmp_path_factory, "full", FULL)

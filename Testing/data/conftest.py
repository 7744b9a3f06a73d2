"""Fixtures of the data area: miniature data sets written in each public format."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "microcalcai_testing_data_formats", Path(__file__).with_name("formats.py")
)
formats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(formats)


@pytest.fixture(scope="session")
def fmt():
    """The format writers (Testing/data/formats.py)."""
    return formats


@pytest.fixture
def mias_dir(tmp_path):
    return formats.make_mias(tmp_path / "mias")


@pytest.fixture
def inbreast_dir(tmp_path):
    return formats.make_inbreast(tmp_path / "INbreast Release 1.0")


@pytest.fixture
def cmmd_dir(tmp_path):
    return formats.make_cmmd(tmp_path / "manifest-1616439774456")

"""Fixtures for the Slicer module's tests: real MRML scenes and volumes (slicer-core)."""

import sys
from pathlib import Path

import pytest

# Test modules import their helpers (slicer_test_helpers) from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _settings_file(tmp_path, monkeypatch):
    # The Logic remembers its settings in the user's config folder: never touch the real one.
    monkeypatch.setenv("MICROCALCAI_LOGIC_SETTINGS", str(tmp_path / "settings.json"))


@pytest.fixture
def scene():
    import slicer

    return slicer.vtkMRMLScene()

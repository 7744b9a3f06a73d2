"""Fixtures for the Slicer module's tests: real MRML scenes and volumes (slicer-core), and one
real MicrocalcAI server for the session's Logic tests."""

import shutil
import sys
from pathlib import Path

import pytest

# Test modules import their helpers (slicer_test_helpers) from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The server tests' own builders of tiny hosted models (one place for that code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from exam_studies import bac, bac_server  # noqa: E402, F401  (fixtures of the exam tests)


@pytest.fixture(autouse=True)
def _settings_file(tmp_path, monkeypatch):
    # The Logic remembers its settings in the user's config folder: never touch the real one.
    monkeypatch.setenv("MICROCALCAI_LOGIC_SETTINGS", str(tmp_path / "settings.json"))


@pytest.fixture
def scene():
    import slicer

    return slicer.vtkMRMLScene()


@pytest.fixture(scope="session")
def studies(tmp_path_factory, real_mammograms):
    """Phantom DICOMs (clusters at known positions, labels in manifest.csv), one real CBIS-DDSM
    file, and a MONOCHROME1 mammogram with a VOI LUT and a patient header (slicer_test_helpers),
    held by the server under its file name and under its series UID."""
    import pydicom
    from server_helpers import phantom_studies
    from slicer_test_helpers import write_identified_mammogram

    made = phantom_studies(tmp_path_factory.mktemp("slicer-server"), patients=10, field_size=None)
    shutil.copy(real_mammograms[0], made["folder"] / "cbis_real.dcm")
    made["identified"] = write_identified_mammogram(made["folder"] / "identified.dcm")
    # Another study, filed under its series UID as a DICOMweb datastore names a series.
    held = write_identified_mammogram(made["folder"] / "held.tmp", seed=12)
    made["held_series_uid"] = str(pydicom.dcmread(str(held), stop_before_pixels=True).SeriesInstanceUID)
    made["held"] = held.rename(made["folder"] / (made["held_series_uid"] + ".dcm"))
    return made


@pytest.fixture(scope="session")
def server(studies, tmp_path_factory):
    from server_helpers import host_tiny_models

    from microcalcai.server.launch import LocalServer

    workspace = tmp_path_factory.mktemp("slicer-workspace")
    host_tiny_models(workspace, tmp_path_factory.mktemp("slicer-models"))
    local = LocalServer(studies["folder"], workspace, env={"OMP_NUM_THREADS": "1"})
    local.start()
    yield local
    local.stop()


@pytest.fixture
def logic(scene, server, tmp_path):
    """The Logic connected to the session's server, with sending images allowed (asking first
    is tested in test_slicer_privacy.py)."""
    from microcalcai_logic import MicrocalcAILogic
    from microcalcai_logic.settings import LogicSettings

    core = MicrocalcAILogic(
        scene,
        settings=LogicSettings(server_url=server.url),
        cache_folder=str(tmp_path / "cache"),
        temp_folder=str(tmp_path / "temp"),
    )
    core.connect()
    core.set_upload_consent(True)
    return core

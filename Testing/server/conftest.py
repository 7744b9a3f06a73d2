"""One real MONAI Label server for the whole server test session (starting one costs ~15 s)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server_helpers import host_tiny_models, running_server, write_studies  # noqa: E402


@pytest.fixture(scope="session")
def server_env(tmp_path_factory, real_mammograms):
    root = tmp_path_factory.mktemp("server")
    studies = root / "studies"
    layout = write_studies(studies, real_mammograms[0])
    workspace = root / "workspace"
    models = host_tiny_models(workspace, root / "built-models")
    return {"studies": studies, "workspace": workspace, "models": models, "ids": layout["ids"]}


@pytest.fixture(scope="session")
def server(server_env):
    with running_server(server_env["studies"], server_env["workspace"], threads=2) as local:
        yield local


@pytest.fixture(scope="session")
def http():
    import requests

    with requests.Session() as session:
        yield session

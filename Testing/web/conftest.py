"""Fixtures for the web page's tests: phantom studies, the real MicrocalcAI server with two tiny
models, the web app as its own process, and Debian's Chromium driven by Playwright.

One server and one web app per test module (each costs seconds to start on 2 cores); the page
is one scene, so the tests of a module run in order on the same page.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# The server tests' builders of tiny hosted models (one place for that code).
sys.path.insert(0, str(HERE.parent / "server"))
from exam_studies import bac, bac_server  # noqa: E402, F401  (fixtures of the exam tests)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS_ENV = "MICROCALCAI_SCREENSHOTS"


@pytest.fixture(autouse=True)
def _settings_file(tmp_path, monkeypatch):
    # The Logic may remember settings in the user's config folder: never touch the real one.
    monkeypatch.setenv("MICROCALCAI_LOGIC_SETTINGS", str(tmp_path / "settings.json"))


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Phantom spot views (0.1 mm pixels) with one calcification cluster each, at the known
    centres listed in manifest.csv, plus the manifest the server reads its candidate ROIs from."""
    from server_helpers import phantom_studies

    return phantom_studies(tmp_path_factory.mktemp("web-studies"), patients=6)


@pytest.fixture(scope="module")
def server(studies, tmp_path_factory):
    from server_helpers import host_tiny_models

    from microcalcai.server.launch import LocalServer

    workspace = tmp_path_factory.mktemp("web-workspace")
    host_tiny_models(workspace, tmp_path_factory.mktemp("web-models"), voting=True)
    local = LocalServer(studies["folder"], workspace, env={"OMP_NUM_THREADS": "1"})
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def web_app(server, tmp_path_factory):
    from web_helpers import WebApp

    app = WebApp(server.url, tmp_path_factory.mktemp("web-app") / "web.log").start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install-system-test-deps.sh (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, web_app):
    from web_helpers import open_page

    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    opened = open_page(context, web_app.url)
    yield opened
    context.close()


@pytest.fixture(scope="session")
def screenshots_dir():
    """docs/images when MICROCALCAI_SCREENSHOTS=1 (to refresh the docs), else None."""
    if os.environ.get(SCREENSHOTS_ENV) != "1":
        return None
    return Path(__file__).resolve().parents[2] / "docs" / "images"

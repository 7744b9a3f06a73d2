"""Fixtures for the web page's tests: phantom studies, the real MicrocalcAI server with two tiny
models, the web app as its own process, and Debian's Chromium driven by Playwright.

One server and one web app per test module (each costs seconds to start on 2 cores); the page
is one scene, so the tests of a module run in order on the same page.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# The server tests' builders of tiny hosted models (one place for that code).
sys.path.insert(0, str(HERE.parent / "server"))

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
    from microcalcai.phantom import generate_dataset

    root = tmp_path_factory.mktemp("web-studies")
    phantom = generate_dataset(
        root / "phantom",
        patients=3,
        seed=3,
        spacing_mm=0.1,
        roi_size=96,
        field_size=360,
        full_field=False,
        views=("CC",),
        bilateral=False,
        progress=False,
    )
    folder = root / "studies"
    folder.mkdir()
    rows = list(csv.DictReader(phantom.manifest_path.open()))
    keep = ["patient_id", "image_path", "roi_x", "roi_y", "roi_size", "label", "finding"]
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keep)
        writer.writeheader()
        for row in rows:
            source = phantom.out_dir / row["image_path"]
            shutil.copy(source, folder / source.name)
            writer.writerow({**{k: row[k] for k in keep}, "image_path": source.name})
    return {"folder": folder, "rows": rows, "phantom": phantom.out_dir}


def host_voting_models(workspace: Path, scratch: Path) -> None:
    """Two tiny random-feature models and their ensemble, hosted in `workspace`.

    Their heads vote 'malignant' with every feature channel (small positive weights for
    malignant, the same negative for benign), so Grad-CAM for 'malignant' weighs every channel
    positively and the saliency map shows where the features fire. A head drawn at random (the
    registry's near-zero initialisation) often gives an all-zero map, and a test of the overlay
    would then have nothing to look at.
    """
    import torch
    from server_helpers import INPUT_SIZE

    from microcalcai.models.artifact import card_for, save_model
    from microcalcai.models.registry import create_model
    from microcalcai.server.workspace import build_ensemble, install_model, prepare_app

    prepare_app(workspace)
    for seed, name in enumerate(("tiny-a", "tiny-b")):
        torch.manual_seed(seed)
        module = create_model("tf_efficientnet_lite0", weights="none")
        head = module.get_classifier()
        with torch.no_grad():
            votes = 1e-3 * torch.rand_like(head.weight[1])
            head.weight[1], head.weight[0] = votes, -votes
        card = card_for(
            "tf_efficientnet_lite0", name=name, input_size=INPUT_SIZE, threshold=0.5,
            threshold_method="fixed 0.5 (test model)",
        )
        install_model(workspace, save_model(module.eval(), card, scratch / name))
    build_ensemble(workspace, threshold=0.5, threshold_method="fixed 0.5 (test ensemble)")


@pytest.fixture(scope="module")
def server(studies, tmp_path_factory):
    from microcalcai.server.launch import LocalServer

    workspace = tmp_path_factory.mktemp("web-workspace")
    host_voting_models(workspace, tmp_path_factory.mktemp("web-models"))
    local = LocalServer(studies["folder"], workspace, env={"OMP_NUM_THREADS": "1"})
    local.start()
    yield local
    local.stop()


class WebApp:
    """`microcalcai web` as a child in its own process group, stopped by its process id."""

    def __init__(self, server_url: str, log_path: Path):
        from microcalcai.server.launch import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self.process = None
        self.server_url = server_url

    def start(self, timeout: float = 120.0) -> WebApp:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "microcalcai", "web", "--server", self.server_url, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the web app exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the web app did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # the group this process leads, by its id
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="module")
def web_app(server, tmp_path_factory):
    app = WebApp(server.url, tmp_path_factory.mktemp("web-app") / "web.log").start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-test-deps.sh (apt-get install chromium)")
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

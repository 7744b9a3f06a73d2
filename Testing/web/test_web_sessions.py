"""A page process per browser session (`microcalcai web --sessions N`, wslink's launcher), in
Chromium against the real server: three people at once, each with their own scene and name on
their labels; a fourth tab told that every session is in use; a closed tab's process stopped
(its slot free again); an idle session's process stopped while its tab stays open.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from web_helpers import (
    STATE_TIMEOUT_MS,
    WebApp,
    click_at,
    pixel_to_ras,
    ras_to_screen,
    set_state,
    state,
    wait_idle,
    wait_state,
)

pytestmark = [pytest.mark.server, pytest.mark.browser]

SESSIONS = 3
PEOPLE = ("alice", "bob", "carol")


def _free_ports(count: int) -> int:
    """A base port with `count` free ports from it (the launcher and its sessions' ports)."""
    from microcalcai.server.launch import free_port, port_is_free

    for _ in range(50):
        base = free_port()
        if base + count < 65535 and all(port_is_free("127.0.0.1", base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports found")


def _launcher(server, tmp_path_factory, sessions: int, *options) -> WebApp:
    logs = tmp_path_factory.mktemp("sessions-logs")
    app = WebApp(
        server.url,
        logs / "launcher.log",
        args=("--sessions", str(sessions), "--log-dir", str(logs), *options),
        port=_free_ports(sessions + 1),
    )
    return app.start()


def _pages(launcher: WebApp) -> list[psutil.Process]:
    """The session page processes the launcher runs now."""
    children = psutil.Process(launcher.process.pid).children()
    return [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _wait_pages(launcher: WebApp, count: int, timeout_s: float = 120.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pages = _pages(launcher)
        if len(pages) == count:
            return pages
        time.sleep(0.5)
    raise AssertionError(f"{len(_pages(launcher))} page processes run, not {count}:\n{launcher.log_tail()}")


@pytest.fixture(scope="module")
def launcher(server, tmp_path_factory):
    app = _launcher(server, tmp_path_factory, SESSIONS, "--tab-close-s", "10", "--idle-minutes", "30")
    yield app
    app.stop()


def _sign_in(page, name: str) -> None:
    page.wait_for_selector("#mc-annotator-input", timeout=STATE_TIMEOUT_MS)
    wait_state(page, "connected === true")
    page.fill("#mc-annotator-input", name)
    page.click("#mc-annotator-ok")
    wait_state(page, f"annotator === '{name}' && ask_annotator === false")


def _row(studies, index):
    row = studies["rows"][index]
    return row, studies["folder"] / Path(row["image_path"]).name


def _open_box_classify(page, studies, index: int) -> dict:
    row, path = _row(studies, index)
    set_state(page, "image_choice", path.stem)
    page.click("#mc-open-image")
    wait_state(page, f"has_image && image_id === '{path.stem}'")
    wait_idle(page)
    cx, cy, half = float(row["roi_x"]), float(row["roi_y"]), 40.0
    page.click("#mc-draw-box")
    click_at(page, *ras_to_screen(page, pixel_to_ras(path, (cx - half, cy - half))))
    click_at(page, *ras_to_screen(page, pixel_to_ras(path, (cx + half, cy + half))))
    wait_state(page, "roi !== null")
    page.click("#mc-classify")
    wait_state(page, "results.length > 0 && busy === ''")
    return state(page, "roi")


def test_three_sessions_each_see_their_own_scene_and_label_under_their_name(
    launcher, browser, server, studies
):
    from microcalcai_logic.client import ServerClient

    contexts = [browser.new_context(viewport={"width": 1400, "height": 950}) for _ in PEOPLE]
    pages = [context.new_page() for context in contexts]
    try:
        for page in pages:  # three tabs asking for a session at once
            page.goto(launcher.url)
        for page, name in zip(pages, PEOPLE, strict=True):
            _sign_in(page, name)
        processes = _wait_pages(launcher, SESSIONS)
        ports = {c.laddr.port for p in processes for c in p.net_connections("tcp") if c.status == "LISTEN"}
        assert len(ports) == SESSIONS, ports  # one page process, its own port, per tab

        rois = [_open_box_classify(page, studies, index) for index, page in enumerate(pages)]
        labels = ("malignant", "benign", "malignant")
        for page, label in zip(pages, labels, strict=True):
            page.click(f"#mc-{label}")
            wait_state(page, "label_text.includes('Saved')")

        # Each tab still shows its own image, ROI and results after the others acted.
        for index, (page, roi) in enumerate(zip(pages, rois, strict=True)):
            _row_, path = _row(studies, index)
            assert state(page, "image_id") == path.stem
            assert state(page, "roi") == roi
            assert len(state(page, "results")) == 3  # tiny-a, tiny-b, ensemble
            assert path.stem in state(page, "label_text")
            assert state(page, "annotator") == PEOPLE[index]

        client = ServerClient(server.url)
        for index, (name, label, roi) in enumerate(zip(PEOPLE, labels, rois, strict=True)):
            _row_, path = _row(studies, index)
            stored = client.labels(path.stem)["annotations"]
            mine = [a for a in stored if a["roi"]["x"] == pytest.approx(roi["x"])]
            assert len(mine) == 1, stored
            assert mine[0]["annotator"] == name and mine[0]["label"] == label
            assert not [a for a in stored if a["annotator"] in set(PEOPLE) - {name}], stored

        # A fourth tab is told in words that every session is in use; no fourth process starts.
        extra = browser.new_context()
        try:
            refused = extra.new_page()
            refused.goto(launcher.url)
            text = refused.locator("#mc-session-refused").inner_text(timeout=30_000)
            assert f"All {SESSIONS} MicrocalcAI sessions are in use" in text
            assert "--sessions" in text
            assert len(_pages(launcher)) == SESSIONS
        finally:
            extra.close()

        # Closing a tab stops its page process; its slot serves the next person.
        contexts.pop().close()
        _wait_pages(launcher, SESSIONS - 1)
        again = browser.new_context()
        contexts.append(again)
        page = again.new_page()
        page.goto(launcher.url)
        _sign_in(page, "dave")
        assert state(page, "image_id") == ""  # a fresh scene, not the closed tab's
        _wait_pages(launcher, SESSIONS)
    finally:
        for context in contexts:
            context.close()


def test_idle_session_stops_while_its_tab_stays_open(server, browser, tmp_path_factory):
    # 0.3 minute without use: the page process stops although its tab is still open.
    app = _launcher(server, tmp_path_factory, 1, "--tab-close-s", "600", "--idle-minutes", "0.3")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(app.url)
        _sign_in(page, "erin")
        _wait_pages(app, 1)
        _wait_pages(app, 0, timeout_s=90)
        assert "no use for" in "".join(
            path.read_text() for path in Path(app.log_path).parent.glob("*.txt")
        ).replace("\n", " ")
    finally:
        context.close()
        app.stop()

"""`make run` (`microcalcai serve`): the server and the web page come up together, the page works
against that server in Chromium, and Ctrl-C or SIGTERM stops both, leaving no process behind.

`serve` runs in its own process group, as a terminal's foreground job: Ctrl-C is SIGINT to that
whole group (serve and the server); the page lives in its own group and must be stopped by serve.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request

import psutil
import pytest
from web_helpers import open_page

pytestmark = [pytest.mark.server, pytest.mark.browser]

READY_S = 240


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from server_helpers import host_tiny_models

    folder = tmp_path_factory.mktemp("run-workspace")
    host_tiny_models(folder, tmp_path_factory.mktemp("run-models"), voting=True)
    return folder


class Serve:
    """`microcalcai serve` as a terminal would run it; its printed lines read as they come."""

    def __init__(self, studies, workspace, *args):
        from microcalcai.server.launch import free_port

        self.web_port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "microcalcai",
                "serve",
                "--studies",
                str(studies),
                "--workspace",
                str(workspace),
                "--port",
                "0",
                "--web-port",
                str(self.web_port),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = READY_S) -> re.Match:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"serve never printed {pattern!r}; it printed:\n{''.join(self.seen[-40:])}")

    def family(self) -> list[psutil.Process]:
        """serve and every process it started (the server, the page and their children)."""
        parent = psutil.Process(self.process.pid)
        return [parent, *parent.children(recursive=True)]

    def kill(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def _answers(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status


def _assert_all_gone(processes: list[psutil.Process]) -> None:
    _gone, alive = psutil.wait_procs(processes, timeout=60)
    survivors = [f"{p.pid} {' '.join(p.cmdline()[:6])}" for p in alive]
    for process in alive:
        process.kill()
    assert not survivors, f"still running after serve stopped: {survivors}"


@pytest.mark.parametrize(
    ("stop_signal", "options"),
    [(signal.SIGINT, ()), (signal.SIGTERM, ("--web-sessions", "2"))],
    ids=["ctrl-c", "sigterm-with-sessions"],
)
def test_serve_starts_server_and_page_and_a_signal_stops_both(
    studies, workspace, browser, stop_signal, options
):
    serve = Serve(studies["folder"], workspace, *options)
    try:
        server_url = serve.wait_for(r"server ready at (http://\S+)").group(1)
        page_url = serve.wait_for(r"web page ready at (http://\S+/)").group(1)
        assert page_url == f"http://127.0.0.1:{serve.web_port}/"
        assert server_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server_url + "/info/", timeout=10) as answer:
            assert "tiny-a" in json.loads(answer.read())["models"]
        # The page is MicrocalcAI's, and it reached the server that serve started.
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        try:
            page = open_page(context, page_url)
            assert server_url in page.evaluate("() => window.trame.state.get('server_text')")
            family = serve.family()  # with sessions: the tab's own page process too
        finally:
            context.close()
        commands = [" ".join(p.cmdline()) for p in family]
        assert any("monailabel.main" in c for c in commands), commands
        pages = [c for c in commands if " web --server " in c]
        assert len(pages) == (2 if options else 1), commands  # with sessions: launcher + the tab's page
        if stop_signal == signal.SIGINT:
            os.killpg(serve.process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        else:
            serve.process.send_signal(signal.SIGTERM)  # a service manager's stop, to serve alone
        serve.process.wait(90)
        _assert_all_gone(family)
        for url in (server_url + "/info/", page_url):
            with pytest.raises(OSError):
                _answers(url)
    finally:
        serve.kill()


def test_no_web_starts_the_server_alone(studies, workspace):
    serve = Serve(studies["folder"], workspace, "--no-web")
    try:
        server_url = serve.wait_for(r"server ready at (http://\S+)").group(1)
        serve.wait_for(r"Ctrl-C stops the server$")
        assert _answers(server_url + "/info/") == 200
        with pytest.raises(OSError):
            _answers(f"http://127.0.0.1:{serve.web_port}/")
        assert not any(" web --server " in " ".join(p.cmdline()) for p in serve.family())
        family = serve.family()
        os.killpg(serve.process.pid, signal.SIGINT)
        serve.process.wait(90)
        _assert_all_gone(family)
    finally:
        serve.kill()

"""The web page as a child process of `microcalcai serve` (one command for the whole product).

`PageProcess` starts `microcalcai web` in its own process group, its output in a log file,
waits until the page answers over HTTP, and stops the group by its process id. Only the standard
library is imported here: `serve` starts the page before it imports anything heavy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from microcalcai.errors import MicrocalcError
from microcalcai.process_group import start_group, stop_group


class PageProcess:
    def __init__(self, server_url: str, host: str, port: int, log_path: Path, extra_args=(), env=None):
        self.server_url = server_url
        self.host = host
        self.port = port
        self.log_path = Path(log_path)
        self.extra_args = list(extra_args)
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        local = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{local}:{self.port}/"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "microcalcai",
            "web",
            "--server",
            self.server_url,
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.extra_args,
        ]

    def start(self, timeout: float = 180.0) -> PageProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Its own process group: a terminal's Ctrl-C reaches `serve`, which stops the page by
        # its id once the server is down, and the page never outlives `serve`.
        self.process = start_group(
            self.command(), self.log_path, env=dict(self.env or os.environ, PYTHONUNBUFFERED="1")
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MicrocalcError(
                    f"the web page exited with status {self.process.returncode} before answering; "
                    f"its log ({self.log_path}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise MicrocalcError(f"the web page did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        stop_group(process, timeout)

"""Start the real MONAI Label server with the MicrocalcAI app: in the foreground or as a child.

`LocalServer` is what the Slicer logic tests, the web app and the server tests use: it starts
`monailabel start_server` as a subprocess in its own process group, bound to 127.0.0.1 on a free
port, waits until `/info/` answers, exposes `.url`, and stops the group by its process id.
Only the standard library is imported here: the caller needs neither torch nor MONAI Label.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from microcalcai.errors import MicrocalcError
from microcalcai.process_group import start_group, stop_group

# Files the local studies folder offers as images (MONAI Label's own default leaves out DICOM).
FILE_EXTENSIONS = ["*.dcm", "*.DCM", "*.dicom", "*.png", "*.pgm", "*.nrrd", "*.tif", "*.tiff"]


def server_env(workspace: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "MONAI_LABEL_DATASTORE_FILE_EXT": json.dumps(FILE_EXTENSIONS),
            "MONAI_LABEL_DICOMWEB_SEARCH_FILTER": json.dumps({"Modality": "MG"}),
            # Scoring after every sample/training would start a subprocess per request; our strategy
            # scores on demand.
            "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
            "MONAI_LABEL_SESSIONS": "false",
            "MONAI_LABEL_TASKS_BATCH_INFER": "false",
            "MICROCALCAI_WORKSPACE": str(workspace),
            "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def server_command(studies: str, workspace: Path, host: str, port: int) -> list[str]:
    from microcalcai.server.workspace import prepare_app

    app_dir = prepare_app(workspace)
    return [
        sys.executable,
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(app_dir),
        "--studies",
        str(studies),
        "--conf",
        "workspace",
        str(workspace),
        "--host",
        host,
        "--port",
        str(port),
        "--uvicorn_app",
        "microcalcai.server.asgi:app",
    ]


def workspace_id(workspace) -> str:
    """What /info/ tells of the server's workspace: a digest, not the folder (app.workspace_id)."""
    return hashlib.sha256(str(Path(workspace).absolute()).encode()).hexdigest()[:16]


def is_loopback(host: str) -> bool:
    """Only this machine can reach the address (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_header(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """Nobody listens there. SO_REUSEADDR as uvicorn sets it: a port whose last connections
    linger in TIME_WAIT after a stop is free to listen on again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_info(
    url: str,
    process: subprocess.Popen | None,
    timeout: float,
    log_path: Path | None = None,
    workspace: Path | None = None,
    token: str | None = None,
) -> dict:
    """/info/ of the server at `url` once it answers; with `workspace`, only our own server counts
    (another one answering on that port means ours could not bind it)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise MicrocalcError(
                f"the server exited with status {process.returncode} before answering; "
                f"its log:\n{_tail(log_path)}"
            )
        try:
            request = urllib.request.Request(f"{url}/info/", headers=auth_header(token))
            with urllib.request.urlopen(request, timeout=5) as answer:
                info = json.loads(answer.read())
            if workspace is None or info.get("workspace_id") == workspace_id(workspace):
                return info
            last = "another server answers on that port"
            time.sleep(0.3)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last = exc
            time.sleep(0.3)
    raise MicrocalcError(
        f"the server at {url} did not answer /info/ within {timeout:.0f} s ({last}); "
        f"its log:\n{_tail(log_path)}"
    )


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class LocalServer:
    """`with LocalServer(studies, workspace) as server: requests.get(server.url + "/info/")`."""

    def __init__(
        self,
        studies,
        workspace,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        env: dict | None = None,
        timeout: float = 180.0,
        token: str | None = None,
    ):
        self.studies = str(studies)
        self.workspace = Path(workspace).absolute()
        self.host = host
        self.port = port
        self.env = env or {}
        self.timeout = timeout
        # With a token the server asks every request for it (Authorization: Bearer TOKEN).
        self.token = token if token is not None else os.environ.get("MICROCALCAI_TOKEN") or None
        if self.token:
            self.env = {**self.env, "MICROCALCAI_TOKEN": self.token}
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.info: dict = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalServer:
        if self.process is not None:
            raise MicrocalcError("this LocalServer is already running; stop it first")
        if not self.port:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise MicrocalcError(
                f"port {self.port} on {self.host} is in use; choose another port or 0 for a free one"
            )
        command = server_command(self.studies, self.workspace, self.host, self.port)
        self.log_path = self.workspace / "logs" / f"server-{self.port}.log"
        # Its own process group: stop() ends the server and its training children.
        self.process = start_group(
            command, self.log_path, cwd=self.workspace, env=server_env(self.workspace, self.env)
        )
        try:
            self.info = wait_for_info(
                self.url, self.process, self.timeout, self.log_path, self.workspace, token=self.token
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        stop_group(process, timeout)

    def restart(self) -> LocalServer:
        """Stop and start again on the same port (labels and models must survive)."""
        self.stop()
        return self.start()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

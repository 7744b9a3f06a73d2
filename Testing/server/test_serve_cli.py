"""`microcalcai serve`: help and usage errors, without starting a server."""

from __future__ import annotations

import subprocess
import sys


def _serve(*args, tmp_path):
    return subprocess.run(
        [sys.executable, "-m", "microcalcai", "serve", "--workspace", str(tmp_path / "ws"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_names_the_defaults(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "microcalcai", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "--studies" in done.stdout and "127.0.0.1" in done.stdout and "--model" in done.stdout


def test_missing_studies_folder_is_a_clear_error(tmp_path):
    done = _serve("--studies", str(tmp_path / "nowhere"), tmp_path=tmp_path)
    assert done.returncode == 1
    assert "microcalcai serve: error: --studies" in done.stderr and "nowhere" in done.stderr


def test_no_models_without_defaults_is_a_clear_error(tmp_path):
    (tmp_path / "studies").mkdir()
    done = _serve("--studies", str(tmp_path / "studies"), "--no-default-models", tmp_path=tmp_path)
    assert done.returncode == 1 and "hosts no model" in done.stderr and "--model" in done.stderr
    assert (tmp_path / "ws" / "app" / "main.py").is_file()  # the app is generated in the workspace


def test_bad_model_folder_and_port(tmp_path):
    done = _serve("--model", str(tmp_path), tmp_path=tmp_path)
    assert done.returncode == 1 and "neither a model folder" in done.stderr
    done = _serve("--port", "70000", tmp_path=tmp_path)
    assert done.returncode == 1 and "--port 70000" in done.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve("--port", str(port), tmp_path=tmp_path)
    assert done.returncode == 1 and f"--port {port}: another program listens" in done.stderr

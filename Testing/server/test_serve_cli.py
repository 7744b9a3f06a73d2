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


def test_binding_beyond_loopback_needs_a_token_or_insecure_bind(tmp_path, monkeypatch):
    monkeypatch.delenv("MICROCALCAI_TOKEN", raising=False)
    done = _serve("--host", "0.0.0.0", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "--host 0.0.0.0" in done.stderr and "--token" in done.stderr and "--insecure-bind" in done.stderr
    done = _serve("--host", "192.168.7.7", tmp_path=tmp_path)
    assert done.returncode == 1 and "no access token" in done.stderr
    # With a token, or when forced, the bind check passes (and the next check, the studies, fails).
    for extra in (["--token", "s3cret"], ["--insecure-bind"]):
        done = _serve("--host", "0.0.0.0", "--studies", str(tmp_path / "nowhere"), *extra, tmp_path=tmp_path)
        assert done.returncode == 1 and "--studies" in done.stderr and "token" not in done.stderr, extra
    monkeypatch.setenv("MICROCALCAI_TOKEN", "from-the-environment")
    done = _serve("--host", "0.0.0.0", "--studies", str(tmp_path / "nowhere"), tmp_path=tmp_path)
    assert done.returncode == 1 and "--studies" in done.stderr
    done = _serve("--cors-origin", "*", tmp_path=tmp_path)
    assert done.returncode == 1 and "--cors-origin" in done.stderr


def test_serve_hosts_given_models_and_stops_with_sigterm(tmp_path, server_env):
    """The `make run` path: serve in the foreground, ready line, /info/, SIGTERM ends it all."""
    import json
    import re
    import signal
    import urllib.request

    from server_helpers import tiny_model

    models = [tiny_model(tmp_path / "built", name, seed) for seed, name in enumerate(("cli-a", "cli-b"))]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "microcalcai",
            "serve",
            "--studies",
            str(server_env["studies"]),
            "--workspace",
            str(tmp_path / "ws"),
            "--port",
            "0",
            "--model",
            str(models[0]),
            "--model",
            str(models[1]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        seen = []
        for line in process.stdout:  # the server's own start-up lines come first
            seen.append(line)
            match = re.search(r"ready at (http://127\.0\.0\.1:\d+)", line)
            if match:
                break
        assert match, "".join(seen[-20:])
        info = json.loads(urllib.request.urlopen(f"{match.group(1)}/info/", timeout=30).read())
        assert set(info["models"]) == {"cli-a", "cli-b"}  # two models but no ensemble folder given
        from microcalcai.server.launch import workspace_id

        # /info/ names the workspace by a digest: clients never learn the server's folders.
        assert info["workspace_id"] == workspace_id(tmp_path / "ws") and "workspace" not in info
        assert str(tmp_path) not in json.dumps(info)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) is not None
        try:
            urllib.request.urlopen(f"{match.group(1)}/info/", timeout=5)
            raise AssertionError("the server still answers after serve was stopped")
        except OSError:
            pass
    finally:
        if process.poll() is None:
            process.kill()

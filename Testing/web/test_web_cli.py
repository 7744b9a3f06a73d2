"""`microcalcai web` refuses bad arguments in words before starting anything."""

from __future__ import annotations

import subprocess
import sys


def _web(*args):
    return subprocess.run(
        [sys.executable, "-m", "microcalcai", "web", *args], capture_output=True, text=True, timeout=120
    )


def test_server_address_that_is_not_one_is_refused():
    done = _web("--server", "ftp://", "--port", "8099")
    assert done.returncode == 1
    assert "microcalcai web: error: --server:" in done.stderr and "is not a server address" in done.stderr


def test_port_out_of_range_and_missing_server():
    done = _web("--server", "http://127.0.0.1:8000", "--port", "70000")
    assert done.returncode == 1 and "--port 70000" in done.stderr
    missing = _web()
    assert missing.returncode == 2 and "--server" in missing.stderr


def test_session_count_out_of_range_is_refused():
    done = _web("--server", "http://127.0.0.1:8000", "--sessions", "500")
    assert done.returncode == 1 and "--sessions 500" in done.stderr

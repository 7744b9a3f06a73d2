"""The standard's own checkers: dicom3tools' dciodvfy and dcmtk's dsrdump (Debian packages)."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/install-system-test-deps.sh installs it)")
    return path


def dciodvfy_errors(path) -> list[str]:
    """The error lines dicom3tools' validator prints for a file (warnings are not errors)."""
    run = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def dsrdump(path) -> str:
    run = subprocess.run([_tool("dsrdump"), "+Pl", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout

"""The DICOMweb datastore against a real Orthanc, both in a loopback-only network namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]

HERE = Path(__file__).parent


def _namespace_available() -> str | None:
    if (
        shutil.which("Orthanc") is None
        or not Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so").exists()
    ):
        return "Orthanc with its DICOMweb plugin is not installed (scripts/install-system-test-deps.sh)"
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "a loopback-only network namespace needs root and unshare"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return (
        None if probe.returncode == 0 else f"unshare -n is not permitted here: {probe.stderr.decode()[:200]}"
    )


def test_dicomweb_datastore_with_real_orthanc(tmp_path):
    reason = _namespace_available()
    if reason:
        pytest.skip(reason)
    script = f"ip link set lo up && exec {sys.executable} {HERE / 'dicomweb_probe.py'} {tmp_path}"
    run = subprocess.run(
        ["unshare", "-n", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    result_path = tmp_path / "result.json"
    assert result_path.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(result_path.read_text())
    assert "error" not in result, result["error"]
    assert len(result["uploaded"]) == 4
    assert len(result["ids"]) == 4  # the series Orthanc holds, by QIDO-RS
    assert result["first"]["id"] in result["ids"] and result["first"]["remaining"] == 4
    assert result["infer_status"] == 200, result["infer"]
    infer = result["infer"]
    assert infer["image"]["rows"] == 320 and infer["image"]["cols"] == 256 and 0 <= infer["probability"] <= 1
    assert infer["image"]["spacing_mm"] == [0.07, 0.07]
    assert result["save_status"] == 200 and result["saved"]["annotations"][0]["label"] == "malignant"
    assert result["unknown_status"] == 404

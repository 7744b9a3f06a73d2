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
    _check_results_in_orthanc(result)


def _check_results_in_orthanc(result: dict) -> None:
    """params.dicom_out and a saved label went to Orthanc by STOW-RS; QIDO-RS finds them, also
    after the server restarted."""
    assert result["dicom_out_status"] == 200, result["dicom_out"]
    answer = result["dicom_out"]
    assert "dicom_out_warning" not in answer, answer["dicom_out_warning"]
    assert answer["dicom_out"]["stored"] == "stow-rs"
    sent = {o["sop_instance_uid"]: o for o in answer["dicom_out"]["objects"]}
    assert sorted(o["modality"] for o in sent.values()) == ["SEG", "SR"]
    found = {e["sop"]: e for e in result["results_before_restart"]}
    assert set(sent) <= set(found)  # QIDO finds the SR and the saliency SEG
    study = {o["study_uid"] for o in sent.values()}
    assert {found[s]["study"] for s in sent} == study  # under the mammogram's own study
    sr = next(found[s] for s in sent if found[s]["modality"] == "SR")
    groups = {g["algorithm_name"]: g for g in sr["report"]["groups"]}
    assert groups["ensemble"]["probability"] == pytest.approx(answer["probability"], abs=1e-6)
    seg = next(found[s] for s in sent if found[s]["modality"] == "SEG")
    assert seg["shape"] == [answer["image"]["rows"], answer["image"]["cols"]]
    (source,) = seg["source"]  # both reference the classified mammogram's own instance
    assert source[0] == seg["study"] and source[1] == result["first"]["id"]
    assert {g["referenced_sop_instance_uid"] for g in groups.values()} == {source[2]}
    readers = [e for e in result["results_before_restart"] if e["modality"] == "SR"]
    labels = [e for e in readers if e["report"]["observer"]["type"] == "person"]
    assert len(labels) == 1, labels  # the label saved through the server, as a label SR
    assert result["saved"]["dicom_out"]["stored"] == "stow-rs"
    assert result["saved"]["dicom_out"]["sop_instance_uid"] == labels[0]["sop"]
    (label,) = labels[0]["report"]["groups"]
    assert label["decision"] == "malignant" and label["polygon"][0] == [120.5 - 48, 150.5 - 48]
    # A restart loses nothing: Orthanc still holds every result, the server still has the label.
    after = {e["sop"] for e in result["results_after_restart"]}
    assert after == set(found)
    assert result["label_sr"] and result["first"]["id"] in result["ids_after_restart"]["objects"]
    assert "final" in result["ids_after_restart"]["objects"][result["first"]["id"]]["labels"]

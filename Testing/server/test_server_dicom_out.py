"""`params.dicom_out` on the real server with a local studies folder: files beside the study."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from server_helpers import ROI_SIZE, label_part

sys.path.insert(0, str(Path(__file__).parents[1] / "dicom_out"))
from dicom_tools import dciodvfy_errors  # noqa: E402

pytestmark = pytest.mark.server


def _infer(http, server, image, params):
    return http.post(
        f"{server.url}/infer/ensemble",
        params={"image": image, "output": "json"},
        data={"params": json.dumps(params)},
        files={"_": ("", b"")},
        timeout=180,
    )


def test_infer_stores_sr_and_saliency_beside_the_study(server, http, server_env):
    import highdicom as hd

    from microcalcai.dicom_out.readback import read_report

    roi = {"x": 120, "y": 150, "size": ROI_SIZE}
    response = _infer(http, server, "P1_L_CC", {"roi": roi, "saliency": "gradcam", "dicom_out": True})
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert "dicom_out_warning" not in answer, answer["dicom_out_warning"]
    stored = answer["dicom_out"]
    assert stored["stored"] == "folder" and [o["modality"] for o in stored["objects"]] == ["SR", "SEG"]
    # Relative to the studies folder: an answer never shows the server's disk layout.
    assert all(o["path"].startswith("dicom-out/P1_L_CC/") for o in stored["objects"]), stored
    paths = [server_env["studies"] / o["path"] for o in stored["objects"]]
    assert all(p.is_file() for p in paths)
    assert [dciodvfy_errors(p) for p in paths] == [[], []]
    groups = {g["algorithm_name"]: g for g in read_report(paths[0])["groups"]}
    assert sorted(groups) == sorted([*server_env["models"], "ensemble"])
    assert groups["ensemble"]["probability"] == pytest.approx(answer["probability"], abs=1e-6)
    for name, probability in answer["members"].items():
        assert groups[name]["probability"] == pytest.approx(probability, abs=1e-6)
    assert groups["ensemble"]["decision"] == answer["label"]
    assert hd.seg.segread(paths[1]).pixel_array.shape == (answer["image"]["rows"], answer["image"]["cols"])
    # tiny-a is a demonstration model (as the default models are), so the ensemble is one too
    assert [g["demonstration"] for g in (groups["tiny-a"], groups["tiny-b"], groups["ensemble"])] == [
        True,
        False,
        True,
    ]
    assert hd.seg.segread(paths[1]).SeriesDescription == "MicrocalcAI saliency (DEMONSTRATION MODEL)"
    assert read_report(paths[0])["series_description"] == "MicrocalcAI classification (DEMONSTRATION MODEL)"
    listed = http.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=60).json()
    assert not any("dicom-out" in str(key) for key in listed["objects"])  # results are not images


def test_a_source_without_uids_still_answers_with_a_warning(server, http):
    response = _infer(http, server, "extra_png", {"roi": {"x": 120, "y": 150, "size": 64}, "dicom_out": True})
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert 0 <= answer["probability"] <= 1 and "dicom_out" not in answer
    assert "DICOM results need a DICOM source image" in answer["dicom_out_warning"]


def test_label_with_dicom_out_is_a_label_sr_beside_the_study(server, http, server_env):
    from microcalcai.dicom_out.readback import read_report

    annotation = {
        "roi": {"x": 100, "y": 140, "size": 64},
        "label": "benign",
        "morphology": "coarse popcorn",
        "distribution": "regional",
        "time": "2026-12-01T09:30:00Z",
    }
    saved = http.put(
        f"{server.url}/datastore/label",
        params={"image": "P2_R_MLO", "tag": "final"},
        data={"params": json.dumps({"client_id": "reader-7", "dicom_out": True})},
        files=label_part(annotation),
        timeout=60,
    )
    assert saved.status_code == 200, saved.text[:500]
    stored = saved.json()["dicom_out"]
    assert stored["stored"] == "folder" and stored["modality"] == "SR", stored
    assert stored["path"].startswith("dicom-out/P2_R_MLO/sr-"), stored
    path = server_env["studies"] / stored["path"]
    assert dciodvfy_errors(path) == []
    report = read_report(path)
    assert report["observer"] == {"type": "person", "name": "reader-7"}
    assert report["content_datetime"] == "20261201093000"
    (group,) = report["groups"]
    assert (group["decision"], group["morphology"], group["distribution"]) == (
        "benign",
        "coarse_popcorn",
        "regional",
    )
    # Without the option a local label stays JSON only, as before.
    plain = http.put(
        f"{server.url}/datastore/label",
        params={"image": "P2_R_MLO", "tag": "final"},
        files=label_part({**annotation, "label": "malignant"}),
        timeout=60,
    )
    assert plain.status_code == 200 and "dicom_out" not in plain.json()
    assert len(list(path.parent.glob("sr-*.dcm"))) == 1


def test_an_upload_is_classified_but_not_stored(server, http, server_env):
    blob = (server_env["studies"] / "P0_L_CC.dcm").read_bytes()
    response = http.post(
        f"{server.url}/infer/tiny-a",
        params={"image": "", "output": "json"},
        data={"params": json.dumps({"roi": {"x": 120, "y": 150, "size": 64}, "dicom_out": True})},
        files={"file": ("P0_L_CC.dcm", blob, "application/dicom")},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert 0 <= answer["probability"] <= 1 and "dicom_out" not in answer
    assert "results are stored for datastore images only" in answer["dicom_out_warning"]

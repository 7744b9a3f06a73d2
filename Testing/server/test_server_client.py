"""The official `monailabel.client.MONAILabelClient` against the server."""

from __future__ import annotations

import json

import nrrd
import pytest
from server_helpers import ROI_SIZE

pytestmark = pytest.mark.server


def test_official_monailabel_client(server, tmp_path):
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    info = client.info()
    assert "ensemble" in info["models"] and info["labels"] == ["benign", "malignant"]

    roi = {"x": 128, "y": 150, "size": ROI_SIZE}
    saliency_file, params = client.infer("ensemble", "P2_L_CC", {"roi": roi})
    assert params["model"] == "ensemble" and 0 <= params["probability"] <= 1
    data, header = nrrd.read(saliency_file, index_order="C")
    assert data.shape == (ROI_SIZE, ROI_SIZE)
    assert list(header["space origin"]) == params["saliency"]["origin_xy"]

    sample = client.next_sample("first", {})
    assert sample["id"] and set(sample["roi"]) == {"x", "y", "size"}

    label_file = tmp_path / "label.json"
    label_file.write_text(json.dumps({"roi": sample["roi"], "label": "benign", "morphology": "punctate"}))
    saved = client.save_label(sample["id"], str(label_file), tag="final", params={"annotator": "client-test"})
    assert saved["image"] == sample["id"]
    assert any(a["roi"] == sample["roi"] and a["annotator"] == "client-test" for a in saved["annotations"])
    following = client.next_sample("first", {})
    assert (following["id"], following["roi"]) != (sample["id"], sample["roi"])

    started = client.train_start(
        "tiny-a", {"max_epochs": 1, "include_manifest_labels": True, "val_fraction": 0.5}
    )
    assert started["status"] in ("SUBMITTED", "RUNNING")
    assert client.train_status()["status"] in ("SUBMITTED", "RUNNING", "DONE", "ERROR")
    client.train_stop()

"""Infer over HTTP on the real server: every hosted model and the ensemble, JSON and saliency."""

from __future__ import annotations

import io

import numpy as np
import pytest
from server_helpers import INPUT_SIZE, ROI_SIZE, post_infer
from server_helpers import multipart_answer as _multipart

pytestmark = pytest.mark.server


def _infer(http, server, model, image, params, output="all", files=None):
    return post_infer(http, server, model, image, params, output=output, files=files, timeout=120)


def test_info_lists_models_with_versions_and_thresholds(server, http, server_env):
    info = http.get(f"{server.url}/info/", timeout=30).json()
    assert set(info["models"]) == {*server_env["models"], "ensemble"}
    for name in server_env["models"]:
        model = info["models"][name]
        assert model["type"] == "classification" and model["dimension"] == 2
        assert model["labels"] == {"benign": 0, "malignant": 1}
        assert model["version"] == "1" and model["threshold"] == 0.5
        assert model["arch"] == "tf_efficientnet_lite0" and model["input_size"] == INPUT_SIZE
        assert "gradcam" in model["saliency_methods"]
    assert info["models"]["ensemble"]["members"] == server_env["models"]
    assert set(info["strategies"]) == {"auto", "uncertain", "random", "typical", "first"}
    assert set(info["trainers"]) == set(server_env["models"])


def test_info_says_which_models_are_demonstrations(server, http):
    """tiny-a carries the default models' demonstration mark, tiny-b none; an ensemble with a
    demonstration member is one too."""
    from microcalcai.server.bootstrap import INTENDED_USE

    models = http.get(f"{server.url}/info/", timeout=30).json()["models"]
    assert models["tiny-a"]["demonstration"] is True and models["tiny-a"]["intended_use"] == INTENDED_USE
    assert "not for real images" in models["tiny-a"]["intended_use"]
    assert (
        models["tiny-b"]["demonstration"] is False
        and "not for real images" not in models["tiny-b"]["intended_use"]
    )
    assert models["ensemble"]["demonstration"] is True and models["ensemble"]["intended_use"] == INTENDED_USE


@pytest.mark.parametrize("model", ["tiny-a", "tiny-b", "ensemble"])
def test_infer_json_each_model(server, http, model):
    roi = {"x": 130, "y": 150, "size": ROI_SIZE}
    response = _infer(http, server, model, "P1_L_CC", {"roi": roi}, output="json")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == model and answer["version"] == "1"
    assert 0.0 <= answer["probability"] <= 1.0
    assert answer["label"] == ("malignant" if answer["probability"] >= answer["threshold"] else "benign")
    assert answer["roi"] == roi and answer["saliency"] is None
    assert answer["image"] == {"id": "P1_L_CC", "rows": 320, "cols": 256, "spacing_mm": [0.07, 0.07]}
    assert answer["prediction"][1]["score"] == pytest.approx(answer["probability"])
    assert answer["latencies"]["total"] > 0
    if model == "ensemble":
        assert set(answer["members"]) == {"tiny-a", "tiny-b"}
        assert answer["probability"] == pytest.approx(np.mean(list(answer["members"].values())), abs=1e-6)
    else:
        assert answer["members"] == {model: pytest.approx(answer["probability"])}


def test_ensemble_equals_mean_of_members_answers(server, http):
    params = {"roi": {"x": 100, "y": 200, "size": ROI_SIZE}}
    single = [
        _infer(http, server, m, "P2_R_MLO", params, output="json").json()["probability"]
        for m in ("tiny-a", "tiny-b")
    ]
    ensemble = _infer(http, server, "ensemble", "P2_R_MLO", params, output="json").json()
    assert ensemble["probability"] == pytest.approx(np.mean(single), abs=1e-6)


def test_saliency_file_has_the_rois_size_and_geometry(server, http):
    import nrrd

    roi = {"x": 40.4, "y": 300, "size": ROI_SIZE}  # overhangs the left and bottom borders
    response = _infer(http, server, "ensemble", "P0_L_CC", {"roi": roi, "saliency": "gradcam++"})
    assert response.status_code == 200, response.text[:300]
    answer, blob = _multipart(response)
    assert blob, "no saliency file in the multipart answer"
    path = _save(blob)
    data, header = nrrd.read(str(path), index_order="C")
    assert data.shape == (ROI_SIZE, ROI_SIZE) and data.dtype == np.float32
    assert 0.0 <= data.min() and data.max() <= 1.0 and np.ptp(data) > 0
    x0, y0 = 40 - ROI_SIZE // 2, 300 - ROI_SIZE // 2
    assert list(header["space origin"]) == [x0, y0]
    assert np.allclose(header["space directions"], np.eye(2))
    assert answer["saliency"]["origin_xy"] == [x0, y0] and answer["saliency"]["shape"] == [ROI_SIZE, ROI_SIZE]
    assert answer["saliency"]["method"] == "gradcam++"
    assert header["microcalcai_model"] == "ensemble"
    assert float(header["microcalcai_probability"]) == pytest.approx(answer["probability"], abs=1e-5)


def test_output_image_returns_only_the_nrrd(server, http):
    response = _infer(
        http, server, "tiny-a", "P3_R_MLO", {"roi": {"x": 128, "y": 160, "size": 64}}, output="image"
    )
    assert response.status_code == 200
    assert response.content[:4] == b"NRRD"


def test_uploaded_crop_and_full_image_agree_with_datastore(server, http, server_env):
    """The same pixels give the same probability by id, as a full upload + ROI and as a crop."""
    import pydicom
    from PIL import Image

    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    path = server_env["studies"] / "P1_R_MLO.dcm"
    roi = {"x": 120, "y": 170, "size": ROI_SIZE}

    def upload(name: str, blob: bytes, params: dict):
        response = _infer(
            http, server, "tiny-a", "", params, output="json", files={"file": (name, blob, "x/y")}
        )
        assert response.status_code == 200, f"{name}: {response.text}"
        return response.json()

    by_id = _infer(http, server, "tiny-a", "P1_R_MLO", {"roi": roi}, output="json").json()
    full = upload("mammo.dcm", path.read_bytes(), {"roi": roi})
    assert full["probability"] == pytest.approx(by_id["probability"], abs=1e-6)
    assert pydicom.dcmread(path).Modality == "MG"
    crop = crop_roi(read_image(path), (roi["x"], roi["y"]), size_px=ROI_SIZE).pixels
    png = io.BytesIO()
    Image.fromarray(np.round(crop * 65535).astype(np.uint16)).save(png, format="PNG")
    as_crop = upload("crop.png", png.getvalue(), {})
    assert as_crop["roi"]["size"] == ROI_SIZE
    assert as_crop["probability"] == pytest.approx(by_id["probability"], abs=2e-3)

    # The same crop as NRRD (float, exact) and as an 8-bit PGM (the other upload formats).
    import nrrd

    nrrd_path = _save(b"")
    nrrd.write(str(nrrd_path), crop.astype(np.float32), index_order="C")
    as_nrrd = upload("crop.nrrd", nrrd_path.read_bytes(), {})
    assert as_nrrd["probability"] == pytest.approx(by_id["probability"], abs=2e-3)
    pgm = io.BytesIO()
    Image.fromarray(np.round(crop * 255).astype(np.uint8)).save(pgm, format="PPM")
    assert pgm.getvalue()[:2] == b"P5"
    as_pgm = upload("crop.pgm", pgm.getvalue(), {})
    assert as_pgm["image"]["rows"] == ROI_SIZE and 0 <= as_pgm["probability"] <= 1


def test_real_cbis_ddsm_dicom(server, http):
    response = _infer(
        http, server, "ensemble", "cbis_real", {"roi": {"x": 1300, "y": 2200, "size": 256}}, output="json"
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["image"]["rows"] > 4000 and 0 <= answer["probability"] <= 1


def _save(blob: bytes):
    import tempfile
    from pathlib import Path

    handle = tempfile.NamedTemporaryFile(suffix=".nrrd", delete=False)
    handle.write(blob)
    handle.close()
    return Path(handle.name)


def test_four_concurrent_clients_get_no_errors(server, server_env):
    """A small version of the load benchmark (benchmarks/bench_server.py: 4 x 50)."""
    import threading

    import requests

    results, lock = [], threading.Lock()

    def client(index: int) -> None:
        with requests.Session() as session:
            for i in range(5):
                roi = {"x": 100 + index * 5 + i, "y": 150, "size": ROI_SIZE}
                response = _infer(session, server, "ensemble", f"P{index}_L_CC", {"roi": roi}, output="json")
                with lock:
                    results.append((response.status_code, response.json().get("roi"), roi))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(results) == 20
    assert all(status == 200 for status, _, _ in results), [r for r in results if r[0] != 200][:3]
    assert all(answered == asked for _, answered, asked in results)  # no answer crossed to another request

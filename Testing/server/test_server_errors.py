"""Bad input: each a 4xx JSON answer with a message naming the problem, and the server serves on."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from server_helpers import ROI_SIZE, error_detail

pytestmark = pytest.mark.server

ROI = {"roi": {"x": 100, "y": 100, "size": ROI_SIZE}}


def _post(http, server, image="P0_L_CC", params=ROI, files=None, model="tiny-a", **kwargs):
    return http.post(
        f"{server.url}/infer/{model}",
        params={"image": image, "output": "json"},
        data={"params": json.dumps(params)},
        files=files or {"_": ("", b"")},
        timeout=60,
        **kwargs,
    )


def _big_png_header(rows: int, cols: int) -> bytes:
    """A valid PNG signature and IHDR claiming rows x cols pixels, with a tiny truncated body."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
        + b"\x00" * 64
    )


def _huge_dicom(tmp_path) -> bytes:
    from microcalcai.io import write_mg_dicom

    path = write_mg_dicom(tmp_path / "small.dcm", np.zeros((8, 8), np.uint16), spacing_mm=(0.1, 0.1))
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows = 60000  # header claims far more than the pixel data holds
    ds.Columns = 60000
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def truncated_dicom(server_env) -> bytes:
    blob = (server_env["studies"] / "P0_L_CC.dcm").read_bytes()
    return blob[: len(blob) // 2]


def test_bad_inputs_are_4xx_json_with_a_message(server, http, truncated_dicom, tmp_path):
    cases = {
        "unknown image id": (_post(http, server, image="no_such_image"), 404, "unknown image id"),
        "escaping id": (_post(http, server, image="../studies/P0_L_CC"), 400, "contains a path"),
        "absolute server path": (_post(http, server, image="/etc/passwd"), 400, "contains a path"),
        "path in params": (
            _post(http, server, params={**ROI, "image": "/etc/hostname"}),
            400,
            "contains a path",
        ),
        "non-image upload": (
            _post(http, server, image="", files={"file": ("notes.png", b"hello, not an image", "image/png")}),
            415,
            "not an image",
        ),
        "truncated DICOM": (
            _post(http, server, image="", files={"file": ("cut.dcm", truncated_dicom, "application/dicom")}),
            400,
            "cut.dcm",
        ),
        "ROI outside": (
            _post(http, server, params={"roi": {"x": 5000, "y": 10, "size": 64}}),
            400,
            "outside",
        ),
        "ROI negative size": (
            _post(http, server, params={"roi": {"x": 50, "y": 10, "size": -4}}),
            400,
            "size",
        ),
        "no ROI": (_post(http, server, params={}), 400, "params.roi is required"),
        "huge PNG header": (
            _post(
                http,
                server,
                image="",
                files={"file": ("big.png", _big_png_header(100000, 100000), "image/png")},
            ),
            413,
            "100000",
        ),
        "huge DICOM header": (
            _post(
                http,
                server,
                image="",
                files={"file": ("big.dcm", _huge_dicom(tmp_path), "application/dicom")},
            ),
            413,
            "60000",
        ),
        "wrong content type": (
            http.post(
                f"{server.url}/infer/tiny-a?image=P0_L_CC",
                data=json.dumps(ROI),
                headers={"Content-Type": "application/json"},
                timeout=30,
            ),
            415,
            "multipart/form-data",
        ),
        "JSON params broken": (
            http.post(
                f"{server.url}/infer/tiny-a?image=P0_L_CC",
                data={"params": "{roi:"},
                files={"_": ("", b"")},
                timeout=30,
            ),
            400,
            "JSON",
        ),
        "unknown model": (_post(http, server, model="resnet9000"), 404, "unknown model"),
        "unknown saliency": (
            http.post(
                f"{server.url}/infer/tiny-a",
                params={"image": "P0_L_CC"},
                data={"params": json.dumps({**ROI, "saliency": "magic"})},
                files={"_": ("", b"")},
                timeout=30,
            ),
            400,
            "gradcam",
        ),
        "text body to activelearning": (
            http.post(
                f"{server.url}/activelearning/first",
                data="x",
                headers={"Content-Type": "text/plain"},
                timeout=30,
            ),
            415,
            "json",
        ),
        "unknown strategy": (
            http.post(f"{server.url}/activelearning/nonsense", json={}, timeout=30),
            404,
            "unknown strategy",
        ),
    }
    failures = []
    for name, (response, status, words) in cases.items():
        if response.status_code != status:
            failures.append(f"{name}: status {response.status_code} != {status}: {response.text[:200]}")
            continue
        detail = error_detail(response)
        if words.lower() not in detail.lower():
            failures.append(f"{name}: {words!r} not in {detail!r}")
    assert not failures, "\n".join(failures)
    # ...and the server still answers a good request.
    good = _post(http, server)
    assert good.status_code == 200 and 0 <= good.json()["probability"] <= 1

"""Hostile requests against a running server, as a table: what is sent and what must come back.

Used by test_server_hostile.py (every row must hold) and benchmarks/bench_hostile.py (how many
inputs get a clean 4xx, and the server's memory under hostile uploads). Each row is sent with the
server's token unless it says otherwise. `expect` is an exact status or a class like "4xx".
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from server_helpers import label_part

TOKEN = "hostile-test-token"
ALLOWED_ORIGIN = "https://viewer.example.org"
UPLOAD_LIMIT_MB = 4
IMAGE = "P0_L_CC"  # a stored study (server_helpers.write_studies)
ROI = {"x": 100, "y": 100, "size": 64}


@dataclass
class Row:
    name: str
    method: str
    path: str
    expect: int | str
    params: dict | None = None
    data: object = None
    files: dict | None = None
    json_body: object = None
    headers: dict = field(default_factory=dict)
    auth: bool = True
    raw_url: str | None = None  # sent as is (percent-encodings the client must not rewrite)
    check: object = None  # extra check(response) -> problem text or None


def png_bytes(rows: int = 48, cols: int = 40, seed: int = 0) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, size=(rows, cols), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def huge_png(rows: int, cols: int) -> bytes:
    """A real, complete 8-bit grey PNG of rows x cols black pixels: tiny on disk, huge decoded."""
    compressor = zlib.compressobj(9)
    line = b"\x00" * (cols + 1)  # filter byte + one row
    parts = [compressor.compress(line) for _ in range(rows)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def truncated_png() -> bytes:
    blob = png_bytes(200, 200, seed=3)
    return blob[: len(blob) // 3]


def dicom_without_pixels(tmp: Path) -> bytes:
    import pydicom

    from microcalcai.io import write_mg_dicom

    path = write_mg_dicom(tmp / "nopixels.dcm", np.zeros((8, 8), np.uint16), spacing_mm=(0.1, 0.1))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=True)
    return buffer.getvalue()


def dicom_with_rescale(tmp: Path, slope: str, intercept: str) -> bytes:
    """A valid MG DICOM whose Rescale Slope/Intercept make every pixel NaN or infinite."""
    import pydicom

    from microcalcai.io import write_mg_dicom

    path = write_mg_dicom(tmp / "rescaled.dcm", np.full((96, 96), 900, np.uint16), spacing_mm=(0.1, 0.1))
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=True)
    return buffer.getvalue()


def detached_nrrd(target: str) -> bytes:
    return (
        f"NRRD0004\ntype: uint8\ndimension: 2\nsizes: 4 4\nencoding: raw\ndata file: {target}\n\n"
    ).encode()


def chunked(total: int, block: int = 1 << 20):
    """A body generator: requests sends it with Transfer-Encoding: chunked, no Content-Length."""
    sent = 0
    head = b"\x89PNG\r\n\x1a\n"
    yield head
    sent += len(head)
    while sent < total:
        piece = min(block, total - sent)
        yield b"\x00" * piece
        sent += piece


def multipart_chunked(total: int):
    """A multipart/form-data body of about `total` bytes, streamed in chunks."""
    boundary = "hostileboundary"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    end = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield start
        yield from chunked(total)
        yield end

    return body(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _png_file(name="image.png", blob=None):
    return {"file": (name, blob if blob is not None else png_bytes(), "image/png")}


BAD_IDS = {
    "dot-dot": "..",
    "dot": ".",
    "parent file": "../outside/evil",
    "two parents": "../../outside/evil",
    "absolute": "/OUTSIDE/evil",
    "backslash": "..\\outside\\evil",
    "folder": "a/b",
    "hidden": ".lock",
    "dash first": "-rf",
    "NUL": "evil\x00.png",
    "300 chars": "a" * 300,
    "space": "my image",
    "unicode": "évil",
    "newline": "evil\nname",
    "trailing newline": "evil\n",
    "url-encoded slash": "..%2Foutside%2Fevil",
}
BAD_TAGS = {
    "tag parent": "../../outside",
    "tag absolute": "/OUTSIDE",
    "tag folder": "final/x",
    "tag dot-dot": "..",
    "tag NUL": "final\x00",
    "tag 300": "t" * 300,
    "tag dot": ".",
    "tag trailing newline": "final\n",
}


def rows(outside: Path, tmp: Path) -> list[Row]:
    """The table. `outside` is a folder no request may write to; `tmp` a scratch folder."""
    out: list[Row] = []

    def bad_id(value: str) -> str:
        return value.replace("/OUTSIDE", str(outside))

    # 1. ids that are paths, on every route that takes one
    for name, raw in BAD_IDS.items():
        value = bad_id(raw)
        out += [
            Row(
                f"PUT image id {name}",
                "PUT",
                "/datastore/image",
                "4xx",
                params={"image": value},
                files=_png_file("evil.png"),
            ),
            Row(f"GET image id {name}", "GET", "/datastore/image", "4xx", params={"image": value}),
            Row(f"GET image info id {name}", "GET", "/datastore/image/info", "4xx", params={"image": value}),
            Row(
                f"PUT label image {name}",
                "PUT",
                "/datastore/label",
                "4xx",
                params={"image": value},
                files=label_part({"roi": ROI, "label": "benign"}),
            ),
            Row(
                f"GET label id {name}",
                "GET",
                "/datastore/label",
                "4xx",
                params={"label": value, "tag": "final"},
            ),
            Row(
                f"infer image {name}",
                "POST",
                "/infer/tiny-a",
                "4xx",
                params={"image": value, "output": "json"},
                data={"params": json.dumps({"roi": ROI})},
                files={"_": ("", b"")},
            ),
        ]
    out += [
        Row(
            "DELETE label id parent",
            "DELETE",
            "/datastore/label",
            "4xx",
            params={"id": "../x", "tag": "final"},
        ),
        Row(
            "DELETE annotation id parent",
            "DELETE",
            "/datastore/label/annotation",
            "4xx",
            params={"image": "../x", "x": 1, "y": 1, "size": 64},
        ),
        Row(
            "raw %2F id on GET image",
            "GET",
            "",
            "4xx",
            raw_url="/datastore/image?image=..%2F..%2Fetc%2Fpasswd",
        ),
        Row(
            "raw %2F id in infer path",
            "POST",
            "",
            "4xx",
            raw_url="/infer/..%2F..%2Ftiny-a?image=P0_L_CC&output=json",
            data={"params": json.dumps({"roi": ROI})},
            files={"_": ("", b"")},
        ),
        Row(
            "upload file name with parent: its last part names it",
            "PUT",
            "/datastore/image",
            200,
            files=_png_file("../../evil.png"),
            check=lambda r: None if r.json()["image"] == "evil" else r.text,
        ),
        Row(
            "params.image absolute",
            "POST",
            "/infer/tiny-a",
            400,
            params={"image": IMAGE, "output": "json"},
            data={"params": json.dumps({"roi": ROI, "image": "/etc/hostname"})},
            files={"_": ("", b"")},
        ),
        Row(
            "params.image temp file",
            "POST",
            "/infer/tiny-a",
            400,
            params={"image": IMAGE, "output": "json"},
            data={"params": json.dumps({"roi": ROI, "image": "/tmp/tmpabcdef.png"})},
            files={"_": ("", b"")},
        ),
    ]
    # 2. label tags that are paths
    for name, tag in BAD_TAGS.items():
        tag = bad_id(tag)
        out += [
            Row(
                f"PUT label {name}",
                "PUT",
                "/datastore/label",
                400,
                params={"image": IMAGE, "tag": tag},
                files=label_part({"roi": ROI, "label": "benign"}),
            ),
            Row(f"GET label {name}", "GET", "/datastore/label", 400, params={"label": IMAGE, "tag": tag}),
            Row(f"DELETE label {name}", "DELETE", "/datastore/label", 400, params={"id": IMAGE, "tag": tag}),
        ]
    # 3. params of the wrong shape
    infer = dict(
        method="POST", path="/infer/tiny-a", params={"image": IMAGE, "output": "json"}, files={"_": ("", b"")}
    )
    for name, text in {
        "array": "[1, 2]",
        "string": '"roi"',
        "number": "42",
        "null": "null",
        "broken": "{roi:",
        "deep": "[" * 5000 + "]" * 5000,
    }.items():
        out.append(Row(f"infer params {name}", expect=400, data={"params": text}, **infer))
        out.append(
            Row(
                f"label params {name}",
                "PUT",
                "/datastore/label",
                400,
                params={"image": IMAGE},
                data={"params": text},
                files=label_part({"roi": ROI, "label": "benign"}),
            )
        )
    out.append(
        Row(
            "infer params naming another model",
            expect=400,
            data={"params": json.dumps({"roi": ROI, "model": "tiny-b"})},
            check=lambda r: None if "params.model" in r.json()["detail"] else r.json()["detail"],
            **infer,
        )
    )
    out.append(
        Row(
            "image params array",
            "PUT",
            "/datastore/image",
            400,
            params={"image": "arr"},
            data={"params": "[1]"},
            files=_png_file(),
        )
    )
    out.append(
        Row(
            "image params unknown key",
            "PUT",
            "/datastore/image",
            400,
            params={"image": "unk"},
            data={"params": json.dumps({"path": "/etc"})},
            files=_png_file(),
        )
    )
    # 4. numbers: huge, infinite, not numbers
    for name, roi_value in {
        "x 10**400": {"x": 10**400, "y": 5, "size": 64},
        "y -10**400": {"x": 5, "y": -(10**400), "size": 64},
        "size 10**400": {"x": 5, "y": 5, "size": 10**400},
        "x 1e999": "INF",
        "x NaN": "NAN",
        "x text": {"x": "12", "y": 5, "size": 64},
        "x bool": {"x": True, "y": 5, "size": 64},
        "x list": {"x": [1], "y": 5, "size": 64},
        "size 0": {"x": 5, "y": 5, "size": 0},
        "size fraction": {"x": 5, "y": 5, "size": 64.5},
        "roi list": [1, 2, 3],
        "extra key": {"x": 5, "y": 5, "size": 64, "z": 1},
    }.items():
        if roi_value == "INF":
            text = '{"roi": {"x": 1e999, "y": 5, "size": 64}}'
        elif roi_value == "NAN":
            text = '{"roi": {"x": NaN, "y": 5, "size": 64}}'
        else:
            text = json.dumps({"roi": roi_value})
        out.append(Row(f"infer roi {name}", expect=400, data={"params": text}, **infer))
        out.append(
            Row(
                f"label roi {name}",
                "PUT",
                "/datastore/label",
                400,
                params={"image": IMAGE},
                files=label_part(
                    text.encode() if roi_value in ("INF", "NAN") else {"roi": roi_value, "label": "benign"}
                ),
            )
        )
    # 5. ROIs off the image, at save time
    for name, roi_value in {
        "x 1e9": {"x": 1e9, "y": 10, "size": 64},
        "y past the last row": {"x": 10, "y": 5000, "size": 64},
        "negative x": {"x": -40, "y": 10, "size": 64},
    }.items():
        out.append(
            Row(
                f"label off image {name}",
                "PUT",
                "/datastore/label",
                400,
                params={"image": IMAGE},
                files=label_part({"roi": roi_value, "label": "malignant"}),
                check=lambda r: None if "outside" in r.json()["detail"] else "no 'outside' in detail",
            )
        )
    out += [
        Row(
            "label not JSON",
            "PUT",
            "/datastore/label",
            415,
            params={"image": IMAGE},
            files={"label": ("mask.nii.gz", b"\x1f\x8b garbage", "application/gzip")},
            # named as the client named it, not by the server's own copy
            check=lambda r: None if "'mask.nii.gz'" in r.json()["detail"] else r.json()["detail"],
        ),
        Row(
            "label over 1 MB",
            "PUT",
            "/datastore/label",
            413,
            params={"image": IMAGE},
            files=label_part(b" " * (2 << 20)),
            check=lambda r: None if "one annotation" in r.json()["detail"] else r.json()["detail"],
        ),
        Row(
            "label unknown value",
            "PUT",
            "/datastore/label",
            400,
            params={"image": IMAGE},
            files=label_part({"roi": ROI, "label": "maybe"}),
        ),
        Row(
            "label unknown field",
            "PUT",
            "/datastore/label",
            400,
            params={"image": IMAGE},
            files=label_part({"roi": ROI, "label": "benign", "path": "/etc"}),
        ),
        Row(
            "label without file part",
            "PUT",
            "/datastore/label",
            400,
            params={"image": IMAGE},
            data={"params": "{}"},
            files={"_": ("", b"")},
        ),
        Row(
            "label for unknown image",
            "PUT",
            "/datastore/label",
            404,
            params={"image": "nobody"},
            files=label_part({"roi": ROI, "label": "benign"}),
        ),
        Row(
            "remove annotation that is not there",
            "DELETE",
            "/datastore/label/annotation",
            404,
            params={"image": IMAGE, "x": 3, "y": 3, "size": 64},
        ),
        Row(
            "remove annotation size text",
            "DELETE",
            "/datastore/label/annotation",
            422,
            params={"image": IMAGE, "x": 3, "y": 3, "size": "big"},
        ),
    ]
    # 6. infer: outputs, sessions, parts, missing image
    out += [
        Row(
            "infer output dicom_seg",
            expect=400,
            **{**infer, "params": {"image": IMAGE, "output": "dicom_seg"}},
            data={"params": json.dumps({"roi": ROI})},
        ),
        Row(
            "infer output xml",
            expect=400,
            **{**infer, "params": {"image": IMAGE, "output": "xml"}},
            data={"params": json.dumps({"roi": ROI})},
        ),
        Row(
            "infer session_id",
            expect=400,
            **{**infer, "params": {"image": IMAGE, "session_id": "abc"}},
            data={"params": json.dumps({"roi": ROI})},
        ),
        Row(
            "infer label part",
            "POST",
            "/infer/tiny-a",
            400,
            params={"image": IMAGE, "output": "json"},
            data={"params": json.dumps({"roi": ROI})},
            files={"label": ("l.json", b"{}", "application/json")},
        ),
        Row(
            "infer no image no file",
            "POST",
            "/infer/tiny-a",
            400,
            params={"output": "json"},
            data={"params": json.dumps({"roi": ROI})},
            files={"_": ("", b"")},
        ),
        Row(
            "infer unknown model",
            "POST",
            "/infer/resnet9000",
            404,
            params={"image": IMAGE, "output": "json"},
            data={"params": json.dumps({"roi": ROI})},
            files={"_": ("", b"")},
        ),
        Row(
            "infer 300-char model",
            "POST",
            "/infer/" + "m" * 300,
            404,
            params={"image": IMAGE},
            data={"params": json.dumps({"roi": ROI})},
            files={"_": ("", b"")},
        ),
        Row(
            "infer JSON body",
            "POST",
            "/infer/tiny-a",
            415,
            params={"image": IMAGE},
            data=json.dumps({"roi": ROI}),
            headers={"Content-Type": "application/json"},
        ),
    ]
    # 7. uploads that are no image, or too big for memory or for the limit
    nrrd_target = str(outside / "secret.raw")
    uploads = {
        "text": (b"import os\nos.system('id')\n", 415),
        "zip": (b"PK\x03\x04" + b"\x00" * 64, 415),
        "jpeg": (b"\xff\xd8\xff\xe0" + b"\x00" * 64, 415),
        "empty": (b"", 415),
        "PNG signature only": (b"\x89PNG\r\n\x1a\n", 400),
        "truncated PNG": (truncated_png(), 400),
        "PNG 13000 x 13000": (huge_png(13000, 13000), 413),
        "PNG header 100000 x 100000": (
            huge_png(1, 1)[:16] + struct.pack(">II", 100000, 100000) + b"\0" * 40,
            413,
        ),
        "DICOM without pixels": (dicom_without_pixels(tmp), 400),
        "PGM header 19999 x 19999": (b"P5\n19999 19999\n65535\n" + b"\0" * 64, 413),
        "DICOM rescale NaN": (dicom_with_rescale(tmp, "1", "nan"), 400),
        "DICOM rescale overflowing": (dicom_with_rescale(tmp, "1e308", "0"), 400),
        "NRRD detached data file": (detached_nrrd(nrrd_target), 400),
    }
    for name, (blob, status) in uploads.items():
        out.append(
            Row(
                f"infer upload {name}",
                "POST",
                "/infer/tiny-a",
                status or 400,
                params={"output": "json"},
                data={"params": json.dumps({"roi": {"x": 1, "y": 1, "size": 64}})},
                files={"file": (f"{name}.png", blob, "image/png")},
            )
        )
        out.append(
            Row(
                f"store upload {name}",
                "PUT",
                "/datastore/image",
                status or "4xx",
                params={"image": "up_" + name.replace(" ", "_")[:40]},
                files={"file": (f"{name}.png", blob, "image/png")},
            )
        )
    body, headers = multipart_chunked((UPLOAD_LIMIT_MB + 2) << 20)
    body2, headers2 = multipart_chunked((UPLOAD_LIMIT_MB + 2) << 20)
    out += [
        Row(
            "chunked upload over the limit (infer)",
            "POST",
            "/infer/tiny-a",
            413,
            params={"output": "json"},
            data=body,
            headers=headers,
        ),
        Row(
            "chunked upload over the limit (store)",
            "PUT",
            "/datastore/image",
            413,
            params={"image": "chunky"},
            data=body2,
            headers=headers2,
        ),
        Row(
            "declared upload over the limit",
            "PUT",
            "/datastore/image",
            413,
            params={"image": "big"},
            files={
                "file": (
                    "big.png",
                    b"\x89PNG\r\n\x1a\n" + b"\0" * ((UPLOAD_LIMIT_MB << 20) + 10),
                    "image/png",
                )
            },
        ),
        Row(
            "chunked JSON to activelearning over 1 MB",
            "POST",
            "/activelearning/first",
            413,
            data=(b"[" * 65536 for _ in range(32)),
            headers={"Content-Type": "application/json"},
        ),
        Row(
            "300-char file name",
            "POST",
            "/infer/tiny-a",
            200,
            params={"output": "json"},
            data={"params": "{}"},
            files={"file": ("n" * 300 + ".png", png_bytes(), "image/png")},
        ),
        Row(
            "many-suffix file name",
            "POST",
            "/infer/tiny-a",
            200,
            params={"output": "json"},
            data={"params": "{}"},
            files={"file": ("a.b.c.d.e.f.g.h.nii.gz.png", png_bytes(), "image/png")},
        ),
        Row(
            "PUT image without file part",
            "PUT",
            "/datastore/image",
            400,
            params={"image": "nofile"},
            data={"params": "{}"},
            files={"_": ("", b"")},
        ),
        Row(
            "PUT image over an existing study",
            "PUT",
            "/datastore/image",
            409,
            params={"image": IMAGE},
            files=_png_file(),
        ),
        Row(
            "PUT image overwrite not a bool",
            "PUT",
            "/datastore/image",
            422,
            params={"image": "ow", "overwrite": "perhaps"},
            files=_png_file(),
        ),
    ]
    # 8. routes that are off
    for method, path, status in [
        ("GET", "/logs/", 404),
        ("GET", "/logs/gpu", 404),
        ("GET", "/datastore/dataset", 404),
        ("DELETE", "/datastore/image?id=P0_L_CC", 405),
        ("DELETE", "/datastore/?id=P0_L_CC", 405),
        ("PUT", "/datastore/", 405),
        ("HEAD", "/datastore/image?image=P0_L_CC", 405),
        ("PUT", "/datastore/image/info?image=P0_L_CC", 405),
        ("GET", "/datastore/label/info?label=x&tag=final", 404),
        ("PUT", "/datastore/label/info?label=x&tag=final", 404),
        ("PUT", "/datastore/updatelabelinfo", 404),
        ("POST", "/batch/infer/tiny-a", 404),
        ("GET", "/batch/infer", 404),
        ("DELETE", "/batch/infer", 404),
        ("POST", "/scoring/", 404),
        ("POST", "/scoring/dice", 404),
        ("GET", "/scoring/", 404),
        ("GET", "/model/tiny-a", 404),
        ("PUT", "/model/tiny-a", 404),
        ("DELETE", "/model/tiny-a", 404),
        ("GET", "/model/info/tiny-a", 404),
        ("POST", "/infer/wsi/tiny-a", 404),
        ("POST", "/infer/wsi_v2/tiny-a", 404),
        ("GET", "/session/abc", 404),
        ("PUT", "/session/", 404),
        ("GET", "/ohif/index.html", 404),
        ("GET", "/proxy/dicom/qido/studies", 404),
        ("POST", "/reload", 404),
        ("GET", "/static/favicon.ico", 404),
    ]:
        out.append(Row(f"off: {method} {path}", method, "", status, raw_url=path))
    out += [
        Row("datastore output=train (server paths)", "GET", "/datastore/", 400, params={"output": "train"}),
        Row("datastore output=all has no paths", "GET", "/datastore/", 200, params={"output": "all"}),
        Row("info has no paths", "GET", "/info/", 200),
        Row(
            "OpenAPI schema lists no route that is off",
            "GET",
            "/openapi.json",
            200,
            check=lambda r: next(
                (p for p in ("/logs", "/session", "/batch", "/model/", "/scoring") if p in r.text), None
            ),
        ),
        Row("image info has no path", "GET", "/datastore/image/info", 200, params={"image": IMAGE}),
        Row("train status has no traceback", "GET", "/train/", "any"),
        Row(
            "train every model at once names the models instead",
            "POST",
            "/train/",
            400,
            check=lambda r: None if "POST /train/{model}" in r.json()["detail"] else "no models named",
        ),
    ]
    # 9. active learning params
    for name, body in {
        "seed list": {"seed": [1]},
        "seed dict": {"seed": {"a": 1}},
        "seed text": {"seed": "abc"},
        "seed huge": {"seed": 10**40},
        "seed bool": {"seed": True},
        "max_candidates 0": {"max_candidates": 0},
        "mc_samples 1000": {"mc_samples": 1000},
        "method number": {"method": 5},
        "switch_labels text": {"switch_labels": "200"},
        "switch_labels negative": {"switch_labels": -1},
    }.items():
        for strategy in ("random", "uncertain", "auto"):
            if name.startswith("switch_labels") and strategy != "auto":
                continue
            bald = {"method": "bald"} if strategy == "uncertain" and "method" not in body else {}
            out.append(
                Row(
                    f"AL {strategy} {name}",
                    "POST",
                    f"/activelearning/{strategy}",
                    400,
                    json_body={**bald, **body},
                )
            )
    out += [
        Row(
            "AL body nested 5000 deep",
            "POST",
            "/activelearning/first",
            "4xx",
            data="[" * 5000 + "]" * 5000,
            headers={"Content-Type": "application/json"},
        ),
        Row("AL body array", "POST", "/activelearning/first", 422, json_body=[1, 2]),
        Row(
            "AL body text",
            "POST",
            "/activelearning/first",
            415,
            data="x",
            headers={"Content-Type": "text/plain"},
        ),
        Row("AL unknown strategy", "POST", "/activelearning/nonsense", 404, json_body={}),
        # Named a member that is not hosted: said so, whichever method scores (not silently ignored)
        Row(
            "AL entropy unknown model",
            "POST",
            "/activelearning/uncertain",
            404,
            json_body={"method": "entropy", "model": "nosuch", "max_candidates": 8},
        ),
        Row(
            "AL bald unknown model",
            "POST",
            "/activelearning/uncertain",
            404,
            json_body={"method": "bald", "model": "nosuch", "max_candidates": 8, "mc_samples": 2},
        ),
    ]
    # 10. access: token and CORS
    for name, header in {
        "no token": None,
        "wrong token": f"Bearer {TOKEN}x",
        "basic scheme": f"Basic {TOKEN}",
        "empty bearer": "Bearer ",
    }.items():
        headers = {} if header is None else {"Authorization": header}
        out += [
            Row(f"{name}: info", "GET", "/info/", 401, auth=False, headers=headers),
            Row(
                f"{name}: store image",
                "PUT",
                "/datastore/image",
                401,
                auth=False,
                headers=headers,
                params={"image": "noauth"},
                files=_png_file(),
            ),
            Row(
                f"{name}: save label",
                "PUT",
                "/datastore/label",
                401,
                auth=False,
                headers=headers,
                params={"image": IMAGE},
                files=label_part({"roi": ROI, "label": "benign"}),
            ),
        ]
    out += [
        Row("token in the query is no token", "GET", "/info/", 401, auth=False, params={"token": TOKEN}),
        Row(
            "CORS: other origin gets no allow header",
            "GET",
            "/info/",
            200,
            headers={"Origin": "https://evil.example.com"},
            check=lambda r: (
                "access-control-allow-origin reflected"
                if "access-control-allow-origin" in r.headers
                else None
            ),
        ),
        Row(
            "CORS: preflight from other origin",
            "OPTIONS",
            "/datastore/image",
            "4xx",
            auth=False,
            headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "PUT"},
            check=lambda r: "preflight allowed" if "access-control-allow-origin" in r.headers else None,
        ),
        Row(
            "CORS: named origin allowed, no credentials",
            "GET",
            "/info/",
            200,
            headers={"Origin": ALLOWED_ORIGIN},
            check=lambda r: (
                None
                if r.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
                and "access-control-allow-credentials" not in r.headers
                else f"CORS headers {dict(r.headers)}"
            ),
        ),
    ]
    return out


def send(http, url: str, row: Row, token: str = TOKEN):
    headers = dict(row.headers)
    if row.auth:
        headers.setdefault("Authorization", f"Bearer {token}")
    target = url + (row.raw_url if row.raw_url is not None else row.path)
    if row.raw_url is not None:
        import requests

        request = requests.Request(row.method, target, headers=headers, data=row.data, files=row.files)
        prepared = http.prepare_request(request)
        prepared.url = target  # keep %2F as sent
        if not row.auth:
            prepared.headers.pop("Authorization", None)
        return http.send(prepared, timeout=120)
    response = http.request(
        row.method,
        target,
        params=row.params,
        data=row.data,
        files=row.files,
        json=row.json_body,
        headers=headers,
        timeout=120,
    )
    return response


def problems(row: Row, response, forbidden: list[str]) -> list[str]:
    """What is wrong with the answer to `row` (empty when it is right)."""
    out = []
    status = response.status_code
    if isinstance(row.expect, int):
        if status != row.expect:
            out.append(f"status {status}, expected {row.expect}")
    elif row.expect != "any" and f"{status // 100}xx" != row.expect:
        out.append(f"status {status}, expected {row.expect}")
    if status >= 500:
        out.append(f"server error {status}")
    text = response.text
    if status >= 400 and row.method != "HEAD":
        try:
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("detail"), str) or not body["detail"]:
                out.append(f"no 'detail' message: {text[:120]}")
        except ValueError:
            out.append(f"not JSON: {text[:120]}")
    if "Traceback" in text or 'File "' in text:
        out.append("traceback in the answer")
    for path in forbidden:
        if path in text:
            out.append(f"server path {path!r} in the answer")
    if row.check is not None and status < 500:
        extra = row.check(response)
        if extra:
            out.append(extra)
    return out

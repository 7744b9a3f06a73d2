"""Limits that need no running server: the image cache's bytes, the decode budget, the route table
against docs/server-api.md, the error messages' scrubbing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _png(path: Path, rows: int, cols: int) -> Path:
    from PIL import Image

    Image.fromarray(np.full((rows, cols), 128, np.uint8)).save(path)
    return path


def test_image_cache_is_bounded_in_bytes_and_keeps_no_upload(tmp_path):
    from microcalcai.server.images import ImageCache

    files = [_png(tmp_path / f"m{i}.png", 200, 250) for i in range(5)]  # 200 KB each as float32
    cache = ImageCache(max_bytes=450_000)
    for path in files:
        cache.read(path, name=path.stem)
        assert cache.nbytes <= 450_000
    assert len(cache) == 2  # the two most recent
    first = cache.read(files[-1], name="again")
    assert cache.read(files[-1], name="again") is first  # a hit, not a new decode
    cache.read(_png(tmp_path / "upload.png", 100, 100), name="upload", keep=False)
    assert len(cache) == 2
    huge = ImageCache(max_bytes=100_000)
    huge.read(files[0], name="big")  # larger than the whole budget: decoded, not kept
    assert len(huge) == 0 and huge.nbytes == 0


def test_decode_budget_refuses_a_tiny_png_of_13000_squared_before_decoding(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    from hostile_inputs import huge_png

    from microcalcai.server.errors import TooLarge
    from microcalcai.server.validation import check_image_file, max_upload_pixels

    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png(13000, 13000))
    assert path.stat().st_size < 400_000
    with pytest.raises(TooLarge, match="13000 x 13000"):
        check_image_file(path, name="bomb.png")
    monkeypatch.setenv("MICROCALCAI_DECODE_BUDGET_MB", "1")
    assert max_upload_pixels() == (1 << 20) // 12  # the pixel limit follows the memory budget
    with pytest.raises(TooLarge):
        check_image_file(_png(tmp_path / "small.png", 400, 300), name="small.png")


def test_scrub_removes_server_paths_and_tracebacks_but_keeps_routes():
    from microcalcai.server.routes import scrub

    lines = [
        "epoch 1",
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3/x.py", line 3, in f',
        "    foo()",
        "    ^^^^^",
        "ValueError: no labels in /tmp/ws/studies/labels/final",
        "done",
    ]
    assert scrub({"details": lines}) == {"details": ["epoch 1", "ValueError: no labels in final", "done"]}
    assert scrub("use GET /datastore/?output=all") == "use GET /datastore/?output=all"


def test_every_live_route_is_in_the_policy_and_in_the_docs():
    """The app's live routes (from FastAPI, in a fresh process) each have a decided status, and
    docs/server-api.md lists each of MONAI Label's routes with that status."""
    code = (
        "import json; from microcalcai.server import asgi, routes;"
        "print('ROUTES=' + json.dumps(sorted(['%s %s' % k for k in routes.offered(asgi.app)])))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    live = json.loads(done.stdout.split("ROUTES=", 1)[1])
    from microcalcai.server.routes import ADDED, GUARDED, KEPT, OFF, POLICY

    offered = {f"{m} {p}" for (m, p), (status, _) in POLICY.items() if status in (KEPT, GUARDED, ADDED)}
    assert set(live) == offered, set(live) ^ offered
    docs = (REPO / "docs" / "server-api.md").read_text()
    table = dict(re.findall(r"^\| `([A-Z]+ [^`]+)` \| (kept|guarded|added|off) \|", docs, re.M))
    expected = {f"{m} {p}": status for (m, p), (status, _) in POLICY.items()}
    assert table == expected, {k: (table.get(k), v) for k, v in expected.items() if table.get(k) != v}
    assert {s for s in table.values()} == {KEPT, GUARDED, ADDED, OFF}

"""Server faults are 5xx JSON saying what failed: a full disk under the labels, a read-only studies
folder. The server runs in its own mount namespace (`unshare -m`, as root) where its label folder is
a full 64 KB tmpfs, and its studies folder is later remounted read-only; the machine's own mounts
are untouched."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from server_helpers import ROI_SIZE, host_tiny_models, label_part, write_studies

pytestmark = pytest.mark.server


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt && umount /mnt"],
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    if not _can_unshare():
        pytest.skip("needs root and `unshare -m` (a private mount namespace) to fill or lock a folder")
    from microcalcai.process_group import start_group, stop_group
    from microcalcai.server.launch import free_port, server_command, server_env, wait_for_info

    root = tmp_path_factory.mktemp("faults")
    studies = root / "studies"
    write_studies(studies, None)
    final = studies / "labels" / "final"
    final.mkdir(parents=True)
    workspace = root / "workspace"
    host_tiny_models(workspace, root / "built-models")
    port = free_port()
    script = (
        f"mount --make-rprivate / && mount --bind '{studies}' '{studies}' && "
        f"mount -t tmpfs -o size=64k tmpfs '{final}' && "
        f"(head -c 200000 /dev/zero > '{final}/.fill' 2>/dev/null; true) && exec \"$@\""
    )
    command = server_command(str(studies), workspace, "127.0.0.1", port)
    (workspace / "logs").mkdir(exist_ok=True)
    log_path = workspace / "logs" / "faults.log"
    process = start_group(
        ["unshare", "-m", "sh", "-c", script, "sh", *command],
        log_path,
        cwd=workspace,
        env=server_env(workspace, {"OMP_NUM_THREADS": "2"}),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_info(url, process, 180, log_path, workspace)
        yield {"url": url, "pid": process.pid, "studies": studies, "root": root}
    finally:
        stop_group(process, 20)


def _clean_5xx(response, status: int, words: str, root) -> str:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert words in detail, detail
    assert str(root) not in response.text and "Traceback" not in response.text
    return detail


def test_full_disk_then_read_only_studies_are_5xx_json(faulty):
    import requests

    url, root = faulty["url"], faulty["root"]
    label = {"roi": {"x": 100, "y": 120, "size": ROI_SIZE}, "label": "benign"}
    full = requests.put(
        f"{url}/datastore/label",
        params={"image": "P0_L_CC", "tag": "final"},
        files=label_part(label),
        timeout=60,
    )
    detail = _clean_5xx(full, 507, "disk is full", root)
    assert "P0_L_CC" in detail and "label" in detail
    # The failed write left no partial label behind (looked at inside the server's namespace).
    inside = subprocess.run(
        ["nsenter", "-t", str(faulty["pid"]), "-m", "ls", "-a", str(faulty["studies"] / "labels" / "final")],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert sorted(inside) == [".", "..", ".fill"], inside

    subprocess.run(
        ["nsenter", "-t", str(faulty["pid"]), "-m", "mount", "-o", "remount,bind,ro", str(faulty["studies"])],
        check=True,
        timeout=30,
    )
    from hostile_inputs import png_bytes

    locked = requests.put(
        f"{url}/datastore/image",
        params={"image": "new_case"},
        files={"file": ("case.png", png_bytes(), "image/png")},
        timeout=60,
    )
    _clean_5xx(locked, 503, "read-only", root)
    # Reading still works, and a client's mistake is still a 4xx.
    assert requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).status_code == 200
    assert requests.get(f"{url}/datastore/image", params={"image": "../x"}, timeout=30).status_code == 400

"""A kill -9 of the server never loses an acknowledged label and never stops the next start.

The server (its process only) is killed at random moments while three clients save labels, and
MONAI Label's index is left as an interrupted write would leave it (empty, half written, or
missing labels written just before the kill). After each restart every acknowledged annotation
is there and every image with a label document is listed as labelled.
benchmarks/bench_durability.py runs many more trials.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
import sys

import pytest
from kill_trials import damaged_index_trial, random_kill_trial

pytestmark = pytest.mark.server

RANDOM_KILLS = 3


@pytest.fixture()
def own_server(tmp_path, server_env):
    """A server on copies of the session's studies and models: this test kills it."""
    from microcalcai.server.launch import LocalServer

    studies = tmp_path / "studies"
    shutil.copytree(server_env["studies"], studies, ignore=shutil.ignore_patterns("labels", "datastore_v2*"))
    workspace = tmp_path / "workspace"
    shutil.copytree(server_env["workspace"] / "models", workspace / "models")
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    local = LocalServer(studies, workspace, env={"OMP_NUM_THREADS": "1", "TMPDIR": str(server_tmp)})
    local.start()
    yield local, studies, server_tmp
    local.stop()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_request_folders_of_dead_processes_are_removed(tmp_path):
    """What a killed server left in the temporary folder goes; a live process's folder stays."""
    from microcalcai.server.uploads import FOLDER_PREFIX, remove_orphaned_folders, request_folder

    dead = tmp_path / f"{FOLDER_PREFIX}{_dead_pid()}-abc"
    dead.mkdir()
    (dead / "file.dcm").write_bytes(b"patient headers")
    live = tmp_path / f"{FOLDER_PREFIX}{os.getpid()}-def"
    live.mkdir()
    other = tmp_path / f"{FOLDER_PREFIX}notapid"  # another program's or an older name: not ours to judge
    other.mkdir()
    assert remove_orphaned_folders(tmp_path) == [dead]
    assert not dead.exists() and live.is_dir() and other.is_dir()
    # The folders requests make carry this process's id, so a later start can judge them.
    made = request_folder()
    try:
        assert made.name.startswith(f"{FOLDER_PREFIX}{os.getpid()}-")
    finally:
        shutil.rmtree(made)


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "stale"])
def test_datastore_index_is_rebuilt_from_the_label_documents(tmp_path, damage):
    """The datastore itself (no server): whatever state a kill left the index in, opening the
    folder lists every image that has a label document, and the index is readable again."""
    from PIL import Image

    from microcalcai.server.datastore import StudiesDatastore
    from microcalcai.server.launch import FILE_EXTENSIONS

    for name in ("a", "b", "c"):
        Image.new("L", (64, 64)).save(tmp_path / f"{name}.png")
    StudiesDatastore(str(tmp_path), extensions=FILE_EXTENSIONS)  # writes the index
    index = tmp_path / "datastore_v2.json"
    complete = index.read_text()
    for name in ("a", "b"):  # label documents written after the index (a kill came before its update)
        document = {"image": name, "format": 1, "annotations": [{"roi": {"x": 9, "y": 9, "size": 8}}]}
        (tmp_path / "labels" / "final" / f"{name}.json").write_text(json.dumps(document))
    if damage == "missing":
        index.unlink()
    elif damage == "empty":
        index.write_bytes(b"")
    elif damage == "truncated":
        index.write_text(complete[: len(complete) // 2])
    store = StudiesDatastore(str(tmp_path), extensions=FILE_EXTENSIONS)
    assert sorted(store.get_labeled_images()) == ["a", "b"]
    assert store.status()["completed"] == 2 and sorted(store.list_images()) == ["a", "b", "c"]
    assert set(json.loads(index.read_text())["objects"]) == {"a", "b", "c"}
    assert (tmp_path / "datastore_v2.json.unreadable").exists() == (damage in ("empty", "truncated"))


@pytest.mark.slow
def test_kill_during_label_writes_loses_nothing_and_start_survives(own_server, server_env):
    server, studies, server_tmp = own_server
    # An upload's folder as a kill -9 in the middle of a request leaves it (the process is gone).
    from microcalcai.server.uploads import FOLDER_PREFIX

    left = server_tmp / f"{FOLDER_PREFIX}{_dead_pid()}-x"
    left.mkdir()
    (left / "file.dcm").write_bytes(b"patient headers")
    images = [i for i in server_env["ids"] if i.startswith("P")]
    rng = random.Random(18)
    counter = itertools.count()
    acknowledged: dict = {}
    results = [
        random_kill_trial(server, studies, images, rng, acknowledged, counter) for _ in range(RANDOM_KILLS)
    ]
    for damage in ("empty", "truncated", "stale"):
        results.append(damaged_index_trial(server, studies, acknowledged, damage))
    assert len(acknowledged) > 0, "no label was acknowledged before the kills: the trials tested nothing"
    report = "\n".join(
        f"{r.kind}: started={r.started} lost={len(r.lost)} unlisted={r.unlisted} "
        f"index_readable={r.index_readable} {r.start_error[-300:]}"
        for r in results
        if not r.survived
    )
    assert all(r.survived for r in results), report
    # Each restart removed what the killed servers left in their temporary folder.
    assert not left.exists()
    leftovers = [p.name for p in server_tmp.glob(f"{FOLDER_PREFIX}*")]
    assert all(name.startswith(f"{FOLDER_PREFIX}{server.process.pid}-") for name in leftovers), leftovers
    # After the damaged index the server rebuilt it and lists every labelled image.
    assert (studies / "datastore_v2.json.unreadable").is_file()


class _Cut(BaseException):
    """Stands for a kill -9: nothing after it runs (BaseException, so no handler catches it)."""


@pytest.mark.parametrize(
    ("index_write", "when", "served"),
    [(1, "after", ".dcm"), (2, "before", ".dcm"), (2, "after", ".png"), (3, "before", ".png")],
    ids=["pending-recorded", "new-file-written", "replacement-recorded", "old-file-removed"],
)
def test_a_replacement_in_another_format_cut_anywhere_leaves_one_file(tmp_path, index_write, when, served):
    """Replacing a DICOM study by a PNG (overwrite=true) takes several steps; a kill between any
    two leaves, after the next start, exactly one file for the id: the old one until the new one
    was recorded, the new one after, with the image's labels kept either way."""
    from server_helpers import studies_pool, write_studies

    from microcalcai.server.uploads import PENDING_FILE, REPLACED_FILE

    studies = tmp_path / "studies"
    write_studies(studies, None)
    labels = studies / "labels" / "final"
    labels.mkdir(parents=True)
    document = {"image": "P0_L_CC", "format": 1, "annotations": [{"roi": {"x": 90, "y": 90, "size": 64}}]}
    (labels / "P0_L_CC.json").write_text(json.dumps(document))
    old_bytes = (studies / "P0_L_CC.dcm").read_bytes()
    upload = tmp_path / "upload.bin"
    shutil.copy(studies / "extra_png.png", upload)

    store, _pool = studies_pool(studies)
    write, calls = store._update_datastore_file, []

    def cut_at_one_write(lock=True):
        calls.append(lock)
        if len(calls) == index_write and when == "before":
            raise _Cut
        write(lock=lock)
        if len(calls) == index_write and when == "after":
            raise _Cut

    store._update_datastore_file = cut_at_one_write
    with pytest.raises(_Cut):
        store.add_image("P0_L_CC", str(upload), {}, overwrite=True)

    restarted, _pool = studies_pool(studies)  # the next start reads the index and the folder
    files = sorted(p.name for p in studies.glob("P0_L_CC.*"))
    assert files == [f"P0_L_CC{served}"]
    obj = restarted._datastore.objects["P0_L_CC"]
    assert obj.image.ext == served and "final" in obj.labels
    assert PENDING_FILE not in obj.image.info and REPLACED_FILE not in obj.image.info
    if served == ".dcm":
        assert (studies / "P0_L_CC.dcm").read_bytes() == old_bytes
    else:
        assert (studies / "P0_L_CC.png").read_bytes() == upload.read_bytes()
    index = json.loads((studies / "datastore_v2.json").read_text())
    assert PENDING_FILE not in json.dumps(index) and REPLACED_FILE not in json.dumps(index)


def test_a_replacement_completes_cleanly_even_with_a_refresh_in_the_middle(tmp_path, monkeypatch):
    """The file watcher refreshes the datastore from other threads at any time: a refresh while
    a PNG replaces a DICOM must not take the new file for a crash's leftover. Afterwards one file
    is left, the index serves it, and no replacement marker remains (in memory or on disk)."""
    import threading

    from server_helpers import studies_pool, write_studies

    import microcalcai.atomic
    from microcalcai.server.uploads import PENDING_FILE, REPLACED_FILE

    studies = tmp_path / "studies"
    write_studies(studies, None)
    upload = tmp_path / "upload.bin"
    shutil.copy(studies / "extra_png.png", upload)
    store, _pool = studies_pool(studies)
    write, refreshes = microcalcai.atomic.atomic_write_bytes, []

    def refresh_after_writing(path, data):
        written = write(path, data)
        if str(path).endswith("P0_L_CC.png"):  # the new file is there, not yet recorded
            refresher = threading.Thread(target=store.refresh)
            refresher.start()
            refresher.join(timeout=3)  # it waits for the lock this replacement holds, if it asks
            refreshes.append(refresher)
        return written

    monkeypatch.setattr(microcalcai.atomic, "atomic_write_bytes", refresh_after_writing)
    assert store.add_image("P0_L_CC", str(upload), {}, overwrite=True) == ("P0_L_CC", True)
    refreshes[0].join(timeout=60)
    assert sorted(p.name for p in studies.glob("P0_L_CC.*")) == ["P0_L_CC.png"]
    obj = store._datastore.objects["P0_L_CC"]
    assert obj.image.ext == ".png" and not {PENDING_FILE, REPLACED_FILE} & set(obj.image.info)
    index = (studies / "datastore_v2.json").read_text()
    assert PENDING_FILE not in index and REPLACED_FILE not in index

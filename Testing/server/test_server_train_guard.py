"""`/train/`: bad requests refused before anything starts; one training at a time across a kill.

A server of its own (copied studies without labels, freshly hosted tiny models): the first test
needs an empty label store, the second kills the server (its process only) while it trains.
"""

from __future__ import annotations

import os
import re
import shutil
import signal

import pytest
from kill_trials import kill_server_only
from server_helpers import error_detail, host_tiny_models, label_part, tiny_model, wait_until

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, server_env):
    from microcalcai.server.launch import LocalServer

    root = tmp_path_factory.mktemp("train-guard")
    studies = root / "studies"
    shutil.copytree(server_env["studies"], studies, ignore=shutil.ignore_patterns("labels", "datastore_v2*"))
    workspace = root / "workspace"
    host_tiny_models(workspace, root / "built")
    local = LocalServer(studies, workspace, env={"OMP_NUM_THREADS": "1"})
    local.start()
    yield local, {"root": root, "studies": studies, "workspace": workspace}
    local.stop()


def _post(http, server, path: str, body=None, raw: bytes | None = None):
    if raw is not None:
        return http.post(
            server.url + path, data=raw, headers={"content-type": "application/json"}, timeout=60
        )
    return http.post(server.url + path, json=body, timeout=60)


def _label(http, server, image: str, x: int, label: str):
    answer = http.put(
        f"{server.url}/datastore/label",
        params={"image": image, "tag": "final"},
        files=label_part({"roi": {"x": x, "y": 120, "size": 64}, "label": label}),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


_PATHLIKE = re.compile(r"(?<![\w.])/(tmp|work|home|root|usr|opt|var)/")


def test_bad_training_requests_are_refused_before_anything_starts(guarded, http):
    server, where = guarded
    a = "/train/tiny-a"
    manifest = where["studies"] / "manifest.csv"
    table = [
        ("unknown model", "/train/nope", {}, None, 404, "unknown model"),
        ("the ensemble", "/train/ensemble", {}, None, 400, "train its members"),
        ("every model at once", "/train/", {}, None, 400, "name the model"),
        ("publish_if unknown", a, {"publish_if": "sometimes"}, None, 400, "publish_if must be one of"),
        ("max_epochs text", a, {"max_epochs": "abc"}, None, 400, "max_epochs must be a whole number"),
        ("max_epochs zero", a, {"max_epochs": 0}, None, 400, "max_epochs must be between"),
        ("max_epochs fraction", a, {"max_epochs": 2.5}, None, 400, "whole number"),
        ("max_epochs 10**400", a, None, b'{"max_epochs": 1' + b"0" * 400 + b"}", 400, "max_epochs"),
        ("max_epochs 1e400", a, None, b'{"max_epochs": 1e400}', 400, "whole number"),
        ("val_fraction 1.5", a, {"val_fraction": 1.5}, None, 400, "val_fraction must be above"),
        ("tolerance NaN", a, None, b'{"tolerance": NaN}', 400, "tolerance must be a number"),
        ("lr_scale zero", a, {"lr_scale": 0}, None, 400, "lr_scale must be between"),
        ("shrink zero", a, {"shrink": 0}, None, 400, "shrink must be between"),
        ("perturb above 1", a, {"perturb": 2}, None, 400, "perturb must be between"),
        ("toward unknown", a, {"toward": "zeros"}, None, 400, "toward must be one of"),
        # 1 x served + 0.5 x ImageNet would rescale every layer against its BatchNorm statistics
        ("shrink 1 with the default perturb", a, {"shrink": 1}, None, 400, "shrink + perturb must be 1"),
        ("shrink + perturb above 1", a, {"toward": "random", "perturb": 0.6}, None, 400, "at most 1"),
        ("flag as text", a, {"include_manifest_labels": "yes"}, None, 400, "true or false"),
        ("seed as list", a, {"seed": [1]}, None, 400, "seed must be a whole number"),
        ("unknown parameter", a, {"epochs": 3}, None, 400, "unknown training parameter"),
        ("image naming a temp file", a, {"image": "/tmp/tmpk2j3.dcm"}, None, 400, "unknown training"),
        ("body a JSON array", a, [1, 2], None, 400, "JSON object"),
        ("body not JSON", a, None, b"abc", 400, "JSON object"),
        ("run_sync", a + "?run_sync=true", {}, None, 400, "run_sync is not supported"),
        ("enqueue", a + "?enqueue=true", {}, None, 400, "enqueue is not supported"),
        ("recipe an existing file", a, {"recipe": str(manifest)}, None, 400, "named recipes"),
        ("recipe a missing file", a, {"recipe": str(manifest) + ".no"}, None, 400, "named recipes"),
        ("recipe relative path", a, {"recipe": "../recipes/kang2021"}, None, 400, "named recipes"),
        # A whole-image version of an ROI model would drop it from the ensemble for good.
        ("recipe for whole images", a, {"recipe": "mobini2024"}, None, 400, "ROI recipes"),
        ("no labels", a, {}, None, 400, "save labels with PUT /datastore/label"),
    ]
    problems, details = [], {}
    for name, path, body, raw, status, words in table:
        answer = _post(http, server, path, body, raw)
        text = answer.text
        if answer.status_code != status or words.lower() not in error_detail(answer).lower():
            problems.append(f"{name}: {answer.status_code} {text[:200]}")
        if "Traceback" in text or _PATHLIKE.search(text) or str(where["root"]) in text:
            problems.append(f"{name}: the answer shows a traceback or a server path: {text[:200]}")
        details[name] = error_detail(answer)
    assert not problems, "\n".join(problems)
    # Whether a file exists on the server does not change the answer.
    assert details["recipe an existing file"] == details["recipe a missing file"]

    # One label, then one class only: refused, saying how many of each class are needed.
    _label(http, server, "P0_L_CC", 100, "malignant")
    one = _post(http, server, a, {})
    assert one.status_code == 400 and "label at least" in error_detail(one), one.text
    for image in ("P1_L_CC", "P2_L_CC", "P3_L_CC", "P1_R_MLO", "P2_R_MLO"):
        _label(http, server, image, 100, "malignant")
    one_class = _post(http, server, a, {})
    detail = error_detail(one_class)
    assert one_class.status_code == 400 and "benign: 0" in detail and "label at least" in detail

    # Nothing was started by any of these.
    assert http.get(f"{server.url}/train/", timeout=30).status_code == 404
    assert not (where["workspace"] / "training" / "active.json").exists()
    assert not list((where["workspace"] / "models").glob("*/train_stats.json"))


def _running_pid(workspace, model: str):
    from microcalcai.server.hosted import ModelStore

    stats = ModelStore(workspace / "models").read_stats(model)
    return stats.get("pid") if stats.get("state") == "running" else None


def test_training_orphaned_by_a_server_kill_is_refused_stopped_and_never_publishes(guarded, http):
    from microcalcai.server.hosted import ModelStore
    from microcalcai.server.training_guard import kill_tree, process_alive
    from microcalcai.server.workspace import install_model

    server, where = guarded
    workspace = where["workspace"]
    store = ModelStore(workspace / "models")
    orphans = []
    try:
        # 1. A long training; the server alone is killed; its child lives on.
        started = _post(
            http,
            server,
            "/train/tiny-b",
            # kang2021 stops early only after 20 epochs without progress: the run outlives the kill
            {"recipe": "kang2021", "max_epochs": 500, "include_manifest_labels": True, "val_fraction": 0.5},
        )
        assert started.status_code == 200, started.text
        orphan = wait_until(lambda: _running_pid(workspace, "tiny-b"), 300, "the training to run")
        orphans.append(orphan)
        # Held still (SIGSTOP) until the orphan has been refused and stopped: on 4 training images
        # kang2021 early-stops after its 21st epoch, seconds after the kill on an idle machine,
        # before the restarted server is asked. A stopped process is alive; DELETE's SIGKILL ends it.
        os.kill(orphan, signal.SIGSTOP)
        kill_server_only(server)
        server.start()
        assert process_alive(orphan), "the training ended with its server: nothing left to test"

        # 2. The restarted server refuses a second training, reports the orphan, and stops it.
        second = _post(http, server, "/train/tiny-a", {"include_manifest_labels": True})
        detail = error_detail(second)
        assert second.status_code == 409 and "tiny-b" in detail and "DELETE /train/" in detail, second.text
        status = http.get(f"{server.url}/train/", timeout=30)
        assert status.status_code == 200 and status.json()["status"] == "RUNNING", status.text
        assert status.json()["model"] == "tiny-b"
        stopped = http.delete(f"{server.url}/train/", timeout=60)
        assert stopped.status_code == 200 and stopped.json()["status"] == "STOPPED", stopped.text
        assert "still running" not in stopped.text and "stopped now" in stopped.text
        wait_until(lambda: not process_alive(orphan), 30, "the orphan to end")
        stats = http.get(f"{server.url}/info/", timeout=30).json()["train_stats"]["tiny-b"]
        assert stats["state"] == "stopped" and stats["versions"] == ["1"] and stats["served_version"] == "1"

        # 3. The lock is free again: a short training starts; its server is killed; meanwhile a
        #    newer version of its model is published (as `microcalcai serve --model` does at start).
        started = _post(
            http,
            server,
            "/train/tiny-a",
            {"max_epochs": 2, "include_manifest_labels": True, "val_fraction": 0.5, "publish_if": "always"},
        )
        assert started.status_code == 200, started.text
        assert str(workspace) not in started.text and "_training_id" not in started.text
        orphan = wait_until(lambda: _running_pid(workspace, "tiny-a"), 300, "the second training to run")
        orphans.append(orphan)
        kill_server_only(server)
        install_model(workspace, tiny_model(where["root"] / "newer", "newer", seed=7), name="tiny-a")
        assert store.current_version("tiny-a") == "2"
        wait_until(lambda: not process_alive(orphan), 600, "the orphaned training to finish")

        # 4. It finished, and did not publish over version 2.
        stats = store.read_stats("tiny-a")
        assert stats["state"] == "done" and stats["published"] is False, stats
        assert "changed from 1 to 2" in stats["message"], stats["message"]
        assert store.versions("tiny-a") == ["1", "2"] and store.current_version("tiny-a") == "2"
        assert not (workspace / "training" / "active.json").exists()
        server.start()
        info = http.get(f"{server.url}/info/", timeout=30).json()
        assert info["models"]["tiny-a"]["version"] == "2"
        assert info["train_stats"]["tiny-a"]["published"] is False
    finally:
        for pid in orphans:
            kill_tree(pid)


def test_a_process_read_a_second_apart_is_the_same_process_and_a_later_one_is_not():
    """psutil's start time rests on /proc/stat btime, whole seconds recomputed from the wall
    clock: a restarted server may read a live orphan's start 1 s off what the first recorded."""
    import os

    import psutil

    from microcalcai.server.training_guard import process_alive

    started = psutil.Process(os.getpid()).create_time()
    assert process_alive(os.getpid(), started + 1.0) and process_alive(os.getpid(), started - 1.0)
    assert not process_alive(os.getpid(), started + 60), "a pid reused a minute later is another process"

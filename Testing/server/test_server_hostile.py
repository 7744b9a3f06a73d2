"""A server under attack: ~200 hostile requests, each a clean answer; nothing written outside its
folders, no upload left behind; a bad stored image never stops active learning or training.

One server for the module (a token, a named CORS origin, a 4 MB upload limit and its own
temporary folder), so every row is checked against the same real MONAI Label server.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from hostile_inputs import (
    ALLOWED_ORIGIN,
    ROI,
    TOKEN,
    UPLOAD_LIMIT_MB,
    Row,
    png_bytes,
    problems,
    rows,
    send,
)
from server_helpers import host_tiny_models, label_part, studies_pool, wait_until, write_studies

pytestmark = pytest.mark.server


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from microcalcai.server.launch import LocalServer

    root = tmp_path_factory.mktemp("hostile")
    studies = root / "studies"
    write_studies(studies, None)
    # Bad files already in the studies folder (copied there by hand, or stored by an older server).
    (studies / "junk.png").write_text("this is not an image\n")
    body = png_bytes(300, 300, seed=9)
    (studies / "cut_body.png").write_bytes(body[: len(body) // 3])  # a good header, no pixels
    workspace = root / "workspace"
    host_tiny_models(workspace, root / "built-models")
    server_tmp = root / "server-tmp"
    server_tmp.mkdir()
    outside = root / "outside"
    outside.mkdir()
    env = {
        "OMP_NUM_THREADS": "2",
        "TMPDIR": str(server_tmp),
        "MICROCALCAI_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
        "MICROCALCAI_CORS_ORIGINS": ALLOWED_ORIGIN,
    }
    server = LocalServer(studies, workspace, env=env, token=TOKEN)
    server.start()
    yield {
        "server": server,
        "root": root,
        "studies": studies,
        "workspace": workspace,
        "tmp": server_tmp,
        "outside": outside,
        "tmp_before": _files(server_tmp),
    }
    server.stop()


@pytest.fixture(scope="module")
def authed():
    import requests

    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield session


def _forbidden(hostile) -> list[str]:
    return [str(hostile["root"]), sys.prefix, "site-packages", "/work/", tempfile.gettempdir() + "/"]


def test_hostile_table_each_answer_clean(hostile, tmp_path):
    import requests

    server = hostile["server"]
    table = rows(hostile["outside"], tmp_path)
    assert len(table) >= 150
    studies_before = _files(hostile["studies"])
    failures, statuses = [], {}
    with requests.Session() as http:
        for row in table:
            try:
                response = send(http, server.url, row)
            except requests.RequestException as exc:
                failures.append(f"{row.name}: no answer ({type(exc).__name__})")
                continue
            statuses[row.name] = response.status_code
            wrong = problems(row, response, _forbidden(hostile))
            if wrong:
                failures.append(f"{row.name}: {'; '.join(wrong)} | {response.text[:200]}")
    assert not failures, f"{len(failures)} of {len(table)} rows wrong:\n" + "\n".join(failures)
    # Nothing was written outside the server's folders: the one upload named "../../evil.png"
    # was stored as the study "evil"...
    assert _files(hostile["outside"]) == set()
    evil = [p for p in hostile["root"].rglob("evil*") if p != hostile["studies"] / "evil.png"]
    assert not evil, evil
    # ...the studies gained no other image, and no label folder but MONAI Label's two...
    added = _files(hostile["studies"]) - studies_before
    assert {a for a in added if not a.startswith(("labels", "."))} == {"evil.png"}, added
    labels = hostile["studies"] / "labels"
    assert not labels.exists() or {p.name for p in labels.iterdir()} <= {"final", "original"}
    # ...and the server still serves.
    with requests.Session() as http:
        info = send(http, server.url, Row("info", "GET", "/info/", 200))
    assert info.status_code == 200 and "tiny-a" in info.json()["models"]
    clean = sum(1 for name, status in statuses.items() if 400 <= status < 500)
    assert clean >= 140, clean


def test_slash_redirects_stay_on_this_server(hostile, authed):
    """/info -> /info/ is redirected by path alone: a forged Host header must not send the client
    to another server."""
    server = hostile["server"]
    answer = authed.get(
        f"{server.url}/info", headers={"Host": "evil.example"}, allow_redirects=False, timeout=30
    )
    assert answer.status_code in (301, 302, 307, 308), answer.text[:200]
    assert answer.headers["location"] == "/info/"
    followed = authed.get(f"{server.url}/info", timeout=30)
    assert followed.status_code == 200 and "tiny-a" in followed.json()["models"]
    # A location whose path starts with two slashes would name another host to a browser.
    from microcalcai.server.asgi import _relative_redirect

    start = {"status": 307, "headers": [(b"location", b"http://evil.example//other.example/info/?a=1")]}
    assert dict(_relative_redirect(start)["headers"])[b"location"] == b"/other.example/info/?a=1"


def test_no_upload_or_temporary_file_left(hostile, authed):
    """Every request's files are gone when it ends, refused or not (DICOMs with patient headers too)."""
    server = hostile["server"]
    dicom = (hostile["studies"] / "P0_L_CC.dcm").read_bytes()
    answers = [
        authed.post(  # accepted DICOM upload
            f"{server.url}/infer/tiny-a",
            params={"output": "json"},
            data={"params": json.dumps({"roi": ROI})},
            files={"file": ("patient.dcm", dicom, "application/dicom")},
            timeout=120,
        ),
        authed.post(  # DICOM upload refused after it was stored (ROI off the image)
            f"{server.url}/infer/tiny-a",
            params={"output": "json"},
            data={"params": json.dumps({"roi": {"x": 9999, "y": 1, "size": 64}})},
            files={"file": ("patient.dcm", dicom, "application/dicom")},
            timeout=120,
        ),
        authed.post(  # refused by a failing model name after the upload was read
            f"{server.url}/infer/no-such-model",
            params={"output": "all"},
            data={"params": "{}"},
            files={"file": ("patient.dcm", dicom, "application/dicom")},
            timeout=120,
        ),
        authed.post(  # multipart answer with a saliency file
            f"{server.url}/infer/tiny-a",
            params={"output": "all"},
            data={"params": json.dumps({"roi": ROI})},
            files={"file": ("patient.dcm", dicom, "application/dicom")},
            timeout=120,
        ),
        authed.put(
            f"{server.url}/datastore/image",
            params={"image": "refused_text"},
            files={"file": ("x.dcm", b"not a dicom at all" * 100, "application/dicom")},
            timeout=60,
        ),
        authed.put(  # an accepted label (the annotation is kept in the request's folder first)
            f"{server.url}/datastore/label",
            params={"image": "P0_L_CC"},
            files=label_part({"label": "malignant", "roi": ROI}),
            timeout=60,
        ),
        authed.put(  # a label refused after it was written there (its ROI lies off the image)
            f"{server.url}/datastore/label",
            params={"image": "P0_L_CC"},
            files=label_part({"label": "malignant", "roi": {"x": 9999, "y": 1, "size": 64}}),
            timeout=60,
        ),
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [200, 400, 404, 200, 415, 200, 400], [a.text[:200] for a in answers]
    # A request's folder goes when the request ends, which is just after its answer was sent.
    try:
        wait_until(lambda: not (_files(hostile["tmp"]) - hostile["tmp_before"]), 10, "request folders gone")
    except AssertionError:
        left = _files(hostile["tmp"]) - hostile["tmp_before"]
        raise AssertionError(f"left in the server's temporary folder: {sorted(left)[:10]}") from None


def test_store_image_checked_never_overwritten_without_asking(hostile, authed):
    server = hostile["server"]
    first, second = png_bytes(60, 50, seed=1), png_bytes(60, 50, seed=2)

    def put(blob, **params):
        return authed.put(
            f"{server.url}/datastore/image",
            params={"image": "upload_case", **params},
            files={"file": ("case.png", blob, "image/png")},
            timeout=60,
        )

    stored = put(first)
    assert stored.status_code == 200 and stored.json() == {"image": "upload_case", "stored": True}
    path = hostile["studies"] / "upload_case.png"
    assert path.read_bytes() == first
    again = put(first)  # the same bytes again: nothing to do (a client retrying)
    assert again.status_code == 200 and again.json()["stored"] is False
    refused = put(second)
    assert refused.status_code == 409 and "overwrite=true" in refused.json()["detail"]
    assert path.read_bytes() == first
    replaced = put(second, overwrite="true")
    assert replaced.status_code == 200 and path.read_bytes() == second
    listing = authed.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()
    assert "upload_case" in listing["objects"]
    # The stored upload can be classified and labelled like any study.
    answer = authed.post(
        f"{server.url}/infer/tiny-a",
        params={"image": "upload_case", "output": "json"},
        data={"params": json.dumps({"roi": {"x": 25, "y": 30, "size": 32}})},
        files={"_": ("", b"")},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


def test_remove_one_annotation_keeps_the_others(hostile, authed):
    server = hostile["server"]

    def save(roi, label):
        return authed.put(
            f"{server.url}/datastore/label",
            params={"image": "P1_L_CC", "tag": "final"},
            files=label_part({"roi": roi, "label": label}),
            timeout=30,
        )

    good, bad = {"x": 120, "y": 150, "size": 64}, {"x": 30, "y": 40, "size": 64}
    assert save(good, "benign").status_code == 200
    assert save(bad, "malignant").status_code == 200
    removed = authed.delete(
        f"{server.url}/datastore/label/annotation",
        params={"image": "P1_L_CC", "tag": "final", **bad},
        timeout=30,
    )
    assert removed.status_code == 200, removed.text
    kept = authed.get(
        f"{server.url}/datastore/label", params={"label": "P1_L_CC", "tag": "final"}, timeout=30
    )
    assert [(a["roi"]["x"], a["label"]) for a in kept.json()["annotations"]] == [(120, "benign")]

    # The index (listings, counts of completed images) follows the documents at once.
    def indexed() -> dict:
        listing = authed.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()
        return listing["objects"]["P1_L_CC"]["labels"]

    assert indexed()["final"]["info"]["annotations"] == 1
    last = authed.delete(
        f"{server.url}/datastore/label/annotation",
        params={"image": "P1_L_CC", "tag": "final", **good},
        timeout=30,
    )
    assert last.status_code == 200 and last.json()["annotations"] == []
    assert "final" not in indexed()
    assert save(good, "benign").status_code == 200 and "final" in indexed()
    whole = authed.delete(
        f"{server.url}/datastore/label", params={"id": "P1_L_CC", "tag": "final"}, timeout=30
    )
    assert whole.status_code == 200 and "final" not in indexed()
    again = authed.delete(
        f"{server.url}/datastore/label", params={"id": "P1_L_CC", "tag": "final"}, timeout=30
    )
    assert again.status_code == 404 and "has no 'final' label" in again.json()["detail"]
    assert save(good, "benign").status_code == 200  # as the tests after this one expect
    # A save under another tag answers that tag's document, not the final one.
    other = authed.put(
        f"{server.url}/datastore/label",
        params={"image": "P1_L_CC", "tag": "second_opinion"},
        files=label_part({"roi": bad, "label": "malignant"}),
        timeout=30,
    )
    assert other.status_code == 200, other.text
    assert [(a["roi"]["x"], a["label"]) for a in other.json()["annotations"]] == [(30, "malignant")]


def test_bad_stored_images_never_stop_active_learning(hostile, authed):
    """junk.png (text) and cut_body.png (a PNG cut short) sit in the studies since the start."""
    server = hostile["server"]
    picked = set()
    for strategy, body in [
        ("first", {}),
        ("random", {"seed": 1}),
        ("random", {"seed": 2}),
        ("uncertain", {"method": "entropy", "max_candidates": 64}),
        ("uncertain", {"method": "bald", "model": "tiny-a", "mc_samples": 2}),
        ("typical", {"max_candidates": 64}),
        ("auto", {"max_candidates": 64}),
        ("auto", {"switch_labels": 0, "seed": 3}),
    ]:
        answer = authed.post(f"{server.url}/activelearning/{strategy}", json=body, timeout=300)
        assert answer.status_code == 200, f"{strategy}: {answer.status_code} {answer.text[:300]}"
        assert "path" not in answer.json()
        picked.add(answer.json()["id"])
    assert not picked & {"junk", "cut_body"}
    log = server.log_path.read_text(errors="replace")
    assert "active learning skips image junk" in log and "active learning skips image cut_body" in log
    # A label cannot be saved on an image that does not decode (training would read it).
    refused = authed.put(
        f"{server.url}/datastore/label",
        params={"image": "cut_body"},
        files=label_part({"roi": ROI, "label": "benign"}),
        timeout=30,
    )
    assert refused.status_code == 400 and "cut_body" in refused.json()["detail"]


def test_training_data_skips_bad_images_and_off_image_rois(hostile):
    """Labels stored before the checks existed (a bad file, an ROI off its image) are skipped."""
    from microcalcai.server.training_data import labeled_frame

    studies = hostile["root"] / "training-studies"
    write_studies(studies, None)
    (studies / "junk.png").write_text("not an image")
    folder = studies / "labels" / "final"
    folder.mkdir(parents=True)
    for image_id, roi in [("junk", ROI), ("P0_L_CC", {"x": 1e9, "y": 5, "size": 64}), ("P0_R_MLO", ROI)]:
        document = {"image": image_id, "format": 1, "annotations": [{"roi": roi, "label": "benign"}]}
        (folder / f"{image_id}.json").write_text(json.dumps(document))
    frame = labeled_frame(*studies_pool(studies))
    assert list(frame["image_id"]) == ["P0_R_MLO"]


def test_logic_client_sends_the_token(hostile):
    from microcalcai_logic.client import ServerClient
    from microcalcai_logic.errors import ServerError

    url = hostile["server"].url
    assert "tiny-a" in ServerClient(url, token=TOKEN).info().models
    with pytest.raises(ServerError) as refused:
        ServerClient(url).info()
    assert "Bearer" in str(refused.value)
    os.environ["MICROCALCAI_TOKEN"] = TOKEN
    try:
        assert ServerClient(url).info().models  # the environment's token when none is given
    finally:
        del os.environ["MICROCALCAI_TOKEN"]


def test_failed_training_status_has_no_traceback_or_server_path(hostile, authed):
    """A training that fails in its process (here: no labels of one class) reports why in
    GET /train/ without the traceback or the server's folders."""
    import time

    server = hostile["server"]
    started = authed.post(f"{server.url}/train/tiny-b", json={"max_epochs": 1}, timeout=60)
    assert started.status_code < 500, started.text[:300]
    if started.status_code >= 400:  # refused before it ran: a clean answer is all there is to see
        assert "detail" in started.json()
        return
    deadline = time.monotonic() + 240
    status = {}
    while time.monotonic() < deadline:
        answer = authed.get(f"{server.url}/train/", timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        status = answer.json()
        if status.get("status") in ("DONE", "ERROR", "STOPPED"):
            break
        time.sleep(2)
    text = json.dumps(status)
    assert status.get("status") in ("DONE", "ERROR", "STOPPED"), text[-500:]
    assert "Traceback" not in text and 'File "' not in text, text[-2000:]
    assert str(hostile["root"]) not in text and sys.prefix not in text, text[-2000:]


def test_concurrent_label_writers_lose_nothing(hostile):
    """Label saves run in worker threads now: 8 writers x 10 ROIs on one image, all kept."""
    import threading

    import requests

    server, errors = hostile["server"], []

    def writer(index: int):
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {TOKEN}"
            for j in range(10):
                roi = {"x": 20 + index * 20, "y": 20 + j * 25, "size": 32}
                answer = http.put(
                    f"{server.url}/datastore/label",
                    params={"image": "P3_R_MLO", "tag": "final"},
                    files=label_part({"roi": roi, "label": "benign"}),
                    timeout=120,
                )
                if answer.status_code != 200:
                    errors.append(answer.text[:200])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    document = requests.get(
        f"{server.url}/datastore/label",
        params={"label": "P3_R_MLO", "tag": "final"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ).json()
    assert len(document["annotations"]) == 80


def test_concurrent_label_saves_each_answer_and_store_their_own_annotation(hostile):
    """Saves run in worker threads at once: each one's answer and label SR (params.dicom_out) must
    be its own annotation, never the one another thread saved a moment later."""
    import threading

    import requests

    from microcalcai.dicom_out.readback import read_report

    server, studies, seen, errors = hostile["server"], hostile["studies"], [], []

    def writer(index: int):
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {TOKEN}"
            for j in range(5):
                roi = {"x": 30 + index * 25, "y": 30 + j * 30, "size": 32}
                who = f"reader-{index}-{j}"
                answer = http.put(
                    f"{server.url}/datastore/label",
                    params={"image": "P2_L_CC", "tag": "final"},
                    data={"params": json.dumps({"client_id": who, "dicom_out": True})},
                    files=label_part({"roi": roi, "label": "benign"}),
                    timeout=120,
                )
                if answer.status_code != 200:
                    errors.append(answer.text[:200])
                else:
                    seen.append((who, roi, answer.json()))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert len(seen) == 30
    wrong = []
    for who, roi, answer in seen:
        mine = [a for a in answer["annotations"] if a["roi"] == roi]
        if [a["annotator"] for a in mine] != [who]:
            wrong.append(f"{who}: answer lacks its own annotation")
        report = read_report(studies / answer["dicom_out"]["path"])
        (group,) = report["groups"]
        xs, ys = zip(*group["polygon"], strict=True)
        centre = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
        # SCOORD puts a pixel's centre at +0.5 (its top-left corner is the pixel's index)
        if report["observer"]["name"] != who or centre != (roi["x"] + 0.5, roi["y"] + 0.5):
            wrong.append(f"{who}: its SR holds {report['observer']['name']} at {centre}")
    assert not wrong, wrong[:5]


def test_what_a_save_wrote_is_kept_per_thread(tmp_path):
    """The datastore keeps the last save's document and SR per thread: a save finishing in another
    thread in between does not change what this thread's request answers."""
    import threading

    from server_helpers import studies_pool, write_studies

    write_studies(tmp_path / "studies", None)
    store, _pool = studies_pool(tmp_path / "studies")
    store.last_saved, store.last_label_sr = {"image": "mine"}, {"stored": "folder", "path": "mine"}
    other = threading.Thread(
        target=lambda: (
            setattr(store, "last_saved", {"image": "theirs"}) or setattr(store, "last_label_sr", None)
        )
    )
    other.start()
    other.join()
    assert store.last_saved == {"image": "mine"} and store.last_label_sr["path"] == "mine"

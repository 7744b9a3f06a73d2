"""Classification labels through MONAI Label's label API, surviving a restart; active learning."""

from __future__ import annotations

import json
import math

import pytest
from server_helpers import ROI_SIZE, error_detail, label_part

pytestmark = pytest.mark.server


def _save(http, server, image, annotation, params=None):
    return http.put(
        f"{server.url}/datastore/label",
        params={"image": image, "tag": "final"},
        data={"params": json.dumps(params or {})},
        files=label_part(annotation),
        timeout=30,
    )


def _manifest_rois(server_env) -> dict:
    import csv

    with open(server_env["studies"] / "manifest.csv") as handle:
        return {row["image_path"][:-4]: row for row in csv.DictReader(handle)}


def test_labels_saved_merged_validated_and_kept_across_restart(server, http, server_env):
    rois = _manifest_rois(server_env)
    first = {"x": int(rois["P0_L_CC"]["roi_x"]), "y": int(rois["P0_L_CC"]["roi_y"]), "size": ROI_SIZE}
    saved = _save(
        http,
        server,
        "P0_L_CC",
        {"roi": first, "label": "malignant", "morphology": "fine pleomorphic", "distribution": "segmental"},
        params={"client_id": "dr.a"},
    )
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["image"] == "P0_L_CC" and len(body["annotations"]) == 1
    annotation = body["annotations"][0]
    assert annotation["morphology"] == "fine_pleomorphic" and annotation["annotator"] == "dr.a"
    assert annotation["time"].endswith("Z")

    second = {"x": 60, "y": 60, "size": 64}
    assert (
        _save(
            http,
            server,
            "P0_L_CC",
            {"roi": second, "label": "benign", "annotator": "dr.b", "time": "2026-01-02T03:04:05Z"},
        ).status_code
        == 200
    )
    # The same ROI again replaces its annotation, the other one stays.
    again = _save(http, server, "P0_L_CC", {"roi": first, "label": "benign", "annotator": "dr.a"}).json()
    assert [a["label"] for a in again["annotations"]] == ["benign", "benign"]
    # Fields in params override the file's (and a label can be given in params only).
    via_params = _save(
        http, server, "P1_L_CC", {}, params={"roi": {"x": 100, "y": 100}, "label": "malignant"}
    )
    assert via_params.status_code == 200 and via_params.json()["annotations"][0]["roi"]["size"] == 512

    bad = {
        "unknown label value": (
            _save(http, server, "P0_L_CC", {"roi": first, "label": "maybe"}),
            400,
            "benign",
        ),
        "unknown morphology": (
            _save(http, server, "P0_L_CC", {"roi": first, "label": "benign", "morphology": "spiky"}),
            400,
            "punctate",
        ),
        "no roi": (_save(http, server, "P0_L_CC", {"label": "benign"}), 400, "label.roi"),
        "unknown image": (
            _save(http, server, "nobody", {"roi": first, "label": "benign"}),
            404,
            "unknown image",
        ),
        "escaping image": (_save(http, server, "../x", {"roi": first, "label": "benign"}), 400, "path"),
        "not JSON": (
            http.put(
                f"{server.url}/datastore/label",
                params={"image": "P0_L_CC"},
                files={"label": ("label.nii.gz", b"\x1f\x8b garbage", "application/gzip")},
                timeout=30,
            ),
            415,
            "not JSON",
        ),
    }
    problems = [
        f"{k}: {r.status_code} {r.text[:160]}"
        for k, (r, status, words) in bad.items()
        if r.status_code != status or words.lower() not in error_detail(r).lower()
    ]
    assert not problems, "\n".join(problems)

    server.restart()
    document = http.get(
        f"{server.url}/datastore/label", params={"label": "P0_L_CC", "tag": "final"}, timeout=30
    )
    assert document.status_code == 200
    kept = document.json()["annotations"]
    assert {(a["roi"]["x"], a["roi"]["y"], a["label"], a["annotator"]) for a in kept} == {
        (second["x"], second["y"], "benign", "dr.b"),
        (first["x"], first["y"], "benign", "dr.a"),
    }
    listing = http.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()
    assert "final" in listing["objects"]["P0_L_CC"]["labels"]
    assert "final" not in listing["objects"]["P2_L_CC"]["labels"]


def test_next_sample_first_random_uncertain(server, http, server_env):
    rois = _manifest_rois(server_env)
    first = http.post(f"{server.url}/activelearning/first", json={}, timeout=60).json()
    # P0_L_CC's manifest ROI is labeled (previous test), so the first unlabeled is P0_R_MLO's.
    assert first["id"] == "P0_R_MLO"
    assert first["roi"] == {
        "x": int(rois["P0_R_MLO"]["roi_x"]),
        "y": int(rois["P0_R_MLO"]["roi_y"]),
        "size": ROI_SIZE,
    }
    one = http.post(f"{server.url}/activelearning/random", json={"seed": 3}, timeout=60).json()
    two = http.post(f"{server.url}/activelearning/random", json={"seed": 3}, timeout=60).json()
    assert one["id"] == two["id"] and one["roi"] == two["roi"]

    entropy = http.post(
        f"{server.url}/activelearning/uncertain", json={"method": "entropy"}, timeout=120
    ).json()
    assert entropy["strategy"] == "uncertain" and entropy["candidates"] >= 9
    # The score is the predictive entropy of the ensemble's probability at that ROI.
    answer = http.post(
        f"{server.url}/infer/ensemble",
        params={"image": entropy["id"], "output": "json"},
        data={"params": json.dumps({"roi": entropy["roi"]})},
        files={"_": ("", b"")},
        timeout=60,
    ).json()
    p = answer["probability"]
    assert entropy["score"] == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)), abs=1e-4)

    bald = http.post(
        f"{server.url}/activelearning/uncertain",
        json={"method": "bald", "model": "tiny-a", "mc_samples": 4},
        timeout=120,
    ).json()
    assert bald["method"] == "bald" and 0.0 < bald["score"] <= math.log(2)
    assert (
        http.post(f"{server.url}/activelearning/uncertain", json={"method": "vibes"}, timeout=30).status_code
        == 400
    )


def test_server_accepts_every_term_the_logic_offers(server, http):
    """The Logic's menus and the server's validation read one vocabulary (the contract): every
    label, morphology and distribution the Logic offers is saved by the real server as sent."""
    from microcalcai_logic.annotate import Annotation, save_annotation
    from microcalcai_logic.client import ServerClient
    from microcalcai_logic.contract import DISTRIBUTIONS, LABELS, MORPHOLOGIES, PixelRoi

    client = ServerClient(server.url)
    offered = [(label, None, None) for label in LABELS]
    offered += [("benign", term, None) for term in MORPHOLOGIES]
    offered += [("malignant", None, term) for term in DISTRIBUTIONS]
    # Extra ROIs on an image the tests above already label, removed at the end: no state is left
    # for the tests after this one.
    rois = [PixelRoi(20.0 + i, 30.0, 16) for i in range(len(offered))]
    try:
        for roi, (label, morphology, distribution) in zip(rois, offered, strict=True):
            annotation = Annotation(label, morphology, distribution, annotator="dr.vocabulary")
            saved = save_annotation(client, "P0_L_CC", roi, annotation)
            mine = [a for a in saved if PixelRoi.from_params(a["roi"]) == roi]
            assert [(a["label"], a["morphology"], a["distribution"]) for a in mine] == [
                (label, morphology, distribution)
            ]
        assert len(MORPHOLOGIES) == 14 and len(DISTRIBUTIONS) == 5
    finally:
        removed = [
            http.delete(
                f"{server.url}/datastore/label/annotation",
                params={"image": "P0_L_CC", **roi.as_params()},
                timeout=30,
            ).status_code
            for roi in rois
        ]
    assert removed == [200] * len(rois)

"""Active learning against a real server: leases for annotators working at once, batches,
candidates on breast tissue, the strategy's name in the answer, and what each strategy ranks first.

The server of this module hosts two tiny networks built to find exactly one ROI of the pool
ambiguous (server_helpers.ambiguous_roi_models) over phantom spot views plus full-field phantom
mammograms, one with a manifest ROI placed in the air beside the breast.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import threading
import time

import numpy as np
import pytest
from server_helpers import ambiguous_roi_models, label_part, phantom_studies

pytestmark = pytest.mark.server

LEASE_DEFAULT = 600
AIR_ROI_SIZE = 96


def _crop(path, roi):
    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    return crop_roi(read_image(path), (roi["x"], roi["y"]), size_px=roi["size"]).pixels.astype(np.float32)


@pytest.fixture(scope="module")
def al_env(tmp_path_factory):
    from microcalcai.io import read_image
    from microcalcai.phantom import generate_dataset
    from microcalcai.server.pool import breast_centre_roi

    root = tmp_path_factory.mktemp("active")
    studies = phantom_studies(root, patients=14)
    folder = studies["folder"]
    # Two full-field views of one patient: the CC view has its calcification ROI plus an ROI in the
    # air beyond the nipple; the MLO view is left out of the manifest (one ROI chosen by the pool).
    full = generate_dataset(
        root / "full-field", patients=1, seed=4, spacing_mm=0.2, roi_size=AIR_ROI_SIZE, progress=False
    )
    rows = list(csv.DictReader(full.manifest_path.open()))
    cc = next(r for r in rows if r["image_path"].endswith("CC.dcm"))
    mlo = next(p for p in sorted((full.out_dir).rglob("*MLO.dcm")))
    shutil.copy(full.out_dir / cc["image_path"], folder / "FF_CC.dcm")
    shutil.copy(mlo, folder / "FF_MLO.dcm")
    pixels = read_image(folder / "FF_CC.dcm").pixels
    breast = np.nonzero(pixels[pixels.shape[0] // 2] > 0.1 * pixels.max())[0]
    if breast.min() == 0:  # the chest wall on the left, the nipple towards the right
        air_x = int(breast.max()) + AIR_ROI_SIZE
    else:
        air_x = int(breast.min()) - AIR_ROI_SIZE
    assert AIR_ROI_SIZE // 2 < air_x < pixels.shape[1] - AIR_ROI_SIZE // 2, "no air beside the breast"
    air = {"x": air_x, "y": pixels.shape[0] // 2, "size": AIR_ROI_SIZE}
    tissue = {"x": int(float(cc["roi_x"])), "y": int(float(cc["roi_y"])), "size": AIR_ROI_SIZE}
    with (folder / "manifest.csv").open("a", newline="") as handle:
        writer = csv.writer(handle)
        for roi, label in ((tissue, cc["label"]), (air, "benign")):
            writer.writerow(["FF", "FF_CC.dcm", roi["x"], roi["y"], roi["size"], label, "calcification"])
    auto = breast_centre_roi(read_image(folder / "FF_MLO.dcm").pixels).as_params()

    # every candidate's crop, as the server cuts it, for the models that find one ROI ambiguous
    crops = {}
    for row in csv.DictReader((folder / "manifest.csv").open()):
        roi = {"x": int(float(row["roi_x"])), "y": int(float(row["roi_y"])), "size": int(row["roi_size"])}
        if roi != air:
            crops[(row["image_path"].rsplit(".", 1)[0], json.dumps(roi))] = _crop(
                folder / row["image_path"], roi
            )
    crops[("FF_MLO", json.dumps(auto))] = _crop(folder / "FF_MLO.dcm", auto)
    workspace = root / "workspace"
    chosen, models = ambiguous_roi_models(workspace, root / "models", crops)
    return {
        "studies": folder,
        "workspace": workspace,
        "air": air,
        "tissue": tissue,
        "auto": auto,
        "ambiguous": (chosen[0], json.loads(chosen[1])),
        "models": models,
        "candidates": len(crops),
    }


@pytest.fixture(scope="module")
def al_server(al_env):
    from microcalcai.server.launch import LocalServer

    local = LocalServer(
        al_env["studies"],
        al_env["workspace"],
        env={"OMP_NUM_THREADS": "2", "MICROCALCAI_LEASE_SECONDS": str(LEASE_DEFAULT)},
    )
    local.start()
    yield local
    local.stop()


def _ask(server, strategy="first", **params):
    import requests

    answer = requests.post(f"{server.url}/activelearning/{strategy}", json=params, timeout=180)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _keys(answer) -> list[tuple]:
    return [(s["id"], json.dumps(s["roi"], sort_keys=True)) for s in answer.get("samples", [])]


def _release(server, client):
    assert _ask(server, client_id=client, count=0) == {}


def _label(server, image_id, roi, label="benign", annotator="dr.test"):
    import requests

    saved = requests.put(
        f"{server.url}/datastore/label",
        params={"image": image_id, "tag": "final"},
        data={"params": json.dumps({"roi": roi, "label": label, "annotator": annotator})},
        files=label_part(b""),
        timeout=60,
    )
    assert saved.status_code == 200, saved.text


# -- candidates on the breast ----------------------------------------------------------------


def test_tissue_mask_finds_the_breast_and_refuses_rois_in_air():
    from microcalcai_logic.contract import PixelRoi as Roi

    from microcalcai.server.pool import MIN_TISSUE, tissue_mask

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:400, :300]
    breast = (rows - 200) ** 2 / 190**2 + cols**2 / 170**2 < 1  # a half-disc on the left edge
    fat_and_gland = 0.3 + 0.25 * (rng.random((400, 300)) > 0.5)  # fat is about half of gland
    pixels = np.where(breast, fat_and_gland, 0.0) + rng.normal(0, 0.005, (400, 300))
    mask = tissue_mask(np.clip(pixels, 0, 1).astype(np.float32))
    assert mask.mask[breast].mean() > 0.97 and mask.mask[~breast].mean() < 0.03  # fat kept, air out
    assert mask.holds(Roi(60, 200, 64)) and mask.fraction(Roi(60, 200, 64)) == 1.0
    assert not mask.holds(Roi(260, 200, 64)) and mask.fraction(Roi(260, 200, 64)) == 0.0
    assert not mask.holds(Roi(185, 200, 64))  # straddling the skin line with its centre outside
    assert mask.holds(Roi(150, 200, 96)) and 0.6 < mask.fraction(Roi(150, 200, 96)) < 0.8
    assert mask.fraction(Roi(0, 200, 64)) == 0.5  # half of it beyond the image border: not tissue
    deepest = mask.deepest_roi(64)
    assert mask.fraction(deepest) >= MIN_TISSUE and mask.holds(deepest)
    spot = tissue_mask(np.clip(fat_and_gland + rng.normal(0, 0.01, (400, 300)), 0, 1))  # no air
    assert spot.mask.all()


def test_candidates_lie_on_the_breast(al_server, al_env):
    from microcalcai.io import read_image

    census = _ask(al_server, client_id="census", count=64)
    proposed = {(s["id"], json.dumps(s["roi"], sort_keys=True)) for s in census["samples"]}
    key = lambda image, roi: (image, json.dumps(roi, sort_keys=True))  # noqa: E731
    assert census["remaining"] == al_env["candidates"] == len(proposed)
    assert key("FF_CC", al_env["air"]) not in proposed
    assert key("FF_CC", al_env["tissue"]) in proposed
    assert key("FF_MLO", al_env["auto"]) in proposed
    for image_id, roi in ((s["id"], s["roi"]) for s in census["samples"]):
        crop = _crop(al_env["studies"] / f"{image_id}.dcm", roi)
        air = crop < 0.15 * np.median(read_image(al_env["studies"] / f"{image_id}.dcm").pixels)
        assert air.mean() < 0.5, f"{image_id} {roi}: {air.mean():.0%} of the ROI is air"
    _release(al_server, "census")


# -- leases ----------------------------------------------------------------------------------


def test_concurrent_annotators_never_get_a_leased_roi(al_server):
    clients = [f"reader-{i}" for i in range(6)]
    answers: dict[str, dict] = {}
    start = threading.Barrier(len(clients))

    def annotate(client):
        start.wait()
        answers[client] = _ask(al_server, "random", client_id=client, count=2)

    threads = [threading.Thread(target=annotate, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    handed = [k for c in clients for k in _keys(answers[c])]
    assert len(handed) == 12 and len(set(handed)) == 12, "two annotators were given the same ROI"
    assert all(answers[c]["lease_seconds"] == LEASE_DEFAULT for c in clients)  # the server's setting

    late = _ask(al_server, "first", client_id="late", count=64)
    assert late["leased_to_others"] == 12
    assert not set(_keys(late)) & set(handed)
    assert len(late["samples"]) == late["remaining"] - 12
    for client in [*clients, "late"]:
        _release(al_server, client)
    after = _ask(al_server, "first", client_id="late", count=64)
    assert after["leased_to_others"] == 0 and set(handed) <= set(_keys(after))
    _release(al_server, "late")


def test_lease_ends_when_the_label_is_saved(al_server):
    held = _ask(al_server, "first", client_id="dr.a", count=2)
    (x_id, x_roi), (y_id, y_roi) = [(s["id"], s["roi"]) for s in held["samples"]]
    other = _ask(al_server, "first", client_id="dr.b", count=64)
    assert other["leased_to_others"] == 2 and not set(_keys(held)) & set(_keys(other))

    _label(al_server, x_id, x_roi, annotator="dr.a")
    other = _ask(al_server, "first", client_id="dr.b", count=64)
    assert other["leased_to_others"] == 1  # x's lease ended with its label; y is still dr.a's
    assert (x_id, json.dumps(x_roi, sort_keys=True)) not in set(_keys(other))  # labeled: never again
    assert (y_id, json.dumps(y_roi, sort_keys=True)) not in set(_keys(other))

    _release(al_server, "dr.a")  # dr.a hands back what it holds
    other = _ask(al_server, "first", client_id="dr.b", count=64)
    assert other["leased_to_others"] == 0
    assert (y_id, json.dumps(y_roi, sort_keys=True)) in set(_keys(other))
    _release(al_server, "dr.b")


def test_lease_ends_after_its_time(al_server):
    first = _ask(al_server, "first", client_id="dr.slow", lease_seconds=1)
    mine = _keys(first)[0]
    assert first["lease_seconds"] == 1
    assert _keys(_ask(al_server, "first", client_id="dr.fast"))[0] != mine
    time.sleep(1.5)  # the lease's length, not a measure of speed
    assert _keys(_ask(al_server, "first", client_id="dr.fast"))[0] == mine
    _release(al_server, "dr.fast")


def test_same_annotator_asking_again_gets_what_it_holds_back(al_server):
    one = _ask(al_server, "first", client_id="dr.c", count=3)
    two = _ask(al_server, "first", client_id="dr.c", count=3)
    assert _keys(one) == _keys(two)  # its own lease does not hide an ROI from it
    _release(al_server, "dr.c")


# -- batches ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy, params",
    [
        ("first", {}),
        ("random", {"seed": 1}),
        ("uncertain", {"method": "entropy", "selection": "top"}),
        ("uncertain", {"method": "entropy", "selection": "diverse"}),
        ("uncertain", {"method": "entropy", "selection": "balanced"}),
        ("uncertain", {"method": "bald", "mc_samples": 4}),  # the default selection, diverse
        ("uncertain", {"method": "bald", "mc_samples": 4, "selection": "top"}),
        ("uncertain", {"method": "bald", "selection": "balanced"}),
        ("typical", {"seed": 2}),
        ("auto", {"seed": 3}),
    ],
)
def test_batch_proposals_are_distinct_unlabeled_and_counted(al_server, strategy, params):
    import requests

    answer = _ask(al_server, strategy, client_id="batcher", count=5, **params)
    assert answer["count"] == 5 and len(answer["samples"]) == 5
    assert len(set(_keys(answer))) == 5
    assert {k: answer[k] for k in ("id", "roi", "strategy")} == {
        k: answer["samples"][0][k] for k in ("id", "roi", "strategy")
    }
    labeled = set()
    for image_id in {s["id"] for s in answer["samples"]}:
        document = requests.get(
            f"{al_server.url}/datastore/label", params={"label": image_id, "tag": "final"}, timeout=30
        )
        if document.status_code == 200:
            labeled |= {json.dumps(a["roi"], sort_keys=True) for a in document.json()["annotations"]}
    assert not {json.dumps(s["roi"], sort_keys=True) for s in answer["samples"]} & labeled
    if strategy == "uncertain":
        scores = [s["score"] for s in answer["samples"]]
        assert scores == sorted(scores, reverse=True)  # best first
    everything = _ask(al_server, strategy, client_id="batcher", count=64, **params)
    assert everything["count"] == everything["remaining"] < 64  # as many as there are, no more
    _release(al_server, "batcher")


@pytest.mark.parametrize("count", [-1, 65, "3", True, 2.5])
def test_bad_count_is_a_clear_400(al_server, count):
    import requests

    answer = requests.post(f"{al_server.url}/activelearning/first", json={"count": count}, timeout=60)
    assert answer.status_code == 400 and "params.count" in answer.json()["detail"]


def test_diverse_batch_takes_one_of_each_kind_where_top_scores_repeat_one():
    from microcalcai.server.uncertainty import PREFILTER, diverse_batch

    rng = np.random.default_rng(1)
    per_kind = PREFILTER  # all 3 kinds fit in the shortlist of PREFILTER x 3
    centres = np.eye(4)[:3] * 10  # three kinds of ROI far apart in feature space
    features = np.concatenate([c + rng.normal(0, 0.1, (per_kind, 4)) for c in centres])
    scores = np.concatenate([level - rng.random(per_kind) * 0.01 for level in (0.69, 0.5, 0.45)])
    top = np.argsort(-scores)[:3]
    assert {int(i) // per_kind for i in top} == {0}  # the top scores are all of the first kind
    picked = diverse_batch(scores, features, 3, seed=0)
    assert len(set(picked)) == 3 and {i // per_kind for i in picked} == {0, 1, 2}
    assert scores[picked[0]] >= scores[picked[1]] >= scores[picked[2]]  # best first


def _blobs(sizes: list[int], spread: float = 0.1, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Tight groups of points far apart in a 6-dimensional feature space, and each point's group."""
    rng = np.random.default_rng(seed)
    centres = np.eye(6)[: len(sizes)] * 10
    points = np.concatenate([c + rng.normal(0, spread, (n, 6)) for c, n in zip(centres, sizes, strict=True)])
    return points, np.repeat(np.arange(len(sizes)), sizes)


def test_typical_batch_takes_regions_no_label_covers():
    from microcalcai.server.typicality import typical_batch

    # group 0 is all labelled; groups 1 and 2 have no label: the batch takes one of each
    points, group = _blobs([3, 12, 12])
    covered = group == 0
    picked = typical_batch(points, covered, 2, seed=0)
    assert len(picked) == 2 and not covered[picked].any()
    assert sorted(group[picked].tolist()) == [1, 2]
    # a labelled group as large as the others, a lone unlabelled ROI in it: the first pick is
    # still from a group nobody labelled
    points, group = _blobs([12, 12])
    covered = (group == 0) & (np.arange(24) != 5)
    assert group[typical_batch(points, covered, 1, seed=0)[0]] == 1
    assert typical_batch(points, np.ones(24, bool), 3) == []  # all covered: nothing to propose
    assert len(set(typical_batch(points, covered, 30, seed=0))) == 13  # all 13 free ROIs, once


def test_typicality_is_highest_where_the_pool_is_dense():
    from microcalcai.server.typicality import typicality

    points, _ = _blobs([25], spread=1.0)
    centre = points.mean(axis=0)
    outlier = np.vstack([points, centre + 8])
    dense = typicality(outlier)
    nearest_centre = int(np.argmin(np.linalg.norm(points - centre, axis=1)))
    assert int(np.argmin(dense)) == 25  # the outlier is the least typical
    assert dense[nearest_centre] > np.median(dense)


def test_typical_counts_labelled_and_leased_rois_as_covered(al_server, al_env):
    held = _ask(al_server, "random", client_id="typ-holder", count=3, seed=5)
    answer = _ask(al_server, "typical", client_id="typ-asker", count=2, seed=0)
    assert answer["strategy"] == "typical" and answer["count"] == 2
    assert not set(_keys(answer)) & set(_keys(held))  # never an ROI another annotator holds
    # free and covered together: every candidate on the breast, labelled or not
    assert answer["candidates"] + answer["covered"] == al_env["candidates"]
    assert answer["covered"] >= 3
    # fewer unlabeled ROIs looked at (max_candidates): the same share of the covered ones
    part = _ask(al_server, "typical", client_id="typ-asker", count=1, seed=0, max_candidates=4)
    assert part["candidates"] == 4
    assert part["covered"] == round(answer["covered"] * 4 / answer["candidates"])
    _release(al_server, "typ-holder")
    _release(al_server, "typ-asker")


def test_balanced_batch_takes_the_most_uncertain_of_each_side_of_the_decision():
    from microcalcai.server.uncertainty import balanced_batch, binary_entropy

    # a model leaning benign: the 8 most uncertain ROIs are all on the benign side
    probability = np.array([0.45, 0.44, 0.43, 0.42, 0.41, 0.40, 0.39, 0.38, 0.9, 0.95, 0.97, 0.05])
    scores = binary_entropy(probability)
    assert set(np.argsort(-scores)[:4].tolist()) <= set(range(8))  # top scores: one side only
    picked = balanced_batch(scores, probability, 4, threshold=0.5)
    assert sorted(picked) == [0, 1, 8, 9]  # two of each side, the most uncertain of each
    assert [scores[i] for i in picked] == sorted((scores[i] for i in picked), reverse=True)
    odd = balanced_batch(scores, probability, 5, threshold=0.5)
    assert sorted(odd) == [0, 1, 8, 9, 10]  # the odd one to the malignant side
    # a model calling everything benign: the sides are split at the median probability instead
    low = probability * 0.4
    picked = balanced_batch(binary_entropy(low), low, 4, threshold=0.5)
    assert sum(low[i] >= np.median(low) for i in picked) == 2
    assert balanced_batch(scores[:3], probability[:3], 5) == [0, 1, 2]  # fewer than asked: all


def test_proposals_score_with_the_served_models_probability(al_server):
    """The strategy scores from cached features and the classifier alone: its P(malignant) for
    each proposal must be what /infer answers for that ROI, and its entropy that P's."""
    import requests

    from microcalcai.server.uncertainty import binary_entropy

    for params in ({"method": "entropy"}, {"method": "bald"}):
        answer = _ask(al_server, "uncertain", client_id="checker", count=4, selection="top", **params)
        for sample in answer["samples"]:
            served = requests.post(
                f"{al_server.url}/infer/ensemble",
                params={"image": sample["id"], "output": "json"},
                data={"params": json.dumps({"roi": sample["roi"]})},
                files={"_": ("", b"")},
                timeout=180,
            )
            assert served.status_code == 200, served.text
            # batched vs one ROI: float32 rounding, amplified by these heads' steep logit scale
            assert sample["probability"] == pytest.approx(served.json()["probability"], abs=1e-4)
            if params["method"] == "entropy":
                assert sample["score"] == pytest.approx(
                    float(binary_entropy(sample["probability"])), abs=1e-6
                )
    _release(al_server, "checker")


# -- what each strategy ranks first ----------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"method": "entropy"},
        {"method": "bald", "mc_samples": 16},
        {"method": "bald", "mc_samples": 16, "model": "amb-b"},
    ],
    ids=["entropy", "bald-ensemble", "bald-member"],
)
def test_uncertainty_ranks_the_ambiguous_roi_first(al_server, al_env, params):
    image_id, roi = al_env["ambiguous"]
    answer = _ask(al_server, "uncertain", client_id="ranker", selection="top", **params)
    assert (answer["id"], answer["roi"]) == (image_id, roi)
    if params["method"] == "entropy":
        assert answer["score"] == pytest.approx(math.log(2), abs=1e-3)
        following = _ask(al_server, "uncertain", client_id="ranker", count=3, selection="top", **params)
        assert following["samples"][1]["score"] < 0.01  # the models are sure of every other ROI
    _release(al_server, "ranker")


# -- the answer's strategy -------------------------------------------------------------------


def test_strategy_in_the_answer_stays_its_name(al_server):
    for _ in range(3):  # the same image proposed again: MONAI Label's record used to replace the name
        first = _ask(al_server, "first", client_id="dr.d")
        assert first["strategy"] == "first"
        uncertain = _ask(al_server, "uncertain", client_id="dr.d")
        assert uncertain["strategy"] == "uncertain"
        assert all(s["strategy"] == "uncertain" for s in uncertain["samples"])
    assert isinstance(first.get("sampled_by", {}).get("first"), dict)  # MONAI Label's record, kept
    _release(al_server, "dr.d")


def test_auto_asks_uncertain_while_labels_are_few_and_random_after(al_server, al_env):
    """`auto` answers exactly what `uncertain` (its defaults) or `random` answers with the same
    seed, switching where the labelled ROIs reach params.switch_labels."""
    early = _ask(al_server, "auto", client_id="stager", count=3, seed=4, switch_labels=10_000)
    labelled = early["labelled"]
    assert labelled == al_env["candidates"] - early["remaining"]  # the pool's ROIs with a label
    assert early["stage"] == "uncertain" and early["strategy"] == "auto"
    assert all(s["strategy"] == "auto" and "score" in s for s in early["samples"])
    uncertain = _ask(al_server, "uncertain", client_id="stager", count=3, seed=4)
    assert _keys(early) == _keys(uncertain)
    at_switch = _ask(al_server, "auto", client_id="stager", count=3, seed=4, switch_labels=labelled)
    at_random = _ask(al_server, "random", client_id="stager", count=3, seed=4)
    assert at_switch["stage"] == "random" and _keys(at_switch) == _keys(at_random)
    assert _keys(at_random) != _keys(uncertain)  # the two stages tell apart
    below = _ask(al_server, "auto", client_id="stager", count=3, seed=4, switch_labels=labelled + 1)
    assert below["stage"] == "uncertain" and _keys(below) == _keys(uncertain)
    _release(al_server, "stager")


def test_auto_switch_must_be_a_count(al_server):
    import requests

    for bad in (-1, "ten", 2.5, True):
        answer = requests.post(
            f"{al_server.url}/activelearning/auto", json={"switch_labels": bad}, timeout=60
        )
        assert answer.status_code == 400 and "params.switch_labels" in answer.json()["detail"]


def test_lease_setting_is_checked():
    from microcalcai.server.errors import RequestError
    from microcalcai.server.leases import LeaseBook, lease_seconds_setting

    assert lease_seconds_setting({"lease_seconds": "30"}) == 30.0
    for bad in ("abc", "0", "-5", "nan", "1e9"):
        with pytest.raises(RequestError, match="lease_seconds"):
            lease_seconds_setting({"lease_seconds": bad})
    now = [100.0]
    book = LeaseBook(10, clock=lambda: now[0])
    book.grant("a", [("img", (1, 2, 3))])
    assert book.held_by_others("b") == {("img", (1, 2, 3))} and book.held_by_others("a") == set()
    now[0] += 10.5
    assert book.held_by_others("b") == set() and len(book) == 0


def test_benchmark_asks_a_batch_in_parts_without_labelling_and_hands_it_back(
    al_server, load_benchmark, monkeypatch
):
    """bench_active_learning --first-picks: a batch larger than the server's MAX_COUNT comes in
    parts, each held by an annotator of its own so no ROI comes twice, and all go back after."""
    import microcalcai.server.strategies as strategies

    bench = load_benchmark("bench_active_learning")
    monkeypatch.setattr(strategies, "MAX_COUNT", 2)  # the benchmark's parts, not the server's limit
    picked = bench.Annotator(al_server.url, {}).propose_unlabelled("random", {}, 5, seed=7)
    keys = [(s["id"], json.dumps(s["roi"], sort_keys=True)) for s in picked]
    assert len(keys) == 5 == len(set(keys))
    everything = _ask(al_server, "random", client_id="after-picks", count=64)
    # every part handed back (another annotator is offered them), none of them labelled
    assert set(keys) <= set(_keys(everything))
    _release(al_server, "after-picks")

"""The crop ceiling: the best AUC from what an ROI crop shows, between morphology-only and Bayes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from microcalcai.errors import InputError
from microcalcai.phantom import ceiling
from microcalcai.phantom import malignancy as mal

SUSPICIOUS = ["amorphous", "fine_pleomorphic", "fine_linear_branching"]


def _morphology_only_auc(weights=None) -> float:
    """Written out independently: each morphology scored by its mean P(malignant) over distributions."""
    cells = mal.cell_table(weights)
    by_m: dict[str, list] = {}
    for c in cells:
        by_m.setdefault(c["morphology"], []).append(c)
    w = [sum(c["weight"] for c in cs) for cs in by_m.values()]
    p = [
        sum(c["weight"] * c["p_malignant"] for c in cs) / sum(c["weight"] for c in cs) for cs in by_m.values()
    ]
    # the same pairwise sum as expected_bayes_auc, over morphologies instead of cells
    w, p = np.array(w), np.array(p)
    pos, neg = w * p / np.sum(w * p), w * (1 - p) / np.sum(w * (1 - p))
    tie = np.isclose(p[:, None], p[None, :], rtol=0, atol=1e-12)  # e.g. round and vascular, 0.5%
    order = (p[:, None] > p[None, :]) * ~tie + 0.5 * tie
    return float(np.sum(pos[:, None] * neg[None, :] * order))


def test_a_crop_that_shows_everything_reaches_the_bayes_optimal_auc():
    assert ceiling.expected_crop_ceiling_auc(math.inf) == pytest.approx(mal.expected_bayes_auc(), abs=1e-12)
    assert ceiling.expected_crop_ceiling_auc(math.inf, SUSPICIOUS) == pytest.approx(
        mal.expected_bayes_auc(SUSPICIOUS), abs=1e-12
    )


def test_a_crop_that_shows_no_distribution_gives_the_morphology_only_auc():
    assert ceiling.expected_crop_ceiling_auc(0.0) == pytest.approx(_morphology_only_auc(), abs=1e-12)
    assert ceiling.expected_crop_ceiling_auc(0.0, SUSPICIOUS) == pytest.approx(
        _morphology_only_auc(SUSPICIOUS), abs=1e-12
    )


def test_ceiling_is_below_bayes_and_grows_with_the_crop():
    bayes = mal.expected_bayes_auc(SUSPICIOUS)
    sizes = [0.0, 9.0, 18.0, 36.0, math.inf]
    values = [ceiling.expected_crop_ceiling_auc(mm, SUSPICIOUS) for mm in sizes]
    assert all(v <= bayes + 1e-12 for v in values)
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:], strict=False))
    # with suspicious morphologies the distribution matters: a small crop loses AUC
    assert values[0] < bayes - 0.02


def test_fit_fraction_follows_the_layouts():
    # a grouped cluster is at most 10 mm across: it fits an 18-mm crop; diffuse never fits
    assert ceiling.fit_fraction("amorphous", "grouped", 18.0) == 1.0
    assert ceiling.fit_fraction("amorphous", "diffuse", 500.0) == 0.0
    # a segmental finding spans 22-40 mm: never in a 13-mm crop, mostly in a 45-mm one
    assert ceiling.fit_fraction("fine_linear_branching", "segmental", 13.0) == 0.0
    assert ceiling.fit_fraction("fine_linear_branching", "segmental", 45.0) > 0.8


def test_drawn_ceiling_scores_rois_by_what_their_crop_shows():
    rng = np.random.default_rng(3)
    cells = mal.draw_cells(rng, 400, SUSPICIOUS)
    labels = mal.draw_labels(rng, [mal.malignancy_probability(m, d) for m, d in cells])
    spacing, size = 0.1, 100  # 10-mm crops centred on (500, 500)
    rows, particles, expected = [], [], []
    for i, ((m, d), y) in enumerate(zip(cells, labels, strict=True)):
        inside = i % 2 == 0 and d != "diffuse"
        offset = 10 if inside else 80  # pixels from the ROI centre; the crop reaches 50
        rows.append(
            dict(
                roi_id=f"r{i}",
                roi_x=500,
                roi_y=500,
                roi_size=size,
                morphology=m,
                distribution=d,
                label="malignant" if y else "benign",
                finding="calcification",
            )
        )
        particles.append(dict(roi_id=f"r{i}", x=500 + offset, y=500, size_mm=0.3))
        expected.append(ceiling.visible_probability(m, d, inside, size * spacing, SUSPICIOUS))
    drawn = ceiling.drawn_crop_ceiling_auc(rows, particles, spacing_mm=spacing, morphology_weights=SUSPICIOUS)
    assert drawn == pytest.approx(roc_auc_score(labels, expected))
    # a finding inside the crop is scored by its true probability, one beyond it by its
    # morphology's mean over the findings a crop this size cannot hold
    assert ceiling.visible_probability("amorphous", "linear", True, 10.0) == mal.malignancy_probability(
        "amorphous", "linear"
    )
    beyond = ceiling.visible_probability("amorphous", "linear", False, 10.0)
    assert (
        mal.malignancy_probability("amorphous", "diffuse")
        < beyond
        < mal.malignancy_probability("amorphous", "segmental")
    )
    # everything inside: the drawn ceiling is the drawn Bayes-optimal AUC
    for p in particles:
        p["x"] = 500
    truth = [mal.malignancy_probability(m, d) for m, d in cells]
    inside_all = [r for r in rows if r["distribution"] != "diffuse"]
    keep = [i for i, r in enumerate(rows) if r["distribution"] != "diffuse"]
    assert ceiling.drawn_crop_ceiling_auc(
        inside_all, particles, spacing_mm=spacing, morphology_weights=SUSPICIOUS
    ) == pytest.approx(roc_auc_score(labels[keep], np.array(truth)[keep]))


def test_bad_crop_size_is_refused():
    with pytest.raises(InputError, match="crop_mm"):
        ceiling.expected_crop_ceiling_auc(-1.0)
    with pytest.raises(InputError, match="crop_mm"):
        ceiling.fit_fraction("amorphous", "grouped", "wide")

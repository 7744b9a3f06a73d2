"""Labels follow the documented malignancy table, and the Bayes-optimal AUC is what it says."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from microcalcai.errors import InputError
from microcalcai.phantom import malignancy as mal


def test_table_matches_documented_values():
    # The grouped distribution carries each morphology's PPV (docs/phantom.md)
    assert mal.malignancy_probability("fine_linear_branching", "grouped") == pytest.approx(0.70)
    assert mal.malignancy_probability("fine_pleomorphic", "grouped") == pytest.approx(0.29)
    assert mal.malignancy_probability("amorphous", "grouped") == pytest.approx(0.20)
    # linear and segmental distributions raise the odds, diffuse lowers them
    assert (
        mal.malignancy_probability("amorphous", "segmental")
        > mal.malignancy_probability("amorphous", "linear")
        > mal.malignancy_probability("amorphous", "grouped")
        > mal.malignancy_probability("amorphous", "diffuse")
    )
    # typically benign morphologies stay below 1% whatever the distribution
    for m in mal.TYPICALLY_BENIGN:
        for d in mal.DISTRIBUTION_WEIGHTS[m]:
            assert mal.malignancy_probability(m, d) < 0.01
    for m, row in mal.DISTRIBUTION_WEIGHTS.items():
        assert sum(row.values()) == pytest.approx(1.0), m


def test_drawn_labels_per_morphology_match_the_table():
    rng = np.random.default_rng(2024)
    n = 60_000
    cells = mal.draw_cells(rng, n)
    probs = np.array([mal.malignancy_probability(m, d) for m, d in cells])
    labels = mal.draw_labels(rng, probs)
    morph = np.array([m for m, _ in cells])
    weights = mal.normalise_morphology_weights(None)
    for m in mal.MORPHOLOGIES:
        sel = morph == m
        # how often each morphology is drawn
        share = sel.mean()
        assert abs(share - weights[m]) < 4 * np.sqrt(weights[m] * (1 - weights[m]) / n), m
        # malignancy frequency vs the expected mean probability of that morphology's cells
        expected = sum(w * mal.malignancy_probability(m, d) for d, w in mal.DISTRIBUTION_WEIGHTS[m].items())
        k = sel.sum()
        sd = np.sqrt(max(expected * (1 - expected), 1e-4) / k)
        assert abs(labels[sel].mean() - expected) < 4 * sd + 1e-3, (m, labels[sel].mean(), expected)


def test_bayes_auc_expected_value_matches_simulation_and_is_below_one():
    expected = mal.expected_bayes_auc()
    rng = np.random.default_rng(5)
    cells = mal.draw_cells(rng, 40_000)
    probs = np.array([mal.malignancy_probability(m, d) for m, d in cells])
    labels = mal.draw_labels(rng, probs)
    drawn = roc_auc_score(labels, probs)
    assert 0.75 < expected < 0.98  # label noise: no classifier can reach 1
    assert abs(drawn - expected) < 0.01
    assert mal.empirical_auc(labels, probs) == pytest.approx(drawn)
    assert mal.empirical_auc([1, 1], [0.2, 0.3]) is None


def test_restricting_morphologies_changes_prevalence_and_auc():
    easy = ["round", "fine_linear_branching"]
    # with one morphology only the distribution is left to discriminate (AUC 0.68 vs 0.90)
    assert mal.expected_bayes_auc(["fine_linear_branching"]) < mal.expected_bayes_auc(easy) - 0.1
    assert mal.expected_prevalence(["round"]) < 0.01
    assert set(c["morphology"] for c in mal.cell_table(easy)) == set(easy)


def test_unknown_morphology_or_distribution_is_refused():
    with pytest.raises(InputError, match="not a known BI-RADS morphology.*punctate"):
        mal.malignancy_probability("spiculated", "grouped")
    with pytest.raises(InputError, match="distribution"):
        mal.malignancy_probability("punctate", "clustered")
    with pytest.raises(InputError, match="weight"):
        mal.normalise_morphology_weights({"punctate": -1.0})
    with pytest.raises(InputError, match="empty"):
        mal.normalise_morphology_weights([])

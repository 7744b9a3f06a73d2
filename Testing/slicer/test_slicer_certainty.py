"""How sure the models are (microcalcai_logic.certainty): members' agreement around the threshold
and the model card's calibration, in the words the Slicer panel and the web page show."""

from __future__ import annotations

import numpy as np
import pytest
from microcalcai_logic.certainty import certainty, reliability_note, summary
from microcalcai_logic.classify import parse_answer
from microcalcai_logic.client import parse_info


def test_agreeing_members_have_a_small_spread_and_no_split():
    found = certainty({"a": 0.81, "b": 0.83, "c": 0.82}, threshold=0.5)
    assert found.spread == pytest.approx(np.std([0.81, 0.83, 0.82]))
    assert not found.split and found.members == 3
    assert found.agreement.startswith("the models agree (spread ±0.008 over 3 models)")


def test_members_on_both_sides_of_the_threshold_are_called_a_disagreement():
    found = certainty({"a": 0.2, "b": 0.7}, threshold=0.5)
    assert found.split and found.spread == pytest.approx(0.25)
    assert "some above the threshold, some below" in found.agreement
    # Far apart but on the same side: a disagreement in size, not in decision.
    apart = certainty({"a": 0.55, "b": 0.95}, threshold=0.5)
    assert not apart.split and apart.agreement.startswith("the models disagree (spread ±0.200")


def test_one_model_says_there_is_no_second_opinion():
    found = certainty({}, threshold=0.5)
    assert found.spread is None and "one model" in found.agreement


def test_reliability_comes_from_the_card_or_says_it_was_not_measured():
    assert "calibration not measured" in reliability_note({"auc": 0.8})
    assert reliability_note({"expected_calibration_error": 0.042, "brier": 0.18}) == (
        "on its validation ROIs: expected calibration error 0.042, Brier score 0.180"
    )
    assert "not measured" in reliability_note({"brier": float("nan")})


def test_parse_answer_attaches_certainty_from_members_and_the_model_card():
    info = parse_info(
        "http://127.0.0.1:1",
        {
            "models": {
                "ensemble": {"threshold": 0.5, "members": ["m1", "m2"], "val_metrics": {"ece": 0.07}},
                "m1": {"threshold": 0.4},
                "m2": {"threshold": 0.6},
            }
        },
    )
    answer = {
        "model": "ensemble",
        "probability": 0.55,
        "threshold": 0.5,
        "label": "malignant",
        "members": {"m1": 0.3, "m2": 0.8},
        "roi": {"x": 10, "y": 10, "size": 8},
    }
    result = parse_answer(answer, info, "ensemble")
    assert result.certainty.spread == pytest.approx(0.25) and result.certainty.split
    assert "expected calibration error 0.070" in result.certainty.reliability
    text = summary(result.certainty)
    assert text.startswith("\nHow sure: the models disagree") and "Reliability: on its validation" in text
    single = parse_answer({**answer, "model": "m1", "members": {"m1": 0.3}}, info, "m1")
    assert single.certainty.spread is None and "calibration not measured" in single.certainty.reliability

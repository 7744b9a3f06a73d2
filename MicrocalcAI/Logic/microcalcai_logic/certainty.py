"""How sure the models are about one ROI, in words shown beside the probability.

Two things a reader needs beside P(malignant):
- agreement: an ensemble's members can average to 0.5 by all saying 0.5 or by half saying 0.1
  and half 0.9. The spread (standard deviation) of the members' probabilities, and whether the
  members fall on both sides of the threshold, tell them apart (the server's infer answer lists
  every member's probability).
- reliability: whether a probability of 0.8 means "malignant 8 times in 10" depends on the
  model's calibration, measured on its validation ROIs (expected calibration error or Brier
  score in the model card, which /info shows). A model whose card records neither says so.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np

# Below this spread the members agree closely; above DISAGREE they disagree enough to matter.
AGREE = 0.05
DISAGREE = 0.15


@dataclass(frozen=True)
class Certainty:
    spread: Optional[float]  # standard deviation of the members' P(malignant); None for one model
    members: int
    split: bool  # members on both sides of the threshold
    agreement: str  # one line: how far the members agree
    reliability: str  # one line: what the model's calibration says about its probabilities


def certainty(
    members: Mapping[str, float],
    threshold: Optional[float],
    metrics: Optional[Mapping[str, object]] = None,
) -> Certainty:
    values = np.asarray([float(p) for p in members.values()], dtype=float)
    if len(values) < 2:
        spread, split = None, False
        agreement = "one model: no second opinion to compare with (use the ensemble to see agreement)"
    else:
        spread = float(values.std())
        split = threshold is not None and bool((values >= threshold).any() and (values < threshold).any())
        if split:
            words = "the models disagree: some above the threshold, some below"
        elif spread < AGREE:
            words = "the models agree"
        elif spread < DISAGREE:
            words = "the models roughly agree"
        else:
            words = "the models disagree"
        agreement = f"{words} (spread ±{spread:.3f} over {len(values)} models)"
    return Certainty(spread, len(values), split, agreement, reliability_note(metrics))


def reliability_note(metrics: Optional[Mapping[str, object]]) -> str:
    """The model's calibration on its validation ROIs, from the model card's metrics."""
    metrics = metrics or {}
    ece = _number(metrics.get("expected_calibration_error", metrics.get("ece")))
    brier = _number(metrics.get("brier", metrics.get("brier_score")))
    if ece is None and brier is None:
        return (
            "calibration not measured for this model: read P(malignant) as a ranking score, "
            "not as a frequency"
        )
    parts = []
    if ece is not None:
        parts.append(f"expected calibration error {ece:.3f}")
    if brier is not None:
        parts.append(f"Brier score {brier:.3f}")
    return "on its validation ROIs: " + ", ".join(parts)


def _number(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def summary(found: Optional[Certainty]) -> str:
    """Two lines for a status label under the probability (empty without an answer)."""
    if found is None:
        return ""
    return f"\nHow sure: {found.agreement}.\nReliability: {found.reliability}."

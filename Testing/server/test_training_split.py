"""The train/val split of saved labels: a patient keeps its side while labels grow round by round."""

from __future__ import annotations

import pandas as pd

from microcalcai.server.training_data import split_by_patient


def _labels(patients: range) -> pd.DataFrame:
    rows = []
    for p in patients:
        for roi in range(2):  # two ROIs a patient, every third patient malignant
            rows.append(
                {
                    "patient_id": f"P{p}",
                    "image_id": f"P{p}_{roi}",
                    "label": "malignant" if p % 3 == 0 else "benign",
                }
            )
    return pd.DataFrame(rows)


def _sides(split: pd.DataFrame) -> dict[str, str]:
    sides = split.groupby("patient_id")["split"].agg(set)
    assert (sides.map(len) == 1).all(), "a patient on both sides"
    return sides.map(lambda s: next(iter(s))).to_dict()


def test_a_patient_keeps_its_side_as_labels_grow():
    rounds = [_split(range(0, n)) for n in (60, 120, 200)]
    for earlier, later in zip(rounds, rounds[1:], strict=False):
        moved = [p for p, side in earlier.items() if later[p] != side]
        assert moved == [], f"patients moved between train and val as labels grew: {moved}"
    final = rounds[-1]
    share = sum(side == "val" for side in final.values()) / len(final)
    assert 0.2 < share < 0.4, f"val holds {share:.0%} of the patients, asked 30%"


def test_a_few_patients_still_get_both_classes_on_both_sides():
    split = split_by_patient(_labels(range(6)), 0.3, seed=0, min_per_class=2)
    for part in ("train", "val"):
        assert set(split.loc[split.split == part, "label"]) == {"benign", "malignant"}


def test_the_seed_changes_the_split():
    assert _split(range(120), seed=0) != _split(range(120), seed=1)


def _split(patients: range, seed: int = 0) -> dict[str, str]:
    return _sides(split_by_patient(_labels(patients), 0.3, seed=seed, min_per_class=2))

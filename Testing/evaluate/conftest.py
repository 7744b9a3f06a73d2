"""Fixtures for the evaluation tests: pROC's aSAH data and predictions.csv files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def asah() -> pd.DataFrame:
    """pROC's aSAH data (113 patients, 41 Poor outcomes), copied into Testing/evaluate/data."""
    df = pd.read_csv(DATA / "aSAH.csv")
    assert len(df) == 113 and int((df.outcome == "Poor").sum()) == 41
    return df


@pytest.fixture(scope="session")
def asah_csv() -> Path:
    return DATA / "aSAH.csv"


def make_predictions(
    n: int = 200,
    *,
    seed: int = 0,
    members: dict[str, float] | None = None,
    rois_per_patient: int = 1,
    threshold: float | None = 0.5,
    reader: bool = False,
    model: str = "ensemble",
    split: str | None = "test",
) -> pd.DataFrame:
    """A predictions.csv table as docs/DESIGN.md describes it, with members of given separation."""
    rng = np.random.default_rng(seed)
    members = members if members is not None else {"resnet101": 1.6, "densenet201": 1.2}
    y = np.zeros(n, bool)
    y[rng.permutation(n)[: int(round(0.4 * n))]] = True
    df = pd.DataFrame(
        {
            "case_id": [f"roi{i:04d}" for i in range(n)],
            "patient_id": [f"pat{i // rois_per_patient:04d}" for i in range(n)],
            "image_id": [f"img{i:04d}" for i in range(n)],
            "label": np.where(y, "malignant", "benign"),
        }
    )
    if split is not None:
        df["split"] = split
    probs = []
    for name, sep in members.items():
        p = 1.0 / (1.0 + np.exp(-(sep * (2 * y - 1) + rng.normal(0.0, 1.0, n))))
        df[f"p_{name}"] = p
        probs.append(p)
    prob = np.mean(probs, axis=0)
    df["probability"] = prob
    df["threshold"] = "" if threshold is None else threshold
    df["decision"] = np.where(prob >= (0.5 if threshold is None else threshold), "malignant", "benign")
    df["model"] = model
    if reader:
        df["reader_radiologist"] = np.where(
            y,
            rng.choice(["3", "4a", "4b", "4c", "5"], n, p=[0.05, 0.2, 0.25, 0.25, 0.25]),
            rng.choice(["2", "3", "4a", "4b", "4c"], n, p=[0.2, 0.3, 0.3, 0.15, 0.05]),
        )
    return df


@pytest.fixture(scope="session")
def prediction_table():
    """make_predictions itself, for module-scoped fixtures (conftest cannot be imported by name)."""
    return make_predictions


@pytest.fixture
def predictions_factory(tmp_path):
    """Write a predictions.csv built by make_predictions; returns its path."""
    counter = iter(range(1000))

    def write(df: pd.DataFrame | None = None, name: str | None = None, **kwargs) -> Path:
        table = df if df is not None else make_predictions(**kwargs)
        path = tmp_path / (name or f"predictions{next(counter)}.csv")
        table.to_csv(path, index=False)
        return path

    write.make = make_predictions
    return write

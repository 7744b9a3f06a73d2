"""Fixtures for the training tests: a small phantom data set and tiny recipe settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # train_helpers.py next to this file

from train_helpers import TINY  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: a second intra-op thread costs more than it gains (and spins beside other jobs)."""
    from microcalcai.train.loop import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def phantom_manifest(tmp_path_factory) -> Path:
    """A phantom of 20 patients, one CC spot view each, 64 px ROIs, benign and malignant findings."""
    import pandas as pd

    from microcalcai.phantom import generate_dataset

    out = tmp_path_factory.mktemp("phantom") / "set"
    result = generate_dataset(
        out,
        patients=20,
        seed=5,
        roi_size=64,
        spacing_mm=0.15,
        full_field=False,
        views=("CC",),
        bilateral=False,
        progress=False,
        morphologies={"punctate": 1, "fine_linear_branching": 1},
    )
    labels = pd.read_csv(result.manifest_path)["label"].value_counts()
    assert labels.get("benign", 0) >= 6 and labels.get("malignant", 0) >= 6, labels.to_dict()
    return result.manifest_path


@pytest.fixture()
def tiny():
    return list(TINY)

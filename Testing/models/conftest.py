"""Fixtures for the model zoo tests: small saved models made here, never downloaded."""

from __future__ import annotations

import numpy as np
import pytest


def _saved_model(folder, arch: str, name: str, input_size: int, threshold: float, seed: int):
    """A randomly initialised model saved as a model folder."""
    import torch

    from microcalcai.models import card_for, create_model, save_model

    torch.manual_seed(seed)
    card = card_for(arch, name=name, input_size=input_size, threshold=threshold)
    return save_model(create_model(arch, "none"), card, folder / name)


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    return _saved_model(
        tmp_path_factory.mktemp("models"), "tf_efficientnet_lite0", "lite0-a", 64, 0.4, seed=0
    )


@pytest.fixture(scope="session")
def second_model_dir(tmp_path_factory):
    return _saved_model(tmp_path_factory.mktemp("models"), "mobilenetv3_large_100", "mnv3-b", 72, 0.6, seed=1)


@pytest.fixture()
def crops():
    rng = np.random.default_rng(0)
    return rng.random((5, 48, 48), dtype=np.float32)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: a second intra-op thread costs more than it gains (and spins beside other jobs)."""
    from microcalcai.train.loop import torch_threads

    with torch_threads(1):
        yield

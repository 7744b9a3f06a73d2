"""Fixtures for the saliency tests: blob crops with known masks, a tiny CNN trained on them for a few
seconds, and small model folders saved with the project's own artifact code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from blobs import make_crops, train_tiny_cnn  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The networks in these tests are small: one thread is faster than two on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def blob_train():
    return make_crops(192, seed=1)


@pytest.fixture(scope="session")
def blob_test():
    return make_crops(24, seed=2)


@pytest.fixture(scope="session")
def trained_cnn(blob_train):
    crops, _, labels = blob_train
    return train_tiny_cnn(crops, labels)


def _saved(tmp_path_factory, arch, name, input_size, seed, threshold=0.5):
    import torch

    from microcalcai.models import card_for, create_model, save_model

    torch.manual_seed(seed)
    module = create_model(arch, "none")
    card = card_for(arch, name=name, input_size=input_size, threshold=threshold)
    return save_model(module, card, tmp_path_factory.mktemp("explain-models") / name)


@pytest.fixture(scope="session")
def lite0_dir(tmp_path_factory):
    return _saved(tmp_path_factory, "tf_efficientnet_lite0", "lite0-x", 64, 0, threshold=0.45)


@pytest.fixture(scope="session")
def mnv3_dir(tmp_path_factory):
    return _saved(tmp_path_factory, "mobilenetv3_large_100", "mnv3-x", 72, 1, threshold=0.55)


@pytest.fixture(scope="session")
def ensemble_dir(tmp_path_factory, lite0_dir, mnv3_dir):
    from microcalcai.models.ensemble import save_ensemble

    return save_ensemble([lite0_dir, mnv3_dir], tmp_path_factory.mktemp("explain-ens") / "ens", threshold=0.5)

"""Fixtures for the model zoo tests: small saved models made here, never downloaded."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """A randomly initialised tf_efficientnet_lite0 saved as a model folder, input 64 px."""
    import torch

    from microcalcai.models import card_for, create_model, save_model

    torch.manual_seed(0)
    module = create_model("tf_efficientnet_lite0", "none")
    card = card_for("tf_efficientnet_lite0", name="lite0-a", input_size=64, threshold=0.4)
    return save_model(module, card, tmp_path_factory.mktemp("models") / "lite0-a")


@pytest.fixture(scope="session")
def second_model_dir(tmp_path_factory):
    import torch

    from microcalcai.models import card_for, create_model, save_model

    torch.manual_seed(1)
    module = create_model("mobilenetv3_large_100", "none")
    card = card_for("mobilenetv3_large_100", name="mnv3-b", input_size=72, threshold=0.6)
    return save_model(module, card, tmp_path_factory.mktemp("models") / "mnv3-b")


@pytest.fixture()
def crops():
    rng = np.random.default_rng(0)
    return rng.random((5, 48, 48), dtype=np.float32)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: a second intra-op thread costs more than it gains (and spins beside other jobs)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

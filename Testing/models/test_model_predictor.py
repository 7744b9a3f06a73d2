"""Predictors for single models and ensembles; preprocessing is shared and validated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microcalcai.errors import InputError
from microcalcai.models import load_predictor
from microcalcai.models.ensemble import save_ensemble


def test_preprocess_resizes_replicates_and_normalises(small_model_dir):
    predictor = load_predictor(small_model_dir, device="cpu")
    crops = np.full((2, 30, 30), 0.75, dtype=np.float32)
    x = predictor.preprocess(crops)
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    # mean 0.5, std 0.5 for tf_efficientnet_lite0: 0.75 -> 0.5 in every channel
    assert torch.allclose(x, torch.full_like(x, 0.5), atol=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((2, 8, 8), 3.0, np.float32), "0..1"),
        (np.full((2, 8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((2, 3, 8, 8), np.float32), "shape"),
    ],
)
def test_bad_crops_get_clear_errors(small_model_dir, bad, message):
    with pytest.raises(InputError, match=message):
        load_predictor(small_model_dir, device="cpu").predict(bad)


def test_ensemble_mean_and_vote(small_model_dir, second_model_dir, crops, tmp_path):
    a = load_predictor(small_model_dir, device="cpu").predict(crops).probability
    b = load_predictor(second_model_dir, device="cpu").predict(crops).probability
    mean_dir = save_ensemble(
        [small_model_dir, second_model_dir], tmp_path / "ens-mean", combine="mean", threshold=0.55
    )
    ens = load_predictor(mean_dir, device="cpu")
    batch = ens.predict(crops)
    assert set(batch.members) == {"lite0-a", "mnv3-b"}
    np.testing.assert_allclose(batch.probability, (a + b) / 2, rtol=1e-6)
    np.testing.assert_array_equal(batch.decision, batch.probability >= 0.55)
    # members keep their own input size and normalisation
    assert ens.preprocess(crops, member="mnv3-b").shape == (5, 3, 72, 72)
    assert ens.preprocess(crops).shape == (5, 3, 64, 64)

    vote_dir = save_ensemble([small_model_dir, second_model_dir], tmp_path / "ens-vote", combine="vote")
    votes = load_predictor(vote_dir, device="cpu").predict(crops)
    expected = ((a >= 0.4).astype(float) + (b >= 0.6).astype(float)) / 2
    np.testing.assert_array_equal(votes.probability, expected)


def test_ensemble_folder_is_self_contained(small_model_dir, second_model_dir, crops, tmp_path):
    import shutil

    built = save_ensemble([small_model_dir, second_model_dir], tmp_path / "ens")
    moved = shutil.move(str(built), tmp_path / "elsewhere")
    assert load_predictor(moved, device="cpu").predict(crops).probability.shape == (5,)


def test_ensemble_needs_two_members(small_model_dir, tmp_path):
    with pytest.raises(InputError, match="at least two"):
        save_ensemble([small_model_dir], tmp_path / "one")


def test_grey_input_puts_the_projects_preprocessing_in_front_of_a_network():
    from microcalcai.models.preprocess import GreyInput, preprocess_crops

    torch.manual_seed(0)
    network = torch.nn.Conv2d(3, 2, 3)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    crops = np.random.default_rng(0).random((2, 40, 40), dtype=np.float32)
    wrapped = GreyInput(network, mean, std, size=56)
    with torch.no_grad():
        expected = network(preprocess_crops(crops, 56, mean, std))
        assert torch.allclose(wrapped(torch.from_numpy(crops)[:, None]), expected, atol=1e-6)
    assert dict(wrapped.named_modules())["module"] is network  # layers are named module.<layer>

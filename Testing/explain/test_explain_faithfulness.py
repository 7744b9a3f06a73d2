"""Faithfulness: the model-randomisation sanity check, localisation on known masks, deletion/insertion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microcalcai.errors import InputError
from microcalcai.explain import explain_crops
from microcalcai.explain.faithfulness import (
    energy_in_mask,
    model_randomisation_check,
    perturbation_curves,
    pointing_game,
    randomised_copy,
)


def _positives(blob_test):
    crops, masks, labels = blob_test
    return crops[labels == 1], masks[labels == 1]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_trained_maps_localise_the_cluster_and_randomised_maps_do_not(trained_cnn, blob_test, method):
    crops, masks = _positives(blob_test)
    check = model_randomisation_check(trained_cnn, crops, method=method, seed=0)
    trained_energy = np.mean([energy_in_mask(s, m) for s, m in zip(check.trained_maps, masks, strict=True)])
    random_energy = np.mean([energy_in_mask(s, m) for s, m in zip(check.random_maps, masks, strict=True)])
    hits = np.mean([pointing_game(s, m) for s, m in zip(check.trained_maps, masks, strict=True)])
    area = masks.mean()
    # The trained network's map puts many times the mask's area share of its energy on the cluster...
    assert trained_energy > 5 * area and hits >= 0.8
    # ...the same network with re-initialised weights does not, and its maps rank pixels differently.
    assert trained_energy > 3 * random_energy
    assert check.passes(max_spearman=0.6), check.spearman
    assert check.mean_ssim < 0.5


def test_randomised_copy_changes_weights_and_leaves_the_original(trained_cnn):
    before = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    clone = randomised_copy(trained_cnn, seed=3)
    for key, value in trained_cnn.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(clone.fc.weight, trained_cnn.fc.weight)
    assert not torch.equal(clone.features[0].weight, trained_cnn.features[0].weight)
    # Cascading randomisation from the top: only the last layer changes.
    top = randomised_copy(trained_cnn, seed=3, top_k=1)
    assert not torch.equal(top.fc.weight, trained_cnn.fc.weight)
    assert torch.equal(top.features[0].weight, trained_cnn.features[0].weight)


def test_randomised_copy_of_an_ensemble_randomises_every_member(ensemble_dir):
    from microcalcai.models import load_predictor

    ensemble = load_predictor(ensemble_dir, device="cpu")
    clone = randomised_copy(ensemble, seed=0)
    for original, copied in zip(ensemble.members, clone.members, strict=True):
        first = next(n for n, p in original.model.named_parameters() if p.ndim == 4)
        assert not torch.equal(
            dict(copied.model.named_parameters())[first], dict(original.model.named_parameters())[first]
        )


def test_pointing_game_and_energy_on_known_maps():
    mask = np.zeros((40, 40), bool)
    mask[10:14, 20:24] = True
    on_mask = np.zeros((40, 40))
    on_mask[12, 22] = 1.0
    assert pointing_game(on_mask, mask, tolerance_px=0)
    assert energy_in_mask(on_mask, mask) == pytest.approx(1.0)
    far = np.zeros((40, 40))
    far[35, 2] = 1.0
    far[11, 21] = 0.5
    assert not pointing_game(far, mask, tolerance_px=15)
    assert energy_in_mask(far, mask) == pytest.approx(0.5 / 1.5)
    near = np.zeros((40, 40))
    near[12, 30] = 1.0  # 7 px right of the mask
    assert pointing_game(near, mask, tolerance_px=7) and not pointing_game(near, mask, tolerance_px=6)
    assert not pointing_game(np.full((40, 40), 0.3), mask)  # a constant map points nowhere
    assert energy_in_mask(np.ones((40, 40)), mask) == pytest.approx(mask.mean())
    with pytest.raises(InputError, match="empty"):
        energy_in_mask(on_mask, np.zeros((40, 40), bool))
    with pytest.raises(InputError, match="same shape"):
        pointing_game(on_mask, mask[:30])


def test_deletion_falls_faster_than_insertion_for_a_trained_network(trained_cnn, blob_test):
    crops, _ = _positives(blob_test)
    crop = crops[0]
    saliency = explain_crops(trained_cnn, crop).maps[0]
    curves = perturbation_curves(trained_cnn, crop, saliency, fractions=(10, 30, 50, 70, 90))
    assert curves.baseline > 0.5
    # Removing the most salient 10% (the cluster) already drops P(malignant); keeping it holds it up.
    assert curves.deletion[0] < 0.5 < curves.insertion[0]
    assert curves.deletion_auc < curves.insertion_auc - 0.3


def test_pointing_chance_is_the_share_of_the_crop_within_reach_of_the_mask():
    from microcalcai.explain.faithfulness import pointing_chance

    mask = np.zeros((31, 31), bool)
    mask[15, 15] = True
    assert pointing_chance([mask], tolerance_px=0) == pytest.approx(1 / 31**2)
    assert pointing_chance([mask], tolerance_px=1) == pytest.approx(5 / 31**2)  # the pixel and 4 neighbours
    assert pointing_chance([mask, np.ones_like(mask)], tolerance_px=100) == 1.0

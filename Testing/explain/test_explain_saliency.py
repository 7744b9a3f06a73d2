"""Saliency maps: every registry architecture and method, targets, ensembles, model state, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microcalcai.errors import InputError
from microcalcai.explain import METHODS, explain_crops, saliency_map
from microcalcai.models.registry import ARCHITECTURES


def _input_size(arch: str) -> int:
    # The Inception family reduces 128 px to a 2x2 map at its last block (64 px is below its minimum).
    return 128 if ARCHITECTURES[arch].family == "inception" else 64


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_map_for_every_registry_architecture(arch):
    from microcalcai.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, "none")
    size = _input_size(arch)
    crop = np.random.default_rng(3).random((size, size), dtype=np.float32)
    # Random weights: "predicted" explains the class the network leans to, whose evidence is positive
    # somewhere, so the map has structure; the malignant map of a random net may be all zero.
    result = explain_crops(model, crop, target="predicted")
    saliency = result.maps[0]
    assert saliency.shape == (size, size) and saliency.dtype == np.float32
    assert saliency.min() >= 0.0 and saliency.max() <= 1.0
    assert np.ptp(saliency) > 0.5, "the map is (nearly) constant"
    assert result.layers == {arch: ARCHITECTURES[arch].target_layer}


def test_every_method_gives_a_map_for_a_trained_network(trained_cnn, blob_test):
    crops, masks, labels = blob_test
    crop = crops[labels == 1][0]
    for method in METHODS:
        saliency = saliency_map(trained_cnn, crop, method=method)
        assert saliency.shape == crop.shape, method
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0, method
        assert np.ptp(saliency) > 0.5, method


def test_target_malignant_benign_and_predicted(trained_cnn, blob_test):
    crops, _, labels = blob_test
    picked = np.stack([crops[labels == 1][0], crops[labels == 0][0]])
    malignant = explain_crops(trained_cnn, picked, target="malignant")
    benign = explain_crops(trained_cnn, picked, target="benign")
    predicted = explain_crops(trained_cnn, picked, target="predicted")
    # The tiny network has learnt the task: the blob crop is called malignant, the plain one benign.
    assert predicted.probability[0] > 0.5 > predicted.probability[1]
    assert list(predicted.explained_class) == [1, 0]
    assert list(malignant.explained_class) == [1, 1] and list(benign.explained_class) == [0, 0]
    np.testing.assert_allclose(predicted.maps[0], malignant.maps[0], atol=1e-6)
    np.testing.assert_allclose(predicted.maps[1], benign.maps[1], atol=1e-6)
    assert np.abs(malignant.maps[0] - benign.maps[0]).max() > 0.2


def test_layer_override_changes_the_map(trained_cnn, blob_test):
    crop = blob_test[0][1]
    default = explain_crops(trained_cnn, crop)
    earlier = explain_crops(trained_cnn, crop, layer="features.3")
    assert default.layers == {"TinyCNN": "features"} and earlier.layers == {"TinyCNN": "features.3"}
    assert earlier.maps.shape == default.maps.shape
    assert np.abs(earlier.maps - default.maps).max() > 0.05


def test_model_predictor_map_has_the_crop_size(lite0_dir):
    from microcalcai.models import load_predictor

    predictor = load_predictor(lite0_dir, device="cpu")
    crop = np.random.default_rng(0).random((90, 90), dtype=np.float32)  # the network sees 64 px
    result = explain_crops(predictor, crop, target="predicted")
    assert result.maps.shape == (1, 90, 90)
    assert np.ptp(result.maps[0]) > 0.5
    np.testing.assert_allclose(result.probability, predictor.predict(crop[None]).probability, atol=1e-5)
    assert result.threshold == pytest.approx(0.45)


def test_ensemble_map_is_the_mean_of_members_normalised_maps(ensemble_dir):
    from microcalcai.models import load_predictor

    ensemble = load_predictor(ensemble_dir, device="cpu")
    crops = np.random.default_rng(1).random((2, 80, 80), dtype=np.float32)
    result = explain_crops(ensemble, crops, method="gradcam++")
    members = ensemble.members
    assert set(result.member_maps) == {m.name for m in members} and len(members) == 2
    alone = [explain_crops(m, crops, method="gradcam++").maps for m in members]
    for own in alone:
        assert own.max() == pytest.approx(1.0, abs=1e-5)  # each member's map is normalised on its own
    np.testing.assert_allclose(result.maps, (alone[0] + alone[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(result.probability, ensemble.predict(crops).probability, atol=1e-5)


def test_ensemble_predicted_target_follows_the_ensemble_decision(ensemble_dir):
    from microcalcai.models import load_predictor

    ensemble = load_predictor(ensemble_dir, device="cpu")
    crops = np.random.default_rng(2).random((3, 72, 72), dtype=np.float32)
    result = explain_crops(ensemble, crops, target="predicted")
    decision = ensemble.predict(crops).decision.astype(int)
    assert list(result.explained_class) == list(decision)


def test_model_state_is_left_as_it_was(trained_cnn, blob_test):
    model = trained_cnn
    model.train()
    model.features[0].weight.requires_grad_(False)  # a frozen layer must stay frozen
    flags = [p.requires_grad for p in model.parameters()]
    try:
        with torch.no_grad():  # how a server's inference code calls it
            saliency = saliency_map(model, blob_test[0][1])
        assert np.ptp(saliency) > 0.5
        assert model.training
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
        with torch.inference_mode():
            saliency_map(model, blob_test[0][1], method="hirescam")
    finally:
        model.features[0].weight.requires_grad_(True)
        model.eval()
    assert all(not m._forward_hooks for m in model.modules())


def test_unknown_method_lists_the_valid_ones(trained_cnn):
    with pytest.raises(InputError, match="method") as info:
        saliency_map(trained_cnn, np.zeros((48, 48), np.float32), method="gradcam+++")
    assert "gradcam++" in str(info.value) and "layercam" in str(info.value)


def test_unknown_layer_lists_the_valid_ones():
    from microcalcai.models import create_model

    model = create_model("resnet50", "none")
    with pytest.raises(InputError, match="layer5") as info:
        saliency_map(model, np.zeros((64, 64), np.float32), layer="layer5")
    assert "layer4" in str(info.value) and "layer3" in str(info.value)


def test_layer_without_a_feature_map_is_refused(trained_cnn):
    with pytest.raises(InputError, match="not a feature map") as info:
        saliency_map(trained_cnn, np.zeros((48, 48), np.float32), layer="fc")
    assert "features" in str(info.value)


def test_model_without_convolutions_is_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 2))
    with pytest.raises(InputError, match="no 2D convolutional layer") as info:
        saliency_map(model, np.zeros((48, 48), np.float32))
    assert "resnet50" in str(info.value) and "tf_efficientnet_lite0" in str(info.value)


@pytest.mark.parametrize(
    "crop, message",
    [
        (np.zeros((4, 48, 48), np.float32)[0, :, 0], "2D grey image"),
        (np.full((48, 48), np.nan, np.float32), "NaN"),
        (np.full((48, 48), 7.0, np.float32), "0..1"),
    ],
)
def test_bad_crops_are_refused(trained_cnn, crop, message):
    with pytest.raises(InputError, match=message):
        saliency_map(trained_cnn, crop)


def test_unknown_target_and_too_small_input_are_refused(trained_cnn):
    with pytest.raises(InputError, match="predicted"):
        saliency_map(trained_cnn, np.zeros((48, 48), np.float32), target="cancer")
    from microcalcai.models import create_model

    with pytest.raises(InputError, match="too small|1x1"):
        saliency_map(create_model("inception_v3", "none"), np.zeros((64, 64), np.float32))

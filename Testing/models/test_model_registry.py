"""Every registry architecture builds, takes one training step at a small input, has its Grad-CAM layer."""

from __future__ import annotations

import pytest
import torch

from microcalcai.errors import InputError
from microcalcai.models import ARCHITECTURES, create_model, get_arch
from microcalcai.models.registry import default_data_config

SEED_ARCHITECTURES = {
    "resnet50",
    "resnet101",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "legacy_xception",
    "inception_v3",
    "inception_resnet_v2",
    "densenet121",
    "densenet169",
    "densenet201",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "vgg16",
    "vgg19",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "resnetv2_50",
    "resnetv2_101",
    "tf_efficientnet_lite0",
}


def test_registry_covers_the_seed_architectures():
    assert SEED_ARCHITECTURES <= set(ARCHITECTURES)
    assert get_arch("inception_v3").input_size == 299 and get_arch("legacy_xception").input_size == 299
    assert get_arch("xception").name == "legacy_xception"
    # Kang et al.'s batch sizes
    assert [
        get_arch(a).batch_size
        for a in ("legacy_xception", "inception_v3", "resnet101", "inception_resnet_v2", "densenet201")
    ] == [32, 32, 16, 16, 8]
    with pytest.raises(InputError, match="unknown architecture 'resnet9000'.*resnet50"):
        get_arch("resnet9000")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_builds_and_takes_one_training_step(arch):
    spec = ARCHITECTURES[arch]
    size = spec.min_input
    torch.manual_seed(0)
    model = create_model(arch, "none")
    config = default_data_config(arch)
    assert len(config["mean"]) == 3 and len(config["std"]) == 3
    captured = {}
    layer = model.get_submodule(spec.target_layer)
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.setdefault("map", out))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, labels = torch.randn(2, 3, size, size), torch.tensor([0, 1])
    first = next(p for p in model.parameters() if p.requires_grad)
    before = first.detach().clone()
    logits = model(inputs)
    assert logits.shape == (2, 2)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    handle.remove()
    assert torch.isfinite(loss)
    assert captured["map"].ndim == 4, f"{spec.target_layer} of {arch} is not a convolutional feature map"
    assert not torch.equal(before, first), "the step did not reach the first layer"

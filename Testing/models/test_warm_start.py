"""The start of a retraining: served weights shrunk and perturbed (train.warm_start)."""

from __future__ import annotations

import pytest
import torch

from microcalcai.errors import InputError
from microcalcai.models import load_model
from microcalcai.train.warm_start import shrink_perturb


def _state(folder):
    module = load_model(folder).module
    return dict(module.named_parameters()), dict(module.named_buffers())


def test_shrink_alone_scales_every_parameter_and_keeps_batchnorm_statistics(small_model_dir, tmp_path):
    out = shrink_perturb(small_model_dir, tmp_path / "start", shrink=0.5, perturb=0.0)
    (before, before_buffers), (after, after_buffers) = _state(small_model_dir), _state(out)
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], 0.5 * before[name])
    running = [n for n in before_buffers if n.endswith("running_var")]
    assert running, "the test model has BatchNorm statistics"
    for name in running:
        torch.testing.assert_close(after_buffers[name], before_buffers[name])


def test_perturb_adds_a_fresh_initialisation_drawn_from_the_seed(small_model_dir, tmp_path):
    def start(folder, seed):
        return shrink_perturb(small_model_dir, folder, shrink=0.6, perturb=0.1, toward="random", seed=seed)

    one, same, other = start(tmp_path / "a", 3), start(tmp_path / "b", 3), start(tmp_path / "c", 4)
    before, (a, _), (b, _), (c, _) = _state(small_model_dir)[0], _state(one), _state(same), _state(other)
    conv = next(n for n in before if before[n].dim() == 4)
    torch.testing.assert_close(a[conv], b[conv])
    assert not torch.allclose(a[conv], c[conv])
    noise = (a[conv] - 0.6 * before[conv]) / 0.1
    assert noise.std() > 0 and not torch.allclose(noise, before[conv])


def test_the_start_is_a_verified_model_folder_and_the_served_one_is_untouched(small_model_dir, tmp_path):
    served = (small_model_dir / "weights.safetensors").read_bytes()
    base = load_model(small_model_dir).card
    out = shrink_perturb(small_model_dir, tmp_path / "start", shrink=0.5, perturb=0.05, toward="random")
    assert (small_model_dir / "weights.safetensors").read_bytes() == served
    card = load_model(out).card  # checks the new checksum
    assert card.arch == base.arch and card.version == f"{base.version}-start"
    assert card.weights_sha256 != base.weights_sha256 and not card.val_metrics and not card.test_metrics
    assert card.weights_init["source"] == "shrink-perturb"
    assert card.weights_init["base_sha256"] == base.weights_sha256
    assert (card.weights_init["shrink"], card.weights_init["perturb"]) == (0.5, 0.05)


def test_toward_imagenet_is_a_point_between_and_frozen_layers_keep_the_served_weights(
    small_model_dir, tmp_path
):
    from microcalcai.models.registry import create_model

    out = shrink_perturb(
        small_model_dir, tmp_path / "start", shrink=0.5, perturb=0.5, toward="imagenet", frozen_blocks=2
    )
    served, (start, _) = _state(small_model_dir)[0], _state(out)
    imagenet = dict(create_model("tf_efficientnet_lite0", "imagenet").named_parameters())
    frozen = [n for n in served if n.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1."))]
    trained = [n for n in served if n not in frozen and not n.startswith("classifier.")]
    assert frozen and trained
    for name in frozen:  # the recipe never trains these: a change would stay for good
        torch.testing.assert_close(start[name], served[name])
    for name in trained:
        torch.testing.assert_close(start[name], 0.5 * served[name] + 0.5 * imagenet[name])
    assert load_model(out).card.weights_init["other"]["source"] != "none"


def test_without_imagenet_weights_the_retraining_starts_from_the_served_weights_and_says_so(
    small_model_dir, tmp_path, monkeypatch
):
    from microcalcai.errors import NotAvailableError
    from microcalcai.models import registry
    from microcalcai.server.finetune import retraining_start

    real = registry.create_model

    def offline(arch, weights="none", num_classes=2):
        if weights == "imagenet":
            raise NotAvailableError(f"downloading ImageNet weights for {arch} failed (offline)")
        return real(arch, weights, num_classes)

    monkeypatch.setattr(registry, "create_model", offline)
    start, how = retraining_start(
        small_model_dir, tmp_path, shrink=0.5, perturb=0.5, toward="imagenet", seed=0, frozen_blocks=2
    )
    assert start == small_model_dir and not (tmp_path / "start").exists()
    assert "as they are" in how["start"] and "not on this machine" in how["start"]
    # shrink alone needs no other weights, offline or not
    start, how = retraining_start(
        small_model_dir, tmp_path, shrink=0.5, perturb=0.0, toward="imagenet", seed=0, frozen_blocks=2
    )
    assert start == tmp_path / "start" and how["start"].startswith("0.5 x")


@pytest.mark.parametrize(
    "shrink, perturb, toward, words",
    [
        (0.0, 0.1, "random", "shrink must be"),
        (1.5, 0.0, "random", "shrink must be"),
        (0.5, -0.1, "random", "perturb must be"),
        (0.5, 0.1, "zeros", "toward must be"),
    ],
)
def test_bad_settings_say_what_is_allowed(small_model_dir, tmp_path, shrink, perturb, toward, words):
    with pytest.raises(InputError, match=words):
        shrink_perturb(small_model_dir, tmp_path / "start", shrink=shrink, perturb=perturb, toward=toward)
    assert not (tmp_path / "start").exists()

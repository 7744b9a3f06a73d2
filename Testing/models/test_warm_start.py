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
    one = shrink_perturb(small_model_dir, tmp_path / "a", shrink=0.6, perturb=0.1, seed=3)
    same = shrink_perturb(small_model_dir, tmp_path / "b", shrink=0.6, perturb=0.1, seed=3)
    other = shrink_perturb(small_model_dir, tmp_path / "c", shrink=0.6, perturb=0.1, seed=4)
    before, (a, _), (b, _), (c, _) = _state(small_model_dir)[0], _state(one), _state(same), _state(other)
    conv = next(n for n in before if before[n].dim() == 4)
    torch.testing.assert_close(a[conv], b[conv])
    assert not torch.allclose(a[conv], c[conv])
    noise = (a[conv] - 0.6 * before[conv]) / 0.1
    assert noise.std() > 0 and not torch.allclose(noise, before[conv])


def test_the_start_is_a_verified_model_folder_and_the_served_one_is_untouched(small_model_dir, tmp_path):
    served = (small_model_dir / "weights.safetensors").read_bytes()
    out = shrink_perturb(small_model_dir, tmp_path / "start", shrink=0.5, perturb=0.05)
    assert (small_model_dir / "weights.safetensors").read_bytes() == served
    loaded = load_model(out)  # checks the new checksum
    assert loaded.card.arch == load_model(small_model_dir).card.arch


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

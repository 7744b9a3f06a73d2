"""The fitting loop on crops made here: early stopping, best-by-AUC selection, resume, thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_helpers import blob_crops

from microcalcai.evaluate.operating_point import youden_threshold
from microcalcai.models import card_for, create_model
from microcalcai.train.data import CropDataset, CropSet
from microcalcai.train.loop import FitConfig, evaluate, fit

AUGMENT = {
    "hflip": True,
    "vflip": True,
    "rotate_degrees": [1, 359],
    "shift_px": 30,
    "shift_reference_px": 224,
}


def _sets(n_train=24, n_val=12):
    card = card_for("tf_efficientnet_lite0", input_size=48)
    crops, labels = blob_crops(n_train, 48, seed=0)
    val_crops, val_labels = blob_crops(n_val, 48, seed=1)
    train = CropDataset(CropSet.from_arrays(crops, labels), card.mean, card.std, augment=AUGMENT)
    val = CropDataset(CropSet.from_arrays(val_crops, val_labels), card.mean, card.std)
    return train, val


def _config(**changes):
    base = dict(
        epochs=3,
        batch_size=8,
        patience=5,
        progress=False,
        optimizer={"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0},
    )
    base.update(changes)
    return FitConfig(**base)


def _model():
    torch.manual_seed(0)
    return create_model("tf_efficientnet_lite0", "imagenet")


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    train, val = _sets()
    # min_delta so large that no epoch after the first counts as an improvement
    result = fit(_model(), train, val, _config(epochs=10, patience=2, min_delta=1e9), tmp_path)
    assert result.stopped_early
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_loss,val_auc") and len(rows) == 4
    assert (tmp_path / "learning_curve.png").stat().st_size > 5000
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_best_epoch_by_validation_auc_is_the_model_returned(tmp_path):
    train, val = _sets()
    model = _model()
    result = fit(model, train, val, _config(epochs=3), tmp_path)
    aucs = [row["val_auc"] for row in result.history]
    assert result.best_epoch == int(np.argmax(aucs)) + 1  # first of equal maxima
    _, probability = evaluate(model, val, _config())
    np.testing.assert_allclose(probability, result.val_probability, atol=1e-6)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(val.labels.numpy(), probability) == pytest.approx(aucs[result.best_epoch - 1])


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    train, val = _sets()
    straight = fit(_model(), train, val, _config(epochs=3), tmp_path / "straight")

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), train, val, _config(epochs=3), tmp_path / "resumed", on_epoch_end=interrupt)
    seen = []
    resumed = fit(_model(), train, val, _config(epochs=3), tmp_path / "resumed", on_epoch_end=seen.append)
    assert [row["epoch"] for row in seen] == [3], "resume must continue after the last finished epoch"
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    np.testing.assert_allclose(straight.val_probability, resumed.val_probability, rtol=1e-5, atol=1e-7)


def test_average_selection_keeps_the_mean_of_the_last_epochs_weights_and_statistics(tmp_path):
    train, val = _sets()
    model = _model()
    after_epoch = {}

    def keep(row):
        after_epoch[row["epoch"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    config = _config(epochs=4, select_best="average", average_epochs=2)
    result = fit(model, train, val, config, tmp_path, on_epoch_end=keep)
    assert result.averaged_epochs == [3, 4] and result.best_epoch == 4
    kept = model.state_dict()
    floats = [k for k, v in kept.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in floats), "BatchNorm statistics are averaged too"
    for key in floats:
        mean = (after_epoch[3][key] + after_epoch[4][key]) / 2
        torch.testing.assert_close(kept[key], mean, rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(kept[floats[0]], after_epoch[4][floats[0]]), "not just the last epoch"
    _, probability = evaluate(model, val, config)
    np.testing.assert_allclose(probability, result.val_probability, atol=1e-6)
    from sklearn.metrics import roc_auc_score

    assert result.best_val_auc == pytest.approx(roc_auc_score(val.labels.numpy(), probability))


def test_an_interrupted_averaging_run_resumes_to_the_same_average(tmp_path):
    train, val = _sets()
    config = _config(epochs=3, select_best="average", average_epochs=2)
    straight = fit(_model(), train, val, config, tmp_path / "straight")

    def interrupt(row):
        if row["epoch"] == 2:  # after the first averaged epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), train, val, config, tmp_path / "resumed", on_epoch_end=interrupt)
    resumed = fit(_model(), train, val, config, tmp_path / "resumed")
    assert resumed.averaged_epochs == straight.averaged_epochs == [2, 3]
    np.testing.assert_allclose(straight.val_probability, resumed.val_probability, rtol=1e-5, atol=1e-7)


def test_averaging_falls_back_to_the_best_epoch_when_the_run_stops_before_it(tmp_path, caplog):
    train, val = _sets()
    config = _config(epochs=10, patience=2, min_delta=1e9, select_best="average", average_epochs=3)
    with caplog.at_level("WARNING"):
        result = fit(_model(), train, val, config, tmp_path)
    assert result.stopped_early and result.averaged_epochs == []
    aucs = [row["val_auc"] for row in result.history]
    assert result.best_epoch == int(np.argmax(aucs)) + 1
    assert "no epoch was averaged (the run ended at epoch 3, before the last 3 of 10" in caplog.text


def test_youden_threshold_maximises_sensitivity_plus_specificity():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.35, 0.6, 0.4, 0.7, 0.8, 0.9])
    choice = youden_threshold(labels, scores)
    assert choice.threshold == pytest.approx(0.7)  # sens 0.75, spec 1.0: J = 0.75 (0.4 gives 1.0/0.75 too)
    assert choice.youden == pytest.approx(0.75)
    assert "validation" in choice.method
    with pytest.raises(Exception, match="both labels"):
        youden_threshold([1, 1], [0.2, 0.3])


def test_offline_augmentation_adds_fixed_augmented_copies():
    crops, labels = blob_crops(6, 48, seed=2)
    card = card_for("tf_efficientnet_lite0", input_size=48)
    plain = CropDataset(CropSet.from_arrays(crops, labels), card.mean, card.std)
    tripled = CropDataset(
        CropSet.from_arrays(crops, labels), card.mean, card.std, augment=AUGMENT, offline_copies=2
    )
    again = CropDataset(
        CropSet.from_arrays(crops, labels), card.mean, card.std, augment=AUGMENT, offline_copies=2
    )
    assert len(tripled) == 3 * len(plain)
    assert torch.equal(tripled.labels, torch.as_tensor(np.tile(labels, 3)))
    assert not torch.equal(tripled.grey[6:12], tripled.grey[:6]), "copies must be augmented"
    assert torch.equal(tripled.grey, again.grey), "offline copies are seeded"


def test_a_step_budget_ends_the_run_inside_an_epoch_and_keeps_the_last_weights(tmp_path):
    train, val = _sets()  # 24 crops, batch 8: three steps an epoch
    model = _model()
    result = fit(model, train, val, _config(epochs=50, max_steps=4, select_best="last"), tmp_path)
    assert result.steps == 4 and [row["epoch"] for row in result.history] == [1, 2]
    assert result.best_epoch == 2 and not result.stopped_early and result.train_seconds > 0
    # "last": the weights the run ended with, whatever their validation score
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(v, last[k]) for k, v in model.state_dict().items())


def test_a_small_training_set_gets_min_epoch_images_draws_an_epoch(tmp_path):
    train, val = _sets()  # 24 crops, batch 8: three steps an epoch without the floor
    plain = fit(_model(), train, val, _config(epochs=2), tmp_path / "plain")
    assert plain.steps == 6
    floored = fit(_model(), train, val, _config(epochs=2, min_epoch_images=40), tmp_path / "floored")
    assert floored.steps == 10  # 40 draws with replacement = 5 batches of 8, each epoch
    # a set already larger than the floor is drawn once an epoch, as before
    large = fit(_model(), train, val, _config(epochs=1, min_epoch_images=16), tmp_path / "large")
    assert large.steps == 3


def test_loader_workers_train_the_same_steps_in_other_processes(tmp_path):
    """Augmentation in worker processes (a GPU's default): the run trains as many steps and its
    validation scores are the model's own, as without workers."""
    from microcalcai.train.loop import _loader

    train, val = _sets()
    loader = _loader(train, _config(num_workers=2), torch.Generator(), False, 0, 1)
    assert loader.num_workers == 2
    seen = [tuple(batch[0].shape) for batch in loader]
    assert seen == [(8, 3, 48, 48)] * 3
    model = _model()
    result = fit(model, train, val, _config(epochs=2, num_workers=2), tmp_path)
    assert result.steps == 6 and len(result.history) == 2
    _, probability = evaluate(model, val, _config())
    np.testing.assert_allclose(probability, result.val_probability, atol=1e-6)


def test_loader_workers_are_cut_to_what_shared_memory_holds(monkeypatch, caplog):
    """A worker's batch lives in /dev/shm: where a container gives little, fewer workers (or none)
    and a warning that says what to change, instead of a bus error mid-training."""
    import microcalcai.train.loop as loop

    train, _ = _sets()
    batch_bytes = 8 * 3 * 48 * 48 * 4
    monkeypatch.setattr(loop, "_shared_memory_free", lambda: 2 * loop.PREFETCH_BATCHES * batch_bytes * 2)
    assert loop._loader(train, _config(num_workers=4), torch.Generator(), False, 0, 1).num_workers == 2
    assert "2 loader workers instead of 4" in caplog.text and "--shm-size" in caplog.text
    monkeypatch.setattr(loop, "_shared_memory_free", lambda: batch_bytes)
    assert loop._loader(train, _config(num_workers=4), torch.Generator(), False, 0, 1).num_workers == 0
    assert loop.workers_that_fit(4, batch_bytes, None) == 4  # no /dev/shm to measure: as asked


def test_min_epoch_images_under_distributed_training_is_said_to_be_ignored(caplog):
    """The DistributedSampler path draws each image once an epoch; the floor is not silently lost."""
    from microcalcai.train.loop import _loader

    train, _ = _sets()
    config = _config(min_epoch_images=40)
    for rank in (0, 1):
        loader = _loader(train, config, torch.Generator(), True, rank, 2)
        assert len(loader.sampler) == 12  # half of the 24 images, not half of 40 draws
    assert caplog.text.count("min_epoch_images=40 is ignored under distributed training") == 1


def test_frozen_leading_stages_keep_their_weights_and_batchnorm_statistics(tmp_path):
    train, val = _sets()
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, train, val, _config(epochs=1, freeze_blocks=2), tmp_path)
    after = model.state_dict()
    frozen = ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # stem and the first two stages: weights and running statistics as loaded
    assert not {k for k in changed if k.startswith(frozen)}
    assert any(k.startswith("blocks.1.") and "running_mean" in k for k in before)
    # the rest learnt, BatchNorm statistics included
    assert any(k.startswith("blocks.2.") and k.endswith("weight") for k in changed)
    assert any(k.startswith("blocks.2.") and "running_mean" in k for k in changed)
    assert any(k.startswith("classifier.") for k in changed)


def test_freezing_more_stages_than_the_network_has_is_a_clear_error(tmp_path):
    from microcalcai.errors import InputError

    train, val = _sets()
    with pytest.raises(InputError, match="freeze_blocks=99 needs a network with at least 99 stages"):
        fit(_model(), train, val, _config(epochs=1, freeze_blocks=99), tmp_path)


def test_freezing_a_network_without_stages_trains_all_of_it(tmp_path, caplog):
    from microcalcai.train.loop import freeze_leading

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert freeze_leading(model, 2) == []
    assert all(p.requires_grad for p in model.parameters())
    assert "training all its layers" in caplog.text

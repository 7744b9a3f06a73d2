"""Model folders: round trip, checksum and architecture checks, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from microcalcai.errors import InputError
from microcalcai.models import load_model, load_predictor, read_card


def test_reloaded_model_gives_identical_predictions(small_model_dir, crops, tmp_path):
    first = load_predictor(small_model_dir, device="cpu").predict(crops)
    copy = shutil.copytree(small_model_dir, tmp_path / "copy")
    second = load_predictor(copy, device="cpu").predict(crops)
    np.testing.assert_array_equal(first.probability, second.probability)
    assert first.probability.shape == (5,)
    assert np.all((first.probability >= 0) & (first.probability <= 1))
    np.testing.assert_array_equal(first.decision, first.probability >= 0.4)


def test_card_records_what_is_needed(small_model_dir):
    card = read_card(small_model_dir)
    assert card.arch == "tf_efficientnet_lite0"
    assert card.input_size == 64 and card.in_chans == 3 and card.channel_mode == "replicate"
    assert card.mean == [0.5, 0.5, 0.5] and card.labels == ["benign", "malignant"]
    assert len(card.weights_sha256) == 64
    assert {"torch", "timm", "microcalcai"} <= set(card.library_versions)
    assert not list(small_model_dir.parent.glob(".*tmp")), "atomic write left a temporary folder"


def test_corrupt_weights_are_refused(small_model_dir, tmp_path):
    copy = shutil.copytree(small_model_dir, tmp_path / "corrupt")
    weights = copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256.*corrupt"):
        load_model(copy)


def test_architecture_mismatch_is_refused(small_model_dir, tmp_path):
    copy = shutil.copytree(small_model_dir, tmp_path / "mismatch")
    card = json.loads((copy / "model.json").read_text())
    card["arch"] = "mobilenetv2_100"
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="does not fit architecture mobilenetv2_100"):
        load_model(copy)
    card["arch"] = "alexnet_9000"
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="unknown architecture 'alexnet_9000'"):
        load_model(copy)


def test_missing_pieces_are_named(small_model_dir, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_predictor(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither a model folder"):
        load_predictor(tmp_path / "empty")
    copy = shutil.copytree(small_model_dir, tmp_path / "noweights")
    (copy / "weights.safetensors").unlink()
    with pytest.raises(InputError, match="weights.safetensors is missing"):
        load_model(copy)
    (copy / "model.json").write_text("{not json")
    with pytest.raises(InputError, match="model.json"):
        load_model(copy)


def test_existing_folder_is_not_overwritten_by_default(small_model_dir):
    import torch

    from microcalcai.models import create_model, read_card, save_model

    torch.manual_seed(5)
    with pytest.raises(FileExistsError):
        save_model(create_model("tf_efficientnet_lite0"), read_card(small_model_dir), small_model_dir)

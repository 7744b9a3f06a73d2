"""A model folder as files: ``model.json`` (the card, as JSON) and ``weights.safetensors``, whose
SHA-256 the card records. Reading one verifies that checksum.

A leaf: no torch model is built here, so both the card layer (artifact.py) and the weights sources
(weights.py, which seeds a new model from an earlier one) read folders through it without
importing each other.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from microcalcai.errors import InputError

MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.safetensors"


def is_model_folder(path) -> bool:
    return (Path(path) / MODEL_JSON).is_file()


def model_folder(path) -> Path:
    """The folder of a model given as its folder or its model.json; an error if it is not one."""
    path = Path(path)
    if path.name == MODEL_JSON:
        path = path.parent
    if not path.is_dir():
        raise InputError(f"model folder {path} does not exist")
    if not (path / MODEL_JSON).is_file():
        raise InputError(f"{path} has no {MODEL_JSON}; give a model folder written by `microcalcai train`")
    return path


def read_card_json(path) -> dict:
    """The card of a model folder (or of its model.json) as a JSON object."""
    card_path = model_folder(path) / MODEL_JSON
    try:
        data = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            f"cannot read {card_path}: {exc}; the model folder is incomplete or corrupt"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(f"{card_path} is not a JSON object; it is not a MicrocalcAI model card")
    return data


def read_verified_weights(path, expected_sha256: str) -> dict:
    """The folder's state dict, after checking its SHA-256 against the card's record."""
    from safetensors.torch import load as load_safetensors

    weights_path = model_folder(path) / WEIGHTS_FILE
    if not weights_path.is_file():
        raise InputError(f"{weights_path} is missing; the model folder is incomplete, copy it again")
    blob = weights_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise InputError(
            f"{weights_path} has SHA-256 {digest[:16]}..., but {MODEL_JSON} records "
            f"{expected_sha256[:16]}...; the weights are corrupt or were replaced, copy the model again"
        )
    try:
        return load_safetensors(blob)
    except Exception as exc:
        raise InputError(f"cannot read {weights_path}: {exc}") from exc

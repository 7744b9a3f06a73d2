"""A trained model as a self-describing folder: ``model.json`` (the card) + ``weights.safetensors``.

The card says everything needed to use the weights without the code that trained them:
architecture, input size and channels, preprocessing, label names, the operating threshold and how
it was chosen, validation metrics, the training data's identity (manifest hash and split), the
recipe and the library versions. Loading verifies the weights' SHA-256 and the architecture.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from microcalcai_logic.contract import LABELS

from microcalcai.atomic import atomic_dir
from microcalcai.errors import InputError
from microcalcai.models.folder import (
    MODEL_JSON,
    WEIGHTS_FILE,
    model_folder,
    read_card_json,
    read_verified_weights,
)

LOG = logging.getLogger(__name__)
CARD_FORMAT = 1


@dataclass
class ModelCard:
    name: str
    arch: str
    input_size: int
    mean: list
    std: list
    version: str = "1"
    in_chans: int = 3
    channel_mode: str = "replicate"
    labels: list = field(default_factory=lambda: list(LABELS))
    threshold: float = 0.5
    threshold_method: str = "default 0.5 (not chosen on data)"
    val_metrics: dict = field(default_factory=dict)
    manifest_sha256: str = ""
    split: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    weights_sha256: str = ""
    library_versions: dict = field(default_factory=dict)
    created: str = ""
    weights_init: dict = field(default_factory=dict)
    test_metrics: dict = field(default_factory=dict)
    crop: dict = field(default_factory=dict)  # how training crops were taken: {"task", "roi_size"}
    # a model trained on synthetic data to show the software working, not to read real images
    demonstration: bool = False
    intended_use: str = ""
    format: int = CARD_FORMAT

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "model.json") -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("name", "arch", "input_size", "mean", "std") if n not in data]
        if missing:
            raise InputError(
                f"{source} lacks the field(s) {', '.join(missing)}; it is not a MicrocalcAI model card"
            )
        extra = sorted(set(data) - known)
        if extra:
            LOG.debug("%s: ignoring unknown fields %s (written by a newer version?)", source, extra)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class LoadedModel:
    module: object  # torch.nn.Module in eval mode
    card: ModelCard
    path: Path


def library_versions() -> dict:
    import numpy
    import timm
    import torch

    from microcalcai import __version__

    return {
        "microcalcai": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
    }


def card_for(arch: str, name: str | None = None, **fields) -> ModelCard:
    """A card with the architecture's defaults (input size, the weights' mean and std) filled in."""
    from microcalcai.models.registry import default_data_config, get_arch

    spec = get_arch(arch)
    config = default_data_config(spec.name)
    fields.setdefault("input_size", spec.input_size)
    return ModelCard(name=name or spec.name, arch=spec.name, mean=config["mean"], std=config["std"], **fields)


def save_model(
    module, card: ModelCard, out_dir, *, overwrite: bool = False, extra_files: dict[str, str] | None = None
) -> Path:
    """Write the folder atomically; fills ``weights_sha256``, ``library_versions`` and ``created``.
    ``extra_files`` (name -> text) go into the same folder, in the same atomic step."""
    from safetensors.torch import save as save_safetensors

    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(module).state_dict().items()}
    blob = save_safetensors(state, metadata={"arch": card.arch})
    card.weights_sha256 = hashlib.sha256(blob).hexdigest()
    card.library_versions = card.library_versions or library_versions()
    card.created = card.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / WEIGHTS_FILE).write_bytes(blob)
        (tmp / MODEL_JSON).write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out_dir


def read_card(path) -> ModelCard:
    """The card of a model folder (or of its model.json), without loading the weights."""
    return ModelCard.from_dict(read_card_json(path), source=str(model_folder(path) / MODEL_JSON))


def load_model(path, *, device: str = "cpu") -> LoadedModel:
    """Load a model folder, verifying the weights' checksum and that they fit the architecture."""
    from microcalcai.models.registry import create_model, get_arch

    folder = model_folder(path)
    card = read_card(folder)
    try:
        get_arch(card.arch)
    except InputError as exc:
        raise InputError(f"{folder / MODEL_JSON}: {exc}") from exc
    weights_path = folder / WEIGHTS_FILE
    state = read_verified_weights(folder, card.weights_sha256)
    module = create_model(card.arch, "none", num_classes=len(card.labels))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise InputError(
            f"{weights_path} does not fit architecture {card.arch} named in {MODEL_JSON} "
            f"({' '.join(first)}); "
            "the card and the weights belong to different models"
        ) from exc
    return LoadedModel(module.to(device).eval(), card, folder)


def _unwrap(module):
    """The bare network inside DistributedDataParallel or torch.compile wrappers."""
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)

"""Probabilities and decisions from a model or an ensemble folder.

``load_predictor(path)`` accepts a model folder (``model.json``) or an ensemble folder
(``ensemble.json``). Both answer ``predict(crops) -> PredictionBatch``; crops are grey float32
(B, N, N) in 0..1. ``members`` gives the single-model predictors (one for a plain model), each with
the torch ``model``, its ``card`` and the Grad-CAM ``target_layer``, which is what saliency needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from microcalcai_logic.contract import POSITIVE_LABEL

from microcalcai.errors import InputError
from microcalcai.models.preprocess import preprocess_crops


@dataclass
class PredictionBatch:
    probability: np.ndarray  # (B,) combined P(malignant) (vote: fraction of malignant votes)
    members: dict  # member name -> (B,) P(malignant)
    decision: np.ndarray  # (B,) bool, probability >= threshold
    threshold: float


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelPredictor:
    """One fine-tuned model."""

    def __init__(self, loaded, *, device: str, batch_size: int = 32):
        from microcalcai.models.registry import get_arch

        self.model = loaded.module
        self.card = loaded.card
        self.path = loaded.path
        self.name = loaded.card.name
        self.threshold = float(loaded.card.threshold)
        self.input_size = int(loaded.card.input_size)
        self.target_layer = get_arch(loaded.card.arch).target_layer
        self.device = device
        self.batch_size = batch_size

    @property
    def members(self) -> list[ModelPredictor]:
        return [self]

    def preprocess(self, crops):
        """Crops (B, N, N) 0..1 -> normalised (B, 3, S, S) tensor on this predictor's device."""
        card = self.card
        return preprocess_crops(crops, self.input_size, card.mean, card.std, card.channel_mode).to(
            self.device
        )

    def predict_proba(self, crops) -> np.ndarray:
        import torch

        crops = np.asarray(crops, dtype=np.float32) if not torch.is_tensor(crops) else crops
        if crops.ndim == 2:
            crops = crops[None]
        malignant = self.card.labels.index(POSITIVE_LABEL)
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                logits = self.model(self.preprocess(crops[start : start + self.batch_size]))
                out.append(torch.softmax(logits.float(), dim=1)[:, malignant].cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def predict(self, crops) -> PredictionBatch:
        probability = self.predict_proba(crops)
        return PredictionBatch(
            probability, {self.name: probability}, probability >= self.threshold, self.threshold
        )

    def predict_sized(self, crops_by_size: dict) -> PredictionBatch:
        """`predict` on crops already resized to this model's input size ({size: crops})."""
        return self.predict(crops_by_size[self.input_size])


class EnsemblePredictor:
    """Several models combined by mean probability or majority vote, with the ensemble's own threshold."""

    def __init__(self, card, members: list[ModelPredictor], path: Path):
        self.card = card
        self.name = card.name
        self.combine = card.combine
        self.threshold = float(card.threshold)
        self.path = path
        self._members = members

    @property
    def members(self) -> list[ModelPredictor]:
        return list(self._members)

    def preprocess(self, crops, member: int | str = 0):
        """Network input for one member (members may differ in input size and normalisation)."""
        if isinstance(member, str):
            named = [m for m in self._members if m.name == member]
            if not named:
                raise InputError(
                    f"ensemble {self.name} has no member {member!r}; "
                    f"members: {[m.name for m in self._members]}"
                )
            return named[0].preprocess(crops)
        return self._members[member].preprocess(crops)

    def predict(self, crops) -> PredictionBatch:
        return self._combined({m.name: m.predict_proba(crops) for m in self._members})

    def predict_sized(self, crops_by_size: dict) -> PredictionBatch:
        """Each member on crops resized once, straight to its own input size ({size: crops}), as
        in its training."""
        return self._combined({m.name: m.predict_proba(crops_by_size[m.input_size]) for m in self._members})

    def _combined(self, probs: dict) -> PredictionBatch:
        from microcalcai.models.ensemble import combine_probabilities

        combined = combine_probabilities(probs, {m.name: m.threshold for m in self._members}, self.combine)
        return PredictionBatch(combined, probs, combined >= self.threshold, self.threshold)


def demonstration_use(predictor) -> str:
    """ "<demonstration members>: <their intended use>", or "" when no member is a demonstration."""
    shown = [m for m in predictor.members if m.card.demonstration]
    if not shown:
        return ""
    use = shown[0].card.intended_use or "a demonstration model, not for real images"
    return f"{', '.join(m.name for m in shown)}: {use}"


def demonstration_note(predictor) -> str:
    """One line for a command's output when the predictor's models are demonstrations ("" if not)."""
    use = demonstration_use(predictor)
    return f"note: {use}" if use else ""


def load_predictor(path, *, device: str | None = None, batch_size: int = 32):
    """A :class:`ModelPredictor` or :class:`EnsemblePredictor` for a model or ensemble folder."""
    from microcalcai.models.artifact import load_model
    from microcalcai.models.ensemble import is_ensemble_folder, read_ensemble
    from microcalcai.models.folder import is_model_folder

    device = device or _default_device()
    path = Path(path)
    if not path.exists():
        raise InputError(f"model {path} does not exist; give a model or ensemble folder")
    if is_ensemble_folder(path):
        card, member_dirs = read_ensemble(path)
        members = [
            ModelPredictor(load_model(p, device=device), device=device, batch_size=batch_size)
            for p in member_dirs
        ]
        for member, name in zip(members, card.member_names, strict=False):
            member.name = name
        return EnsemblePredictor(card, members, path if path.is_dir() else path.parent)
    if is_model_folder(path) or path.name == "model.json":
        return ModelPredictor(load_model(path, device=device), device=device, batch_size=batch_size)
    raise InputError(
        f"{path} is neither a model folder (model.json) nor an ensemble folder (ensemble.json); "
        "give the folder written by `microcalcai train` or `microcalcai ensemble`"
    )

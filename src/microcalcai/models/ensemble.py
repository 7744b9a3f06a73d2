"""Ensembles as artifacts: a folder with ``ensemble.json`` and its member model folders.

Members are combined by the mean of their probabilities (Kang et al.) or by majority vote (each
member votes at its own threshold; the ensemble's score is the fraction of malignant votes). The
ensemble has its own threshold, chosen on validation predictions like a single model's.
Members are copied into ``members/<name>/`` so the folder can be moved as one piece.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_dir
from microcalcai.errors import InputError
from microcalcai.models.artifact import read_card

ENSEMBLE_JSON = "ensemble.json"
COMBINE_METHODS = ("mean", "vote")


@dataclass
class EnsembleCard:
    name: str
    members: list  # model folders, relative to the ensemble folder
    combine: str = "mean"
    threshold: float = 0.5
    threshold_method: str = "default 0.5 (not chosen on data)"
    val_metrics: dict = field(default_factory=dict)
    test_metrics: dict = field(default_factory=dict)
    member_names: list = field(default_factory=list)
    created: str = ""
    version: str = "1"
    format: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def combine_probabilities(member_probs: dict, member_thresholds: dict, combine: str) -> np.ndarray:
    """The ensemble's P(malignant) (mean) or fraction of malignant votes (vote)."""
    if combine not in COMBINE_METHODS:
        raise InputError(f"combine must be one of {COMBINE_METHODS}, got {combine!r}")
    stacked = np.stack([np.asarray(member_probs[n], dtype=float) for n in member_probs])
    if combine == "mean":
        return stacked.mean(axis=0)
    thresholds = np.array([member_thresholds[n] for n in member_probs])[:, None]
    return (stacked >= thresholds).mean(axis=0)


def save_ensemble(
    member_dirs,
    out_dir,
    *,
    combine: str = "mean",
    threshold: float = 0.5,
    threshold_method: str = "default 0.5 (not chosen on data)",
    val_metrics=None,
    test_metrics=None,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy the member model folders into ``out_dir/members`` and write ``ensemble.json`` atomically."""
    if combine not in COMBINE_METHODS:
        raise InputError(f"--combine must be one of {COMBINE_METHODS}, got {combine!r}")
    member_dirs = [Path(p) for p in member_dirs]
    if len(member_dirs) < 2:
        raise InputError("an ensemble needs at least two member models")
    names = unique_member_names([read_card(p).name for p in member_dirs])
    out_dir = Path(out_dir)
    card = EnsembleCard(
        name=name or out_dir.name,
        members=[f"members/{n}" for n in names],
        combine=combine,
        threshold=float(threshold),
        threshold_method=threshold_method,
        val_metrics=val_metrics or {},
        test_metrics=test_metrics or {},
        member_names=names,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for member, member_name in zip(member_dirs, names, strict=True):
            shutil.copytree(member, tmp / "members" / member_name)
        (tmp / ENSEMBLE_JSON).write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n")
    return out_dir


def read_ensemble(path) -> tuple[EnsembleCard, list[Path]]:
    """The card and the absolute member folders of an ensemble folder."""
    folder = Path(path)
    if folder.name == ENSEMBLE_JSON:
        folder = folder.parent
    card_path = folder / ENSEMBLE_JSON
    try:
        data = json.loads(card_path.read_text())
        card = EnsembleCard(**{k: v for k, v in data.items() if k in EnsembleCard.__dataclass_fields__})
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"cannot read ensemble card {card_path}: {exc}") from exc
    if card.combine not in COMBINE_METHODS:
        raise InputError(f"{card_path}: combine {card.combine!r} is not one of {COMBINE_METHODS}")
    members = [(folder / m).resolve() for m in card.members]
    for member in members:
        if not member.is_dir():
            raise InputError(
                f"{card_path} lists member {member}, which does not exist; copy the whole ensemble folder"
            )
    if not card.member_names:
        card.member_names = [m.name for m in members]
    return card, members


def is_ensemble_folder(path) -> bool:
    path = Path(path)
    return (path / ENSEMBLE_JSON).is_file() or path.name == ENSEMBLE_JSON


def unique_member_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"
        count = seen.get(safe, 0)
        seen[safe] = count + 1
        out.append(safe if count == 0 else f"{safe}_{count + 1}")
    return out


def member_model_dirs(path) -> list[Path]:
    """Model folders named by a --member argument: a model folder, or a run folder holding some."""
    from microcalcai.models.folder import is_model_folder

    path = Path(path)
    if is_model_folder(path):
        return [path]
    if not path.is_dir():
        raise InputError(
            f"--member {path} does not exist; give a model folder or a `microcalcai train` run folder"
        )
    # a run folder: RUN_DIR/<arch>/model (final models); fold and stage models are not picked up
    found = sorted(p.parent for p in path.glob("*/model/model.json"))
    if not found:
        found = sorted(p.parent for p in path.glob("*/*/model/model.json") if "stages" not in p.parts)
    if not found:
        raise InputError(f"--member {path} holds no model folder (model.json) at RUN_DIR/<arch>/model")
    return found


def ensemble_threshold(val_tables: dict, member_thresholds: dict, combine: str):
    """Youden threshold of the combined score on the members' shared validation cases.

    ``val_tables``: member name -> DataFrame with case_id, label, probability (predictions_val.csv).
    Returns (ThresholdChoice, metrics dict).
    """
    from microcalcai.evaluate import operating_point

    return operating_point.ensemble_threshold(
        val_tables, lambda probs: combine_probabilities(probs, member_thresholds, combine)
    )

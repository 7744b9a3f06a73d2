"""The models a server hosts: versioned artifact folders in the workspace, served by name.

Layout under `<workspace>/models/`::

    <name>/versions/<N>/      a model folder (model.json + weights) or, for `ensemble`, an
                              ensemble folder (ensemble.json + members/)
    <name>/current            the version being served (text, replaced atomically)
    <name>/train_stats.json   progress of the last training of this model

Publishing writes the new version folder first (atomically) and then swaps `current`, so a
reader sees the old version or the new one, never half of either; earlier versions are kept.
A training runs in another process: the server notices a new `current` on the next request.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from microcalcai.atomic import atomic_write_text
from microcalcai.server.errors import NotFound

LOG = logging.getLogger(__name__)
ENSEMBLE = "ensemble"
# card crop tasks the server asks as whole views: a model of the padded whole view, and a tile
# model (models.tiles) that scores a whole view from its breast tiles
WHOLE_IMAGE_TASKS = ("whole_image", "tiles")


def served_task(card) -> str:
    """ "roi" or "whole_image", the request kind a model card is served under."""
    task = str((card.crop or {}).get("task") or "roi")
    return "whole_image" if task in WHOLE_IMAGE_TASKS else task


class ModelStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def names(self) -> list[str]:
        """Hosted models (the ensemble last), those with a served version only."""
        if not self.root.is_dir():
            return []
        names = sorted(
            p.name for p in self.root.iterdir() if (p / "current").is_file() and p.name != ENSEMBLE
        )
        if (self.root / ENSEMBLE / "current").is_file():
            names.append(ENSEMBLE)
        return names

    def model_names(self) -> list[str]:
        return [n for n in self.names() if n != ENSEMBLE]

    def task(self, name: str) -> str:
        """ "roi" or "whole_image": how the served version is asked (a tile model answers for whole
        views too; `describe` says how it scores them)."""
        if name == ENSEMBLE:
            return "roi"  # an ensemble is built over the ROI models only
        from microcalcai.models.artifact import read_card

        return served_task(read_card(self.current_dir(name)))

    def roi_model_names(self) -> list[str]:
        """The hosted ROI models: what the ensemble, active learning and /train work with."""
        return [n for n in self.model_names() if self.task(n) == "roi"]

    def whole_image_names(self) -> list[str]:
        return [n for n in self.model_names() if self.task(n) == "whole_image"]

    def folder(self, name: str) -> Path:
        return self.root / name

    def current_version(self, name: str) -> str:
        pointer = self.root / name / "current"
        try:
            return pointer.read_text().strip()
        except FileNotFoundError:
            raise NotFound(f"model {name!r} is not hosted here; GET /info/ lists the models") from None

    def current_dir(self, name: str) -> Path:
        return self.version_dir(name, self.current_version(name))

    def version_dir(self, name: str, version: str) -> Path:
        return self.root / name / "versions" / str(version)

    def versions(self, name: str) -> list[str]:
        folder = self.root / name / "versions"
        if not folder.is_dir():
            return []
        return sorted(
            (p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_version_key
        )

    def next_version(self, name: str) -> str:
        numbers = [int(v) for v in self.versions(name) if v.isdigit()]
        return str(max(numbers, default=0) + 1)

    def publish(self, name: str, version: str) -> None:
        """Serve `version` (already written under versions/) from the next request on."""
        if not (self.version_dir(name, version)).is_dir():
            raise FileNotFoundError(self.version_dir(name, version))
        atomic_write_text(self.root / name / "current", f"{version}\n")
        LOG.info("model %s: now serving version %s", name, version)

    def stats_path(self, name: str) -> Path:
        return self.root / name / "train_stats.json"

    def read_stats(self, name: str) -> dict:
        try:
            return json.loads(self.stats_path(name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write_stats(self, name: str, stats: dict) -> None:
        atomic_write_text(self.stats_path(name), json.dumps(stats, indent=2, sort_keys=True) + "\n")


def _version_key(version: str):
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


@dataclass
class Served:
    """One loaded version of a hosted model."""

    name: str
    version: str
    folder: Path
    predictor: object  # microcalcai.models.predictor.Predictor
    card: dict
    lock: threading.Lock  # Grad-CAM hooks on one module must not interleave across threads


class ServedModels:
    """Loads each hosted model once and reloads it when its `current` version changes."""

    def __init__(self, store: ModelStore):
        self.store = store
        self._cache: dict[str, Served] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Served:
        version = self.store.current_version(name)
        with self._lock:
            served = self._cache.get(name)
            if served is None or served.version != version:
                served = self._load(name, version)
                self._cache[name] = served
            return served

    def _load(self, name: str, version: str) -> Served:
        from microcalcai.models.predictor import load_predictor

        folder = self.store.version_dir(name, version)
        LOG.info("loading model %s version %s from %s", name, version, folder)
        predictor = load_predictor(folder)
        return Served(name, version, folder, predictor, describe(folder), threading.Lock())


def describe(folder: Path) -> dict:
    """What /info/ says about one model or ensemble folder (from its card, no weights loaded)."""
    from microcalcai.models.artifact import read_card
    from microcalcai.models.ensemble import is_ensemble_folder, read_ensemble

    if is_ensemble_folder(folder):
        card, members = read_ensemble(folder)
        member_cards = [read_card(member) for member in members]
        shown = next((c for c in member_cards if c.demonstration), None)
        return {
            "kind": "ensemble",
            "task": "roi",
            # an ensemble with a demonstration member is itself a demonstration
            **_intended_use(shown.demonstration if shown else False, shown.intended_use if shown else ""),
            "threshold": float(card.threshold),
            "threshold_method": card.threshold_method,
            "combine": card.combine,
            "members": list(card.member_names),
            "member_arches": [c.arch for c in member_cards],
            "member_versions": {n: c.version for n, c in zip(card.member_names, member_cards, strict=True)},
            "val_metrics": card.val_metrics,
            "test_metrics": card.test_metrics,
            "created": card.created,
        }
    card = read_card(folder)
    task = served_task(card)
    extra = {}
    if task == "whole_image":
        from microcalcai.server.whole_image import card_fields

        extra = card_fields(card)
    return {
        "kind": "model",
        "task": task,
        **extra,
        **_intended_use(card.demonstration, card.intended_use),
        "arch": card.arch,
        "input_size": card.input_size,
        "threshold": float(card.threshold),
        "threshold_method": card.threshold_method,
        "val_metrics": card.val_metrics,
        "test_metrics": card.test_metrics,
        "labels_order": list(card.labels),
        "members": [card.name],
        "created": card.created,
        "recipe": card.recipe.get("name") if isinstance(card.recipe, dict) else card.recipe,
    }


def _intended_use(demonstration: bool, intended_use: str) -> dict:
    """Every model says whether it is only a demonstration; a card without a stated use gets the
    generic one (trained by its owner on data this server does not know)."""
    return {
        "demonstration": bool(demonstration),
        "intended_use": intended_use
        or ("demonstration model" if demonstration else "as validated by whoever trained it; see its card"),
    }

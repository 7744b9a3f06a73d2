"""Training recipes: YAML files shipped in the package (microcalcai/recipes), overridable from the
command line.

A recipe is configuration, not code. ``load_recipe("kang2021")`` reads the package's
``recipes/kang2021.yaml`` on top of ``recipes/defaults.yaml``; ``load_recipe("my.yaml")`` reads a
file of the user's; overrides are ``KEY=VALUE`` strings with dotted keys (``optimizer.lr=3e-4``,
``early_stopping.patience=5``, ``archs=[resnet50,densenet121]``), values parsed as YAML.
Unknown keys are errors, so a typo never silently trains with a default.
"""

from __future__ import annotations

import copy
import math
import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from microcalcai.errors import InputError

CHOICES = {
    "task": ("roi", "whole_image", "tiles"),
    "tiles.aggregate": ("max", "top3"),
    "optimizer.name": ("adam", "adamw", "sgd"),
    "scheduler": ("none", "cosine", "plateau"),
    "early_stopping.monitor": ("val_loss", "val_auc"),
    "select_best": ("val_auc", "val_loss", "average"),
    "imbalance": ("class_weights", "balanced_sampler", "none"),
    "mixed_precision": ("auto", True, False),
    "channels_last": ("auto", True, False),
}
# Keys whose value is a free-form mapping or list (not checked key by key).
OPEN_KEYS = ("stages", "archs", "findings", "augment.rotate_degrees", "optimizer.betas")
STAGE_KEYS = {"name", "data", "epochs", "weights", "optimizer", "early_stopping", "lr"}


def recipes_dir() -> Traversable:
    """The named recipes: package data of microcalcai (or the folder $MICROCALCAI_RECIPES).

    Package data, not a folder beside the sources, so an installed wheel trains as a checkout does.
    """
    env = os.environ.get("MICROCALCAI_RECIPES")
    if env:
        return Path(env)
    return resources.files("microcalcai") / "recipes"


def available_recipes() -> list[str]:
    folder = recipes_dir()
    if not folder.is_dir():
        return []
    names = (entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))
    return sorted(name for name in names if name != "defaults")


def _read_yaml(path: Traversable) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read recipe {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"recipe {path} must be a YAML mapping of settings")
    return data


def _merge(base: dict, update: dict, *, where: str, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            allowed = ", ".join(sorted(f"{prefix}{k}" for k in base))
            raise InputError(f"{where}: unknown setting {dotted!r}; known settings: {allowed}")
        if isinstance(base[key], dict) and dotted not in OPEN_KEYS:
            if not isinstance(value, dict):
                raise InputError(f"{where}: {dotted} must be a mapping, got {value!r}")
            out[key] = _merge(base[key], value, where=where, prefix=dotted + ".")
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict:
    """``"optimizer.lr=3e-4"`` -> ``{"optimizer": {"lr": 0.0003}}``."""
    if "=" not in text:
        raise InputError(f"--set {text!r}: write KEY=VALUE, e.g. --set optimizer.lr=3e-4")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise InputError(f"--set {text!r}: the value is not valid YAML ({exc})") from exc
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # PyYAML reads "1e-4" (no dot) as a string
    nested: dict = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_recipe(name_or_file, overrides=()) -> dict:
    """The recipe as a plain dict, defaults filled in, overrides applied, values checked."""
    folder = recipes_dir()
    defaults = _read_yaml(folder / "defaults.yaml")
    path: Traversable = Path(str(name_or_file)).expanduser()
    if not path.is_file():
        path = folder / f"{name_or_file}.yaml"
    if not path.is_file():
        raise InputError(
            f"recipe {name_or_file!r} is neither a file nor one of: {', '.join(available_recipes())} "
            f"(in {folder})"
        )
    recipe = _merge(defaults, _read_yaml(path), where=f"recipe {path}")
    for text in overrides:
        recipe = _merge(recipe, parse_override(text), where=f"--set {text}")
    recipe["source"] = str(path)
    recipe["overrides"] = list(overrides)
    _validate(recipe, where=f"recipe {path}")
    return recipe


def _validate(recipe: dict, *, where: str) -> None:
    from microcalcai.models.registry import get_arch

    for dotted, allowed in CHOICES.items():
        value = _get(recipe, dotted)
        if value not in allowed:
            raise InputError(f"{where}: {dotted} is {value!r}; choose one of {allowed}")
    archs = recipe["archs"]
    if isinstance(archs, str):
        recipe["archs"] = archs = [a.strip() for a in archs.split(",") if a.strip()]
    if not archs:
        raise InputError(f"{where}: archs is empty; name at least one architecture")
    recipe["archs"] = [get_arch(a).name for a in archs]
    positive = {
        "epochs": recipe["epochs"],
        "optimizer.lr": recipe["optimizer"]["lr"],
        "roi_size": recipe["roi_size"],
    }
    for key, value in positive.items():
        if not isinstance(value, (int, float)) or value < 0 or (key != "optimizer.lr" and value == 0):
            raise InputError(f"{where}: {key} must be a positive number, got {value!r}")
    if recipe["batch_size"] is not None and (
        not isinstance(recipe["batch_size"], int) or recipe["batch_size"] < 1
    ):
        raise InputError(
            f"{where}: batch_size must be a positive integer or null, got {recipe['batch_size']!r}"
        )
    workers = recipe["num_workers"]
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise InputError(
            f"{where}: num_workers must be 'auto' (loader processes on a GPU, none on a CPU) or a "
            f"whole number >= 0 (0: augment in the training process), got {workers!r}"
        )
    if not isinstance(recipe["min_epoch_images"], int) or recipe["min_epoch_images"] < 0:
        raise InputError(
            f"{where}: min_epoch_images must be a whole number >= 0 (0: an epoch is the training set "
            f"once), got {recipe['min_epoch_images']!r}"
        )
    average = recipe["average_epochs"]
    if (
        isinstance(average, bool)
        or not isinstance(average, (int, float))
        or not math.isfinite(average)
        or average <= 0
        or (average >= 1 and average != int(average))
    ):
        raise InputError(
            f"{where}: average_epochs must be a whole number of epochs (3) or a share of the epochs "
            f"below 1 (0.5: the last half), the epochs select_best: average keeps the mean of; "
            f"got {average!r}"
        )
    if not isinstance(recipe["folds"], int) or recipe["folds"] < 0 or recipe["folds"] == 1:
        raise InputError(
            f"{where}: folds must be 0 (no cross-validation) or at least 2, got {recipe['folds']!r}"
        )
    from microcalcai.models.tiles import TileSettings

    TileSettings.from_dict(recipe["tiles"], where=f"{where}: tiles")
    if recipe["task"] == "tiles" and recipe["folds"]:
        raise InputError(f"{where}: task tiles does not cross-validate (folds); use a train/val/test split")
    if recipe["early_stopping"]["patience"] < 1:
        raise InputError(f"{where}: early_stopping.patience must be at least 1")
    for index, stage in enumerate(recipe["stages"] or []):
        if not isinstance(stage, dict) or "name" not in stage or "data" not in stage:
            raise InputError(
                f"{where}: stages[{index}] needs a name and a data key (a --stage-data name or 'target')"
            )
        unknown = set(stage) - STAGE_KEYS
        if unknown:
            raise InputError(
                f"{where}: stages[{index}] has unknown key(s) {sorted(unknown)}; "
                f"allowed: {sorted(STAGE_KEYS)}"
            )


def _get(recipe: dict, dotted: str):
    value = recipe
    for part in dotted.split("."):
        value = value[part]
    return value


def dump_recipe(recipe: dict) -> str:
    return yaml.safe_dump(recipe, sort_keys=False)

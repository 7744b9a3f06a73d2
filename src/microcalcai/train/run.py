"""A recipe, end to end: manifest -> splits -> crops -> one fit per architecture (and stage, and
fold) -> model folders, validation/test predictions, learning curves and a summary.

Layout of a run folder::

    RUN_DIR/recipe.yaml            the resolved recipe (defaults + file + overrides)
    RUN_DIR/summary.json           per architecture: model folder, validation and test metrics
    RUN_DIR/<arch>/model/          the final model (last stage); what `predict` and `ensemble` take
    RUN_DIR/<arch>/metrics.csv, tensorboard/, learning_curve.png, checkpoints/last.pt
    RUN_DIR/<arch>/predictions_val.csv, predictions_test.csv
    RUN_DIR/<arch>/stages/<name>/  earlier stages of double transfer learning (same layout)
    RUN_DIR/<arch>/fold<k>/        cross-validation folds (same layout), and
    RUN_DIR/<arch>/oof_predictions.csv, cv_summary.json

The threshold of every model is the maximal Youden index on its validation predictions; test
data never influence training, selection or the threshold. Finished pieces are skipped and an
interrupted fit resumes from its checkpoint, so re-running the same command continues a run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_write_text
from microcalcai.errors import InputError
from microcalcai.evaluate.operating_point import summary_metrics, youden_threshold
from microcalcai.train.data import CropDataset, CropSet, case_ids, labels_of, load_crops_sized
from microcalcai.train.loop import FitConfig, evaluate, fit, resolve_device, seed_everything
from microcalcai.train.predictions import predictions_table, write_predictions
from microcalcai.train.recipes import dump_recipe
from microcalcai.train.split_record import SPLIT_FILE, split_csv

LOG = logging.getLogger(__name__)
TARGET = "target"


@dataclass
class DataSet:
    """One manifest with its split and its decoded crops (at ``crops.grey``'s size)."""

    name: str
    frame: object
    crops: CropSet
    sha256: str
    split_source: str
    images: object = None  # task tiles: the whole-image rows (``frame`` and ``crops`` are tiles)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def assign_split(frame, recipe: dict):
    """The manifest's own split column when it has train and val rows, else a patient-level split."""
    from microcalcai.data.splits import patient_split

    if "split" in frame.columns:
        values = set(frame["split"].dropna().astype(str))
        if {"train", "val"} <= values:
            return frame, "manifest split column"
        if values - {"", "nan"}:
            LOG.warning("the manifest's split column lacks train or val rows; drawing a patient-level split")
    split = recipe["split"]
    out = patient_split(
        frame.drop(columns=["split"], errors="ignore"),
        val=split["val"],
        test=split["test"],
        seed=split["seed"],
        stratify=split["stratify"],
    )
    return out, f"patient_split(val={split['val']}, test={split['test']}, seed={split['seed']})"


def load_data(
    name: str, manifest, recipe: dict, size: int, *, progress: bool = True, input_sizes=()
) -> DataSet:
    """The manifest's crops at `size`, and ROI crops also at each of `input_sizes` (each resized
    once from the image, as serving resizes them for a network of that input size)."""
    from microcalcai.data.manifest import manifest_sha256, read_manifest

    frame = read_manifest(manifest)
    if recipe.get("findings"):
        wanted = {str(f) for f in recipe["findings"]}
        frame = frame[frame["finding"].astype(str).isin(wanted)]
        if frame.empty:
            raise InputError(
                f"manifest {manifest} has no rows of finding {sorted(wanted)} (recipe setting findings)"
            )
    unknown = labels_of(frame) < 0
    if unknown.any():
        raise InputError(
            f"manifest {manifest}: {int(unknown.sum())} row(s) have no benign/malignant label; "
            "training needs a label on every row"
        )
    frame, source = assign_split(frame.reset_index(drop=True), recipe)
    if recipe["task"] == "tiles":
        from microcalcai.models.tiles import TileSettings
        from microcalcai.train.tiles import training_tiles

        _need_validation_images(frame["split"])
        # tiles are cut from train and validation images only: test images are scored whole
        fitting = frame[frame["split"].astype(str) != "test"]
        settings = TileSettings.from_dict(recipe["tiles"])
        crops = training_tiles(fitting, settings, size, seed=int(recipe["seed"]), progress=progress)
        return DataSet(name, crops.frame, crops, manifest_sha256(manifest), source, images=frame)
    # A whole view is stored at the recipe's roi_size, the size the served model prepares it at
    # (models.tiles), and resized from there to each network's input, as when it is served.
    stored = int(recipe["roi_size"]) if recipe["task"] == "whole_image" else size
    sizes = {stored, *(input_sizes if recipe["task"] == "roi" else ())}
    grey = load_crops_sized(
        frame, roi_size=int(recipe["roi_size"]), sizes=sizes, task=recipe["task"], progress=progress
    )
    others = {s: g for s, g in grey.items() if s != stored}
    crops = CropSet(grey[stored], labels_of(frame), case_ids(frame), frame, other_sizes=others)
    return DataSet(name, frame, crops, manifest_sha256(manifest), source)


def _trained_crop_size(frame, recipe: dict) -> int:
    """The crop size the model learned from, for its card (what `explain` and `predict` cut when
    a row names none): the manifest's most common roi_size; the recipe's is only the fallback
    for rows without one."""
    import pandas as pd

    if recipe["task"] != "roi" or "roi_size" not in frame:
        return int(recipe["roi_size"])
    sizes = pd.to_numeric(frame["roi_size"], errors="coerce")
    sizes = sizes[sizes > 0].round().astype("Int64")
    return int(sizes.mode().iloc[0]) if len(sizes) else int(recipe["roi_size"])


# How the run is executed, not what it learns: a folder continues with another worker count, and
# folders started when the default was 0 (before 'auto') still resume.
EXECUTION_SETTINGS = ("num_workers",)


def _comparable(identity: dict) -> dict:
    """A run's identity without its execution settings."""
    import yaml

    recipe = yaml.safe_load(identity.get("recipe") or "") or {}
    kept = {key: value for key, value in recipe.items() if key not in EXECUTION_SETTINGS}
    return {**identity, "recipe": kept}


def _has_trained(out_dir: Path) -> bool:
    """Whether the folder holds anything a training wrote (beyond the run's identity)."""
    return any(p.is_file() for child in out_dir.iterdir() if child.is_dir() for p in child.rglob("*"))


def _differences(saved: dict, current: dict) -> list[str]:
    """What differs between two run identities, in words: each recipe setting, each manifest."""
    before, now = saved.get("recipe", {}), current.get("recipe", {})
    changed = [
        f"{key}: {before.get(key)!r} there, {now.get(key)!r} now"
        for key in sorted(set(before) | set(now))
        if before.get(key) != now.get(key)
    ]
    data_before, data_now = saved.get("data", {}), current.get("data", {})
    changed += [
        f"the {name} manifest's content changed"
        if name in data_before and name in data_now
        else f"the {name} manifest is {'new' if name in data_now else 'gone'}"
        for name in sorted(set(data_before) | set(data_now))
        if data_before.get(name) != data_now.get(name)
    ]
    return changed


def _check_run_dir(out_dir: Path, recipe: dict, manifests: dict, *, resume: bool) -> None:
    """A run folder holds one recipe on one data set; continuing it with other settings is refused."""
    from microcalcai.data.manifest import manifest_sha256

    identity = {
        "recipe": dump_recipe({k: v for k, v in recipe.items() if k != "overrides"}),
        "data": {name: manifest_sha256(path) for name, path in sorted(manifests.items())},
    }
    saved = out_dir / "run.json"
    # A folder whose earlier run stopped before training anything (bad weights, one class) holds
    # nothing to protect: it takes the new run.
    if resume and saved.is_file() and _has_trained(out_dir):
        changed = _differences(_comparable(json.loads(saved.read_text())), _comparable(identity))
        if changed:
            raise InputError(
                f"{out_dir} holds a run of a different recipe, settings or data ({'; '.join(changed)}; see "
                f"{out_dir / 'recipe.yaml'}); choose a new --out folder, or give --restart to train "
                "there again from the start"
            )
    if _rank() == 0:
        atomic_write_text(out_dir / "recipe.yaml", identity["recipe"])
        atomic_write_text(saved, json.dumps(identity, indent=2) + "\n")


def train_recipe(
    recipe: dict,
    data,
    out_dir,
    *,
    stage_data: dict | None = None,
    device: str | None = None,
    resume: bool = True,
    progress: bool = True,
) -> dict:
    """Run ``recipe`` on the manifest ``data``; returns (and writes) the run summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device or recipe["device"])
    stages = recipe["stages"] or [{"name": TARGET, "data": TARGET}]
    manifests = {TARGET: data, **(stage_data or {})}
    for stage in stages:
        if stage["data"] not in manifests:
            raise InputError(
                f"recipe stage {stage['name']!r} trains on data {stage['data']!r}; give it with "
                f"--stage-data {stage['data']}=MANIFEST"
            )
    unused = sorted(set(stage_data or {}) - {s["data"] for s in stages})
    if unused:
        raise InputError(
            f"--stage-data names {unused}, which no stage of this recipe trains on; its stages train "
            f"on {sorted({s['data'] for s in stages})}"
        )
    manifests = {name: path for name, path in manifests.items() if name in {s["data"] for s in stages}}
    _check_run_dir(out_dir, recipe, manifests, resume=resume)
    from microcalcai.models.registry import get_arch

    sizes = {arch: int(recipe["input_size"] or get_arch(arch).input_size) for arch in recipe["archs"]}
    cache_size = max(sizes.values())
    datasets = {
        name: load_data(
            name,
            manifests[name],
            recipe,
            cache_size,
            progress=progress and _rank() == 0,
            input_sizes=set(sizes.values()),
        )
        for name in {s["data"] for s in stages}
    }
    summary = {"recipe": recipe["name"], "device": device, "data": str(data), "archs": {}}
    for arch in recipe["archs"]:
        outcome = _train_arch(
            arch,
            recipe,
            stages,
            datasets,
            out_dir / arch,
            sizes[arch],
            device,
            resume=resume,
            progress=progress,
        )
        summary["archs"][arch] = {k: v for k, v in outcome.items() if k != "test_probability"}
    if _rank() == 0:
        atomic_write_text(
            out_dir / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n"
        )
    return summary


def _train_arch(arch, recipe, stages, datasets, arch_dir: Path, size: int, device: str, *, resume, progress):
    options = {"size": size, "device": device, "resume": resume, "progress": progress}
    weights = recipe["weights"]
    outcome = {}
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        stage_dir = arch_dir if last else arch_dir / "stages" / stage["name"]
        dataset = datasets[stage["data"]]
        stage_recipe = _stage_recipe(recipe, stage)
        name = f"{recipe['name']}-{arch}" + ("" if last else f"-{stage['name']}")
        if last and recipe["folds"] >= 2:
            outcome = _cross_validate(arch, stage_recipe, dataset, stage_dir, weights, name, **options)
        else:
            split = dataset.frame["split"].astype(str).to_numpy()
            parts = {key: dataset.crops.subset(split == key) for key in ("train", "val", "test")}
            outcome = fit_and_save(arch, stage_recipe, parts, dataset, stage_dir, weights, name, **options)
            weights = outcome["model_dir"]  # the best model of this stage seeds the next
    return outcome


def _stage_recipe(recipe: dict, stage: dict) -> dict:
    out = dict(recipe)
    if "epochs" in stage:
        out["epochs"] = stage["epochs"]
    if "lr" in stage:
        out["optimizer"] = {**recipe["optimizer"], "lr": stage["lr"]}
    for key in ("optimizer", "early_stopping"):
        if isinstance(stage.get(key), dict):
            out[key] = {**recipe[key], **stage[key]}
    out["stage"] = stage["name"]
    return out


def fit_and_save(
    arch,
    recipe,
    parts: dict,
    dataset: DataSet,
    run_dir: Path,
    weights,
    name: str,
    *,
    size: int,
    device: str,
    resume: bool,
    progress: bool,
    fold: int | None = None,
) -> dict:
    """One full run: fit, choose the threshold on validation, save the model and the predictions."""
    from microcalcai.models.artifact import card_for, read_card, save_model
    from microcalcai.models.registry import create_model, get_arch

    model_dir = run_dir / "model"
    if resume and (model_dir / "model.json").is_file():
        LOG.info("%s is complete; skipping it", model_dir)
        card = read_card(model_dir)
        return {
            "model_dir": str(model_dir),
            "val": card.val_metrics,
            "test": card.test_metrics,
            "skipped": True,
        }
    for key in ("train", "val"):
        if len(parts[key]) == 0 or len(np.unique(parts[key].labels)) < 2:
            raise InputError(
                f"the {key} split of {dataset.name} needs ROIs of both labels; "
                f"it has {len(parts[key])} ROI(s). Add data or change the split fractions"
            )
    seed_everything(int(recipe["seed"]))
    model = create_model(arch, weights)
    card = card_for(arch, name=name, input_size=size)
    if recipe["task"] == "tiles":  # the card says how to tile a whole image (models.tiles.score_whole_image)
        card.crop = {"task": "tiles", "roi_size": int(recipe["roi_size"]), "tiles": dict(recipe["tiles"])}
    augment = recipe["augment"]
    train_set = CropDataset(
        parts["train"].resized(size),
        card.mean,
        card.std,
        augment=augment,
        offline_copies=int(augment.get("offline_copies") or 0),
        seed=int(recipe["seed"]),
    )
    val_set = CropDataset(parts["val"].resized(size), card.mean, card.std)
    batch = int(recipe["batch_size"] or get_arch(arch).batch_size)
    config = FitConfig.from_recipe(recipe, batch_size=batch, device=device, progress=progress)
    result = fit(model, train_set, val_set, config, run_dir, resume=resume, title=name)

    choice = youden_threshold(parts["val"].labels, result.val_probability)
    val_metrics = summary_metrics(parts["val"].labels, result.val_probability, choice.threshold)
    val_metrics.update(
        best_epoch=result.best_epoch,
        epochs_run=len(result.history),
        world_size=_world(),
        stopped_early=result.stopped_early,
        images_per_s=round(result.images_per_s, 2),
    )
    if result.averaged_epochs:  # select_best average: the model is the mean of these epochs' weights
        val_metrics["averaged_epochs"] = [result.averaged_epochs[0], result.averaged_epochs[-1]]
    tables = {"val": (parts["val"], result.val_probability)}
    test_metrics = {}
    if dataset.images is not None:  # task tiles: threshold and metrics of whole images, not of tiles
        tables, val_metrics, test_metrics, choice = _whole_image_tables(
            model, card, dataset, val_metrics, device, progress=progress
        )
    elif len(parts["test"]):
        _, test_probability = evaluate(
            model, CropDataset(parts["test"].resized(size), card.mean, card.std), config
        )
        tables["test"] = (parts["test"], test_probability)
        test_metrics = summary_metrics(parts["test"].labels, test_probability, choice.threshold)
    card.threshold, card.threshold_method = choice.threshold, choice.method
    card.val_metrics, card.test_metrics = val_metrics, test_metrics
    card.manifest_sha256 = dataset.sha256
    card.split = {"source": dataset.split_source, **{k: len(v) for k, v in parts.items()}}
    if fold is not None:
        card.split["fold"] = fold
    if dataset.images is not None:
        card.split["images"] = dataset.images["split"].astype(str).value_counts().to_dict()
    card.recipe = {k: v for k, v in recipe.items() if k not in ("description",)}
    card.weights_init = model.weights_info.as_dict()
    card.crop = card.crop or {"task": recipe["task"], "roi_size": _trained_crop_size(dataset.frame, recipe)}
    if _rank() == 0:
        # tiles have no case of the manifest's own, so no split to keep
        split = {} if dataset.images is not None else {SPLIT_FILE: split_csv(parts)}
        save_model(model, card, model_dir, overwrite=True, extra_files=split)
        for key, (crops, probability) in tables.items():
            table = predictions_table(
                crops.frame, crops.case_ids, {name: probability}, probability, choice.threshold, name
            )
            write_predictions(table, run_dir / f"predictions_{key}.csv")
    _barrier()
    LOG.info(
        "%s: %s, validation AUC %.3f, threshold %.3f%s",
        name,
        f"kept the average of epochs {result.averaged_epochs[0]}-{result.averaged_epochs[-1]}"
        if result.averaged_epochs
        else f"kept epoch {result.best_epoch}",
        val_metrics["auc"],
        choice.threshold,
        f", test AUC {test_metrics['auc']:.3f}" if test_metrics else "",
    )
    return {
        "model_dir": str(model_dir),
        "val": val_metrics,
        "test": test_metrics,
        "test_probability": tables.get("test", (None, None))[1],
    }


def _need_validation_images(split) -> None:
    """Task tiles chooses its threshold on whole validation images: refuse a split without any."""
    if not (np.asarray(split).astype(str) == "val").any():
        raise InputError(
            "task tiles needs validation images (its threshold is chosen on whole validation views) "
            "and this split has none; set split.val (e.g. split.val=0.15) or give the manifest's split "
            "column val rows"
        )


def _whole_image_tables(model, card, dataset: DataSet, tile_val_metrics: dict, device: str, *, progress):
    """Task tiles: every validation and test image scored whole (all its breast tiles); the
    threshold is Youden's on the validation images and the metrics are per image, as served."""
    from microcalcai.train.tiles import in_memory_predictor, score_images

    predictor = in_memory_predictor(model, card, device=device)
    split = dataset.images["split"].astype(str).to_numpy()
    scored = {}
    for key in ("val", "test"):
        rows = dataset.images[split == key].reset_index(drop=True)
        if len(rows):
            crops = CropSet(_unread_grey(len(rows)), labels_of(rows), case_ids(rows), rows)
            scored[key] = (crops, score_images(predictor, rows, progress=progress and _rank() == 0))
    if "val" not in scored:
        _need_validation_images(split)
    val_crops, val_probability = scored["val"]
    choice = youden_threshold(val_crops.labels, val_probability)
    val_metrics = summary_metrics(val_crops.labels, val_probability, choice.threshold)
    val_metrics.update({k: v for k, v in tile_val_metrics.items() if k not in val_metrics})
    val_metrics["tile_auc"] = tile_val_metrics.get("auc")
    test_metrics = {}
    if "test" in scored:
        test_metrics = summary_metrics(scored["test"][0].labels, scored["test"][1], choice.threshold)
    return scored, val_metrics, test_metrics, choice


def _unread_grey(count: int):
    """Stand-in crops for whole images that are scored tile by tile (the table needs rows only)."""
    import torch

    return torch.empty((count, 1, 1, 1), dtype=torch.float16)


def _cross_validate(arch, recipe, dataset: DataSet, arch_dir: Path, weights, name, **options):
    """k folds by patient; each fold's model sees the other folds (with an inner validation split)."""
    from microcalcai.data.splits import check_patient_level, patient_kfold, patient_split

    k = int(recipe["folds"])
    frame = patient_kfold(
        dataset.frame.drop(columns=["split"], errors="ignore"), k=k, seed=recipe["split"]["seed"]
    )
    folds = frame["fold"].to_numpy()
    oof = np.full(len(frame), np.nan)
    thresholds = np.full(len(frame), np.nan)
    per_fold = []
    for fold in range(k):
        held_out = folds == fold
        rest = frame[~held_out]
        inner = patient_split(
            rest.drop(columns=["fold"]),
            val=recipe["split"]["val"],
            test=0.0,
            seed=recipe["split"]["seed"] + fold,
            stratify=recipe["split"]["stratify"],
        )
        problems = check_patient_level(inner)
        if problems:
            raise InputError(f"fold {fold}: patients in two splits: {', '.join(map(str, problems))}")
        inner_split = np.full(len(frame), "test", dtype=object)
        inner_split[np.flatnonzero(~held_out)] = inner["split"].to_numpy()
        parts = {key: dataset.crops.subset(inner_split == key) for key in ("train", "val", "test")}
        for key in parts:
            parts[key].frame = parts[key].frame.assign(split=key, fold=fold)
        fold_dir = arch_dir / f"fold{fold}"
        outcome = fit_and_save(
            arch, recipe, parts, dataset, fold_dir, weights, f"{name}-fold{fold}", fold=fold, **options
        )
        probability = outcome.get("test_probability")
        if probability is None:  # a fold finished in an earlier call: read its saved predictions
            import pandas as pd

            saved = pd.read_csv(arch_dir / f"fold{fold}" / "predictions_test.csv")
            probability = saved["probability"].to_numpy()
        oof[held_out] = probability
        from microcalcai.models.artifact import read_card

        thresholds[held_out] = read_card(outcome["model_dir"]).threshold
        per_fold.append(
            {"fold": fold, "model_dir": outcome["model_dir"], "val": outcome["val"], "test": outcome["test"]}
        )
    labels = dataset.crops.labels
    pooled = summary_metrics(labels, oof, 0.5)
    aucs = [f["test"].get("auc", float("nan")) for f in per_fold]
    cv_summary = {
        "folds": per_fold,
        "oof_auc": pooled["auc"],
        "fold_auc_mean": float(np.nanmean(aucs)),
        "fold_auc_sd": float(np.nanstd(aucs, ddof=1)) if k > 1 else float("nan"),
    }
    if _rank() == 0:
        table = predictions_table(
            frame.assign(split="test"),
            dataset.crops.case_ids,
            {name: oof},
            oof,
            thresholds,
            name,
            extra={"fold": folds},
        )
        write_predictions(table, arch_dir / "oof_predictions.csv")
        atomic_write_text(
            arch_dir / "cv_summary.json", json.dumps(cv_summary, indent=2, default=_json_default) + "\n"
        )
    return {"cv": cv_summary, "oof_predictions": str(arch_dir / "oof_predictions.csv")}


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return None  # probabilities are in the predictions files
    return str(value)

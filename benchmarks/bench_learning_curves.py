"""Benchmark: learning curves of EfficientNet-Lite0 fine-tuning on phantom ROIs, against two limits.

What limits the test AUC: the data (training ROIs), the budget (epochs, learning rate), the input
resolution (calcifications of 0.15-0.5 mm are 1-3 px once a 256-px crop at 0.07 mm is shrunk to
128 px) or what the crop can show (the distribution of a finding wider than the ROI)? Each
condition changes one factor of a base setting and fine-tunes Lite0 from its ImageNet weights;
the test AUC of every epoch is recorded, so the epoch axis of the curve comes with every run.

Limits drawn beside the curves, on the same test ROIs:
- Bayes-optimal AUC: the ROIs ranked by their true P(malignant | morphology, distribution);
- crop ceiling: ranked by what the crop shows (`microcalcai.phantom.ceiling`: the morphology, and
  the distribution only when the whole finding lies inside the crop).

Data: spot-field phantom ROIs (default morphology mix, 256-px ROIs at 0.07 mm), one set of
training patients (split train/val by patient) and a test set of other patients (another seed).
Smaller crops are the centres of the 256-px crops, cut exactly as `microcalcai.roi` would.

    nice -n 5 .venv/bin/python benchmarks/bench_learning_curves.py [--train-patients 300]
        [--test-patients 150] [--threads 2] [--conditions base,n100,...] [--out DIR]

Writes DIR/learning_curves.json and docs/images/learning-curves.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from microcalcai.models import card_for, create_model
from microcalcai.train.data import CropDataset, CropSet, case_ids, labels_of, load_crops
from microcalcai.train.loop import FitConfig, evaluate, fit
from microcalcai.train.recipes import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SPACING_MM = 0.07
ROI_PX = 256
ARCH = "tf_efficientnet_lite0"
# one factor at a time around BASE; names are what --conditions takes
BASE = {"n_train": None, "crop_px": 256, "input": 128, "epochs": 8, "lr": 1e-3, "recipe": "phantom"}
CONDITIONS = {
    "base": {},
    "lr1e-4": {"lr": 1e-4, "recipe": "kang2021"},
    "n25%": {"n_train": 0.25},
    "n50%": {"n_train": 0.5},
    "input96": {"input": 96},
    "input192": {"input": 192},
    "input256": {"input": 256},
    "crop128": {"crop_px": 128},
    "crop192": {"crop_px": 192},
}


def make_sets(out: Path, train_patients: int, test_patients: int, workers: int):
    from microcalcai.phantom import generate_dataset

    common = dict(spacing_mm=SPACING_MM, roi_size=ROI_PX, full_field=False, workers=workers, overwrite=False)
    sets = {}
    for name, patients, seed in (("train", train_patients, 7), ("test", test_patients, 1013)):
        folder = out / f"phantom-{name}-{patients}"
        if not (folder / "manifest.csv").is_file():
            generate_dataset(folder, patients=patients, seed=seed, **{**common, "overwrite": True})
        sets[name] = folder
    return sets


def read_set(folder: Path):
    import pandas as pd

    from microcalcai.data.manifest import read_manifest

    frame = read_manifest(folder / "manifest.csv")
    frame = frame[frame["finding"] == "calcification"].reset_index(drop=True)
    particles = pd.read_csv(folder / "calcifications.csv")
    grey = load_crops(frame, roi_size=ROI_PX, out_size=ROI_PX, progress=False)
    return frame, particles, CropSet(grey, labels_of(frame), case_ids(frame), frame)


def centre_crop(crops: CropSet, crop_px: int, input_px: int) -> CropSet:
    """The centre crop_px x crop_px of each crop (the window `roi.crop_roi` cuts for that size
    about the same centre), resized to the network input."""
    lo = ROI_PX // 2 - crop_px // 2
    grey = crops.grey[..., lo : lo + crop_px, lo : lo + crop_px]
    return CropSet(grey.contiguous(), crops.labels, crops.case_ids, crops.frame).resized(input_px)


def limits(frame, particles, crop_px: int) -> dict:
    from microcalcai.phantom import ceiling, malignancy

    rows = frame.assign(roi_size=crop_px).to_dict("records")
    return {
        "bayes_auc": malignancy.empirical_auc(
            labels_of(frame), frame["p_malignant"].astype(float).to_numpy()
        ),
        "crop_ceiling_auc": ceiling.drawn_crop_ceiling_auc(
            rows, particles.to_dict("records"), spacing_mm=SPACING_MM
        ),
        "expected_bayes_auc": malignancy.expected_bayes_auc(),
        "expected_crop_ceiling_auc": ceiling.expected_crop_ceiling_auc(crop_px * SPACING_MM),
    }


def run_condition(name: str, setting: dict, data: dict, out: Path, on_epoch=None) -> dict:
    from microcalcai.evaluate.operating_point import summary_metrics, youden_threshold

    recipe = load_recipe(
        setting["recipe"],
        [f"optimizer.lr={setting['lr']}", f"augment.shift_reference_px={setting['input']}"],
    )
    train, val, test = (
        centre_crop(data[k], setting["crop_px"], setting["input"]) for k in ("train", "val", "test")
    )
    if setting["n_train"] is not None:  # a share of the training patients, the same ones each time
        patients = sorted(set(train.frame["patient_id"]))
        keep = set(np.random.default_rng(0).permutation(patients)[: int(len(patients) * setting["n_train"])])
        train = train.subset(train.frame["patient_id"].isin(keep).to_numpy())
    card = card_for(ARCH, input_size=setting["input"])
    sets = {
        "train": CropDataset(train, card.mean, card.std, augment=recipe["augment"]),
        "val": CropDataset(val, card.mean, card.std),
        "test": CropDataset(test, card.mean, card.std),
    }
    recipe["early_stopping"]["patience"] = setting["epochs"]  # the whole curve, no early stop
    config = FitConfig.from_recipe(
        recipe, batch_size=32, device="cpu", epochs=setting["epochs"], progress=False
    )
    torch.manual_seed(0)
    model = create_model(ARCH, "imagenet")
    curve = []
    started = time.perf_counter()
    load_before = os.getloadavg()

    def test_each_epoch(row: dict) -> None:
        _, probability = evaluate(model, sets["test"], config)
        model.train()
        from sklearn.metrics import roc_auc_score

        curve.append(
            {
                "epoch": row["epoch"],
                "val_auc": row["val_auc"],
                "test_auc": float(roc_auc_score(test.labels, probability)),
                "train_loss": row["train_loss"],
                "seconds": row["seconds"],
            }
        )
        print(
            f"  {name} epoch {row['epoch']}: val {row['val_auc']:.3f} test {curve[-1]['test_auc']:.3f} "
            f"({row['seconds']:.0f} s, load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        if on_epoch is not None:  # a run stopped half-way still leaves its curve so far
            on_epoch(
                {
                    "name": name,
                    "setting": setting,
                    "n_train": len(train),
                    "curve": list(curve),
                    "complete": False,
                    "load_average": [load_before, os.getloadavg()],
                }
            )

    result = fit(
        model, sets["train"], sets["val"], config, out / name, resume=False, on_epoch_end=test_each_epoch
    )
    wall = time.perf_counter() - started
    _, probability = evaluate(model, sets["test"], config)
    threshold = youden_threshold(val.labels, result.val_probability).threshold
    return {
        "name": name,
        "setting": setting,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "best_epoch": result.best_epoch,
        "test": summary_metrics(test.labels, probability, threshold),
        "curve": curve,
        "complete": True,
        "wall_s": round(wall, 1),
        "images_per_s": result.images_per_s,
        "load_average": [load_before, os.getloadavg()],
    }


def figure(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {r["name"]: r for r in report["runs"]}
    lim = report["limits"]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4), dpi=100)

    def lines(ax, crop_px=256):
        ax.axhline(lim[str(crop_px)]["bayes_auc"], color="k", ls="--", lw=1, label="Bayes-optimal")
        ax.axhline(
            lim[str(crop_px)]["crop_ceiling_auc"], color="tab:red", ls=":", lw=1.2, label="crop ceiling"
        )

    ax = axes[0]
    for run in report["runs"]:
        setting = run["setting"]
        label = f"{run['name']} (crop {setting['crop_px']}, lr {setting['lr']:g}, {run['n_train']})"
        if not run.get("complete", True):
            label += " (stopped)"
        ax.plot(
            [c["epoch"] for c in run["curve"]], [c["test_auc"] for c in run["curve"]], "o-", ms=3, label=label
        )
    lines(ax)
    ax.set(xlabel="epoch", ylabel="test AUC", title="test AUC by epoch", ylim=(0.5, 1.0))
    ax.legend(fontsize=6, loc="lower right")

    def panel(ax, names, x_of, xlabel, title, crop_lines=False):
        present = [n for n in names if n in runs]
        if not present:
            ax.set_visible(False)
            return
        xs = [x_of(runs[n]) for n in present]
        ys = [max(c["test_auc"] for c in runs[n]["curve"][-3:]) for n in present]
        ax.plot(xs, ys, "o-", color="tab:blue", label="Lite0 (best of last 3 epochs)")
        if crop_lines:
            crops = sorted({runs[n]["setting"]["crop_px"] for n in present})
            ax.plot(
                crops,
                [lim[str(c)]["crop_ceiling_auc"] for c in crops],
                "s:",
                color="tab:red",
                label="crop ceiling",
            )
            ax.plot(crops, [lim[str(c)]["bayes_auc"] for c in crops], "k--", lw=1, label="Bayes-optimal")
        else:
            lines(ax)
        ax.set(xlabel=xlabel, ylabel="test AUC", title=title, ylim=(0.5, 1.0))
        ax.legend(fontsize=7)

    panel(axes[1], ["n25%", "n50%", "base"], lambda r: r["n_train"], "training ROIs", "data")
    panel(
        axes[2],
        ["input96", "base", "input192", "input256"],
        lambda r: r["setting"]["input"],
        "network input (px; crop 256 px)",
        "resolution",
    )
    panel(
        axes[3],
        ["crop128", "crop192", "base"],
        lambda r: r["setting"]["crop_px"],
        "crop side (px at 0.07 mm; input 128)",
        "crop size",
        crop_lines=True,
    )
    fig.suptitle(
        f"EfficientNet-Lite0 from ImageNet on phantom ROIs: {report['n_test']} test ROIs of "
        f"{report['test_patients']} other patients",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-patients", type=int, default=300)
    parser.add_argument("--test-patients", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=BASE["epochs"])
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench_learning_curves")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "learning-curves.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    from microcalcai.data.splits import patient_split

    sets = make_sets(args.out, args.train_patients, args.test_patients, workers=args.threads)
    frame, _, crops = read_set(sets["train"])
    split = patient_split(frame, val=0.2, test=0.0, seed=0, stratify=True)["split"].to_numpy()
    test_frame, test_particles, test_crops = read_set(sets["test"])
    data = {"train": crops.subset(split == "train"), "val": crops.subset(split == "val"), "test": test_crops}
    json_path = args.out / "learning_curves.json"
    report = json.loads(json_path.read_text()) if json_path.is_file() else {"runs": []}
    report.update(
        machine=f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, {args.threads} torch "
        f"threads, torch {torch.__version__}, CPU only",
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        n_train_all=len(data["train"]),
        n_val=len(data["val"]),
        n_test=len(test_crops),
        test_malignant=int(test_crops.labels.sum()),
        test_patients=args.test_patients,
        limits={str(c): limits(test_frame, test_particles, c) for c in (128, 192, 256)},
    )
    print("limits on the test ROIs:", json.dumps(report["limits"], indent=1), flush=True)
    done = {r["name"] for r in report["runs"] if r.get("complete", True)}

    def save(run: dict) -> None:
        report["runs"] = [r for r in report["runs"] if r["name"] != run["name"]] + [run]
        json_path.write_text(json.dumps(report, indent=1, default=float) + "\n")
        figure(report, args.figure)

    for name in args.conditions.split(","):
        if name in done:
            continue
        setting = {**BASE, "epochs": args.epochs, **CONDITIONS[name]}
        print(f"{name}: {setting}", flush=True)
        save(run_condition(name, setting, data, args.out, on_epoch=save))
    json_path.write_text(json.dumps(report, indent=1, default=float) + "\n")
    figure(report, args.figure)
    for run in report["runs"]:
        print(
            f"{run['name']:10s} n={run['n_train']:4d} "
            f"best test AUC {max(c['test_auc'] for c in run['curve']):.3f}"
            f" final {run['curve'][-1]['test_auc']:.3f} wall {run.get('wall_s', float('nan')):.0f} s"
        )


if __name__ == "__main__":
    main()

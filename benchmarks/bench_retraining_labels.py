"""Does the server's retraining learn from more labels? Test AUC against the number of labels.

The active-learning benchmark can only tell strategies apart where adding labels moves the model:
if a retraining ends at the same AUC from 40 or from 430 labels, which ROIs were labelled cannot
matter. This benchmark draws n random labels from the active-learning benchmark's pool (the same
phantom spot ROIs: pool, fixed validation and test sets of other patients), fine-tunes one member
from ImageNet with the server's own training function (`server.finetune.fine_tune`, the `phantom`
recipe, its `min_epoch_images` floor as given) for a given number of epochs, and scores the model
kept on the test ROIs.

    nice -n 5 .venv/bin/python benchmarks/bench_retraining_labels.py --sizes 40 100 250 430 \
        --epochs 3 10 --min-epoch-images 256 --seeds 0 1 --out /tmp/retraining-labels

Writes OUT/retraining_labels.json (rows as they finish; a rerun skips the rows it has) and the
figure (default docs/images/retraining-labels.png).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_active_learning import (  # noqa: E402
    ARCH,
    INPUT_SIZE,
    load_average,
    log,
    make_phantom,
    manifest_frame,
)


def fresh_member(folder: Path) -> Path:
    """A Lite0 from its ImageNet weights with a fresh head, as the active-learning benchmark's
    first member (seed 0)."""
    import torch

    from microcalcai.models.artifact import card_for, save_model
    from microcalcai.models.registry import create_model

    if not (folder / "model.json").is_file():
        torch.manual_seed(0)
        module = create_model(ARCH, weights="imagenet")
        card = card_for(
            ARCH, name="member", input_size=INPUT_SIZE, threshold=0.5, threshold_method="fixed 0.5"
        )
        save_model(module.eval(), card, folder, overwrite=True)
    return folder


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path, default=Path("docs/images/retraining-labels.png"))
    parser.add_argument("--pool-patients", type=int, default=295)
    parser.add_argument("--test-patients", type=int, default=112)
    parser.add_argument("--val-patients", type=int, default=80)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 100, 250, 430])
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    parser.add_argument(
        "--min-epoch-images", type=int, nargs="+", default=[256], help="the recipe's floor per epoch"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd
    import torch
    from sklearn.metrics import roc_auc_score

    from microcalcai.models.artifact import read_card
    from microcalcai.server.finetune import predict_frame, run_recipe, server_recipe
    from microcalcai.train.data import labels_of

    torch.set_num_threads(1)  # one thread wastes the least CPU (RESULTS.md, AUC per CPU-second)
    out = args.out.absolute()
    pool_dir, pool = make_phantom(out / "data" / "pool", args.pool_patients, seed=101)
    test_dir, test = make_phantom(out / "data" / "test", args.test_patients, seed=202)
    val_dir, val = make_phantom(out / "data" / "val", args.val_patients, seed=303)
    test_frame, val_frame = manifest_frame(test_dir, test, "test"), manifest_frame(val_dir, val, "val")
    member = fresh_member(out / "member")
    results_path = out / "retraining_labels.json"
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["labels"], r["epochs"], r["min_epoch_images"], r["seed"]) for r in rows}
    plan = [
        (n, e, f, s)
        for s in args.seeds
        for f in args.min_epoch_images
        for e in args.epochs
        for n in args.sizes
        if n <= len(pool)
    ]
    card = read_card(member)
    started = time.monotonic()
    for index, (n, epochs, floor, seed) in enumerate(plan):
        if (n, epochs, floor, seed) in done:
            continue
        order = np.random.default_rng(seed).permutation(len(pool))[:n]
        labelled = manifest_frame(pool_dir, [pool[i] for i in order], "train")
        frame = pd.concat([labelled, val_frame], ignore_index=True)
        clock, cpu = time.monotonic(), cpu_seconds()
        # what server.finetune.fine_tune runs, with the floor as given
        recipe = server_recipe(
            "phantom",
            arch=card.arch,
            weights=str(member),
            epochs=epochs,
            input_size=card.input_size,
            seed=seed,
        )
        recipe["min_epoch_images"] = floor
        model = run_recipe(recipe, frame, out / "runs" / f"n{n}-e{epochs}-f{floor}-s{seed}")
        probability = predict_frame(model, test_frame)
        rows.append(
            {
                "labels": n,
                "epochs": epochs,
                "min_epoch_images": floor,
                "seed": seed,
                "test_auc": round(float(roc_auc_score(labels_of(test_frame), probability)), 4),
                "cpu_s": round(cpu_seconds() - cpu, 1),
                "wall_s": round(time.monotonic() - clock, 1),
                "load_average": load_average(),
            }
        )
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
        tmp.replace(results_path)
        rate = (time.monotonic() - started) / (index + 1)
        log(f"{rows[-1]}; ETA {rate * (len(plan) - index - 1) / 60:.0f} min")
    draw(rows, len(test), args.figure)
    return 0


def draw(rows: list[dict], n_test: int, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for epochs, floor in sorted({(r["epochs"], r["min_epoch_images"]) for r in rows}):
        same = [r for r in rows if r["epochs"] == epochs and r["min_epoch_images"] == floor]
        sizes = sorted({r["labels"] for r in same})
        means = [np.mean([r["test_auc"] for r in same if r["labels"] == n]) for n in sizes]
        label = f"{epochs} epochs, at least {floor} images each (mean over seeds)"
        (line,) = ax.plot(sizes, means, marker="o", label=label)
        ax.scatter(
            [r["labels"] for r in same],
            [r["test_auc"] for r in same],
            s=10,
            alpha=0.4,
            color=line.get_color(),
        )
    ax.set_xlabel("random labels the retraining sees")
    ax.set_ylabel(f"test AUC ({n_test} ROIs of other patients)")
    ax.set_title("Lite0 from ImageNet, retrained by the server's training function", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

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

With `--warm-from N`, each size is instead a retraining as the server's `/train` does it: a member
trained from ImageNet on the first N of the same random labels ("served"), then retrained on all
n labels from each `--start` (`warm:LR_SCALE` the served weights at that share of the recipe's
learning rate; `sp:LR_SCALE:SHRINK:PERTURB:TOWARD` shrink-and-perturbed served weights, see
train.warm_start; `imagenet` afresh from ImageNet, for comparison):

    nice -n 5 .venv/bin/python benchmarks/bench_retraining_labels.py --pool-patients 700 \
        --test-patients 300 --warm-from 250 --sizes 450 --epochs 10 --seeds 0 1 \
        --start warm:0.1 warm:1 sp:1:0.5:0.1:random sp:1:0.5:0.5:imagenet imagenet --out /tmp/warm

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
    parser.add_argument(
        "--figure",
        type=Path,
        help="default docs/images/retraining-labels.png, with --warm-from docs/images/warm-start.png",
    )
    parser.add_argument("--pool-patients", type=int, default=295)
    parser.add_argument("--test-patients", type=int, default=112)
    parser.add_argument("--val-patients", type=int, default=80)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 100, 250, 430])
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    parser.add_argument(
        "--min-epoch-images", type=int, nargs="+", default=[256], help="the recipe's floor per epoch"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--warm-from", type=int, help="labels of the served member retrained from")
    parser.add_argument("--start", nargs="+", default=["imagenet"], help="with --warm-from: starts")
    args = parser.parse_args(argv)
    if args.warm_from is None and args.start != ["imagenet"]:
        parser.error("--start needs --warm-from")
    if args.warm_from is not None and min(args.sizes) <= args.warm_from:
        parser.error(f"with --warm-from {args.warm_from}, every --sizes must be larger")
    try:
        starts = {start: parse_start(start) for start in args.start}
    except ValueError as exc:
        parser.error(str(exc))
    if args.figure is None:
        name = "retraining-labels.png" if args.warm_from is None else "warm-start.png"
        args.figure = Path("docs/images") / name
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd
    import torch
    from sklearn.metrics import roc_auc_score

    from microcalcai.models.artifact import read_card
    from microcalcai.server.finetune import predict_frame, retraining_start, run_recipe, server_recipe
    from microcalcai.train.data import labels_of
    from microcalcai.train.recipes import load_recipe

    torch.set_num_threads(1)  # one thread wastes the least CPU (RESULTS.md, AUC per CPU-second)
    out = args.out.absolute()
    pool_dir, pool = make_phantom(out / "data" / "pool", args.pool_patients, seed=101)
    test_dir, test = make_phantom(out / "data" / "test", args.test_patients, seed=202)
    val_dir, val = make_phantom(out / "data" / "val", args.val_patients, seed=303)
    test_frame, val_frame = manifest_frame(test_dir, test, "test"), manifest_frame(val_dir, val, "val")
    member = fresh_member(out / "member")
    results_path = out / "retraining_labels.json"
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []

    def key(row: dict) -> tuple:
        return tuple(
            row.get(k) for k in ("labels", "epochs", "min_epoch_images", "seed", "start", "warm_from")
        )

    done = {key({"start": "imagenet", **r}) for r in rows}
    plan = [
        (n, e, f, s, start)
        for s in args.seeds
        for f in args.min_epoch_images
        for e in args.epochs
        for n in args.sizes
        for start in args.start
        if n <= len(pool)
    ]
    card = read_card(member)
    frozen_blocks = int(load_recipe("phantom").get("freeze_blocks") or 0)
    started = time.monotonic()

    def labelled_frame(n: int, seed: int):
        order = np.random.default_rng(seed).permutation(len(pool))[:n]
        return pd.concat(
            [manifest_frame(pool_dir, [pool[i] for i in order], "train"), val_frame], ignore_index=True
        )

    def train(frame, weights, epochs, floor, seed, run_dir, lr_scale=1.0):
        # what server.finetune.fine_tune runs, with the floor as given
        recipe = server_recipe(
            "phantom",
            arch=card.arch,
            weights=str(weights),
            epochs=epochs,
            input_size=card.input_size,
            seed=seed,
        )
        recipe["min_epoch_images"] = floor
        recipe["optimizer"] = {**recipe["optimizer"], "lr": float(recipe["optimizer"]["lr"]) * lr_scale}
        if (run_dir / card.arch / "model" / "model.json").is_file():
            return run_dir / card.arch / "model"
        return run_recipe(recipe, frame, run_dir)

    for index, (n, epochs, floor, seed, start) in enumerate(plan):
        what = dict(labels=n, epochs=epochs, min_epoch_images=floor, seed=seed, start=start)
        if key({**what, "warm_from": args.warm_from}) in done:
            continue
        frame = labelled_frame(n, seed)
        clock, cpu = time.monotonic(), cpu_seconds()
        weights, lr_scale, run_dir = member, 1.0, out / "runs" / f"n{n}-e{epochs}-f{floor}-s{seed}"
        if args.warm_from is not None:  # also for an `imagenet` row: its served AUC is reported
            served = train(
                labelled_frame(args.warm_from, seed),
                member,
                epochs,
                floor,
                seed,
                out / "runs" / f"n{args.warm_from}-e{epochs}-f{floor}-s{seed}",
            )
            clock, cpu = time.monotonic(), cpu_seconds()  # the served member is not this row's cost
        if args.warm_from is not None and starts[start] is not None:
            lr_scale, shrink, perturb, toward = starts[start]
            run_dir = (
                out
                / "runs"
                / f"from{args.warm_from}-{start.replace(':', '_')}-n{n}-e{epochs}-f{floor}-s{seed}"
            )
            # the server's own start (train.warm_start; the recipe's frozen stages keep served weights)
            weights, _ = retraining_start(
                served,
                run_dir,
                shrink=shrink,
                perturb=perturb,
                toward=toward,
                seed=seed,
                frozen_blocks=frozen_blocks,
            )
        model = train(frame, weights, epochs, floor, seed, run_dir, lr_scale)
        probability = predict_frame(model, test_frame)
        rows.append(
            {
                **what,
                "warm_from": args.warm_from,
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
    if args.warm_from is None:
        draw([r for r in rows if r.get("warm_from") is None], len(test), args.figure)
        return 0
    served_auc = {}  # the served member's own test AUC, which each retraining is measured against
    for row in rows:
        if row.get("warm_from") is None or "served_test_auc" in row:
            continue
        key = (row["warm_from"], row["epochs"], row["min_epoch_images"], row["seed"])
        if key not in served_auc:
            served = out / "runs" / "n{}-e{}-f{}-s{}".format(*key) / card.arch / "model"
            served_auc[key] = round(
                float(roc_auc_score(labels_of(test_frame), predict_frame(served, test_frame))), 4
            )
        row["served_test_auc"] = served_auc[key]
    tmp = results_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(results_path)
    shown = [
        r
        for r in rows
        if r.get("warm_from") == args.warm_from
        and r["start"] in args.start
        and r["labels"] == max(args.sizes)
        and r["epochs"] == args.epochs[0]
        and r["min_epoch_images"] == args.min_epoch_images[0]
    ]
    draw_warm(shown, len(test), args.figure)
    return 0


def parse_start(text: str) -> tuple | None:
    """`imagenet` -> None (afresh); `warm:LR` and `sp:LR:SHRINK:PERTURB:TOWARD` -> (lr_scale,
    shrink, perturb, toward), checked as the server checks them."""
    from microcalcai.errors import InputError
    from microcalcai.train.warm_start import check_shrink_perturb

    kind, *values = text.split(":")
    try:
        if kind == "imagenet" and not values:
            return None
        if kind == "warm" and len(values) == 1:
            return float(values[0]), 1.0, 0.0, "imagenet"
        if kind == "sp" and len(values) == 4:
            start = float(values[0]), float(values[1]), float(values[2]), values[3]
            check_shrink_perturb(*start[1:])
            return start
    except (ValueError, InputError) as exc:
        raise ValueError(f"--start {text}: {exc}") from None
    raise ValueError(f"--start {text}: expected imagenet, warm:LR_SCALE or sp:LR_SCALE:SHRINK:PERTURB:TOWARD")


def draw_warm(rows: list[dict], n_test: int, figure: Path) -> None:
    """Each seed's served member and its retrainings from each start, on the same test ROIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = list(dict.fromkeys(r["start"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    for seed in sorted({r["seed"] for r in rows}):
        mine = {r["start"]: r for r in rows if r["seed"] == seed}
        served = next(iter(mine.values()))["served_test_auc"]
        (line,) = ax.plot(
            [-1] + [i for i, s in enumerate(starts) if s in mine],
            [served] + [mine[s]["test_auc"] for s in starts if s in mine],
            marker="o",
            linestyle=":",
            label=f"seed {seed}",
        )
    means = [np.mean([r["test_auc"] for r in rows if r["start"] == s]) for s in starts]
    ax.scatter(range(len(starts)), means, marker="_", s=600, color="black", label="mean over seeds")
    first = rows[0]
    ax.set_xticks(
        range(-1, len(starts)), [f"served\n({first['warm_from']} labels)"] + starts, fontsize=7, rotation=12
    )
    ax.set_ylabel(f"test AUC ({n_test} ROIs of other patients)")
    ax.set_title(
        f"Lite0 retrained on {first['labels']} labels from each start, {first['epochs']} epochs", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)


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

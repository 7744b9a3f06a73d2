"""Breast arterial calcification on four-view phantom exams: the networks' table and the time per exam.

Reads a run of Training/scripts/mobini2024.sh (RUN_DIR/<arch>/predictions_test.csv, one whole-image
score per test view) and its manifest, and reports per network, per image and per exam (views
aggregated by their maximum): ROC AUC, PR-AUC, sensitivity at 90% specificity, F1 and MCC at the
validation threshold, with patient-clustered bootstrap CIs (microcalcai.evaluate.exam), beside the
phantom's Bayes-optimal AUC. The time per exam is measured here: each network's model folder scores
`--timing-exams` test exams whole (read the four DICOM views, tile, predict), in CPU-seconds of this
process (getrusage) and wall seconds, with the load average before and after (the machine may be
shared). Writes (the first) RUN_DIR/bac_benchmark.json and the figure docs/images/bac-exams.png
(exam ROC per network, exam-score distributions, the tile scores and the Grad-CAM++ map over a
BAC-positive view). `--run` repeats: runs of several tasks (tiles, whole_image) on the same exams
go into one table.

Run: .venv/bin/python benchmarks/bench_bac.py --run OUT/run --manifest OUT/exams/manifest.csv
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "images" / "bac-exams.png"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ci(metric: dict) -> str:
    low, high = metric["ci"]
    return f"{metric['estimate']:.3f} ({low:.2f}-{high:.2f})"


def evaluate_arch(arch_dir: Path, manifest: pd.DataFrame) -> dict:
    from microcalcai.evaluate.exam import evaluate_exams
    from microcalcai.models.artifact import read_card

    views = pd.read_csv(arch_dir / "predictions_test.csv")
    views = views.drop(columns=["patient_id"]).merge(
        manifest[["image_id", "exam_id", "patient_id", "bac"]], on="image_id", how="left"
    )
    threshold = float(views["threshold"].iloc[0])  # chosen on the validation images
    result = evaluate_exams(views, score="probability", threshold=threshold, exam_threshold=threshold)
    card = read_card(arch_dir / "model")
    result["task"] = card.crop.get("task", "roi")
    result["input_size"] = card.input_size
    result["tiles"] = card.crop.get("tiles")
    result["best_epoch"] = card.val_metrics.get("best_epoch")
    result["val_auc"] = card.val_metrics.get("auc")
    result["views"] = views
    result["model_dir"] = str(arch_dir / "model")
    return result


def time_exams(model_dir: Path, manifest: pd.DataFrame, exam_ids: list[str]) -> dict:
    """Score whole exams as the server would: read each view, tile it (or pad it), predict."""
    import torch

    from microcalcai.io import read_image
    from microcalcai.models.predictor import load_predictor
    from microcalcai.models.tiles import pixel_spacing, score_whole_image

    predictor = load_predictor(model_dir, device="cpu", batch_size=128)
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), cpu_seconds()
    tiles = 0
    for exam in exam_ids:
        for row in manifest[manifest["exam_id"] == exam].itertuples():
            image = read_image(row.image_path)
            scored = score_whole_image(predictor, image.pixels, pixel_spacing(image, float(row.spacing_mm)))
            tiles += len(scored.boxes)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {
        "exams": len(exam_ids),
        "cpu_s_per_exam": cpu / len(exam_ids),
        "wall_s_per_exam": wall / len(exam_ids),
        "tiles_per_exam": tiles / len(exam_ids),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }


def figure(results: dict, manifest: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from microcalcai.evaluate.exam import exam_scores
    from microcalcai.io import read_image
    from microcalcai.models.predictor import load_predictor
    from microcalcai.models.tiles import pixel_spacing, score_whole_image, whole_image_saliency

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.8), width_ratios=[1, 1, 0.75, 0.75])
    for arch, result in results.items():
        exams = exam_scores(result["views"], score="probability")
        fpr, tpr, _ = roc_curve(exams["label"], exams["score"])
        auc = result["exam"]["auc"]["estimate"]
        axes[0].plot(fpr, tpr, label=f"{arch}, {result['input_size']} px: exam AUC {auc:.3f}")
    axes[0].plot([0, 1], [0, 1], ":", color="grey", label="chance; Bayes-optimal AUC = 1")
    axes[0].set(xlabel="1 - specificity", ylabel="sensitivity", title="test exams: ROC")
    axes[0].legend(fontsize=7, loc="lower right")
    for k, result in enumerate(results.values()):
        exams = exam_scores(result["views"], score="probability")
        for label, colour in ((0, "tab:blue"), (1, "tab:red")):
            values = exams.loc[exams["label"] == label, "score"].to_numpy()
            jitter = np.random.default_rng(k).uniform(-0.15, 0.15, len(values))
            axes[1].scatter(
                k + label * 0.4 + jitter * 0.5,
                np.clip(values, 1e-5, 1 - 1e-7),
                s=10,
                color=colour,
                alpha=0.7,
                label=("BAC exam" if label else "no BAC") if k == 0 else None,
            )
        axes[1].hlines(
            float(result["views"]["threshold"].iloc[0]), k - 0.2, k + 0.6, color="k", lw=0.6, ls="--"
        )
    axes[1].set_xticks(
        [k + 0.2 for k in range(len(results))], [k.replace(" ", "\n") for k in results], fontsize=7
    )
    axes[1].set_yscale("logit")  # the scores of a max over tiles crowd near 1
    axes[1].set(ylabel="exam score (max of four views, logit scale)", title="exam scores (dashed: threshold)")
    axes[1].legend(fontsize=7)
    # the tile scores of the first tile model over a typical BAC-positive test view
    tiled = [r for r in results.values() if r["task"] == "tiles"]
    result = tiled[0] if tiled else next(iter(results.values()))
    views = result["views"].merge(
        manifest[["image_id", "image_path", "mask_path", "spacing_mm"]], on="image_id"
    )
    positive = views[views["bac"] == 1]
    if len(positive):
        row = positive.sort_values("probability").iloc[len(positive) // 2]  # a typical, not the best
        image = read_image(row["image_path"])
        predictor = load_predictor(result["model_dir"], device="cpu")
        scored = score_whole_image(predictor, image.pixels, pixel_spacing(image, float(row["spacing_mm"])))
        from PIL import Image

        mask = np.asarray(Image.open(row["mask_path"])) > 0
        # the breast, not the air beside it
        cols = np.flatnonzero((image.pixels > 0.05).mean(axis=0) > 0.02)
        view = np.s_[:, cols.min() : cols.max() + 1]
        heat = np.ma.masked_less(scored.map(image.pixels.shape), 0.5)
        saliency = whole_image_saliency(predictor, image.pixels, scored=scored)
        for ax, overlay, cmap, what in (
            (axes[2], heat, "autumn", "tiles >= 0.5"),
            (axes[3], np.ma.masked_less(saliency, 0.2), "jet", "Grad-CAM++ of the 8 best tiles"),
        ):
            ax.imshow(image.pixels[view], cmap="gray")
            ax.imshow(overlay[view], cmap=cmap, alpha=0.4, vmin=0.2 if cmap == "jet" else 0.5, vmax=1)
            ax.contour(mask[view], levels=[0.5], colors="cyan", linewidths=0.4)
            ax.set_title(
                f"{row['image_id']} (score {scored.score:.2f}):\n{what}; vessel mask cyan", fontsize=8
            )
            ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run",
        required=True,
        type=Path,
        action="append",
        help="RUN_DIR of mobini2024.sh (OUT/run); repeat to put runs of several tasks in one table",
    )
    parser.add_argument("--manifest", required=True, type=Path, help="the exams' manifest.csv")
    parser.add_argument(
        "--timing-exams", type=int, default=10, help="test exams scored for the time per exam"
    )
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args()

    from microcalcai.data.manifest import read_manifest

    manifest = read_manifest(args.manifest)
    manifest["bac"] = manifest["bac"].astype(int)
    settings = args.manifest.parent / "phantom.json"
    bayes = json.loads(settings.read_text())["bayes_auc"] if settings.is_file() else None
    results, timing = {}, {}
    for run in args.run:
        for predictions in sorted(run.glob("*/predictions_test.csv")):
            result = evaluate_arch(predictions.parent, manifest)
            key = f"{predictions.parent.name} {result['task']}"
            results[key] = result
            test_exams = sorted(result["views"]["exam_id"].unique())[: args.timing_exams]
            timing[key] = time_exams(predictions.parent / "model", manifest, test_exams)
    if not results:
        raise SystemExit(
            f"{args.run} holds no <arch>/predictions_test.csv; run Training/scripts/mobini2024.sh"
        )
    figure(results, manifest, args.figure)

    print(
        f"bench_bac {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; Bayes-optimal AUC {bayes and bayes.get('exam')} (image and exam)"
    )
    print(
        "\n| network (task, input) | level | n (BAC) | AUC | PR-AUC | sens @ spec 0.90 | F1 | MCC |"
        " CPU-s / exam | wall s / exam |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arch, result in results.items():
        t = timing[arch]
        for level in ("image", "exam"):
            m = result[level]
            cells = [
                f"{arch}, {result['input_size']} px",
                level,
                f"{m['n']} ({m['n_positive']})",
                *(_ci(m[key]) for key in ("auc", "pr_auc", "sensitivity_at_specificity", "f1", "mcc")),
                f"{t['cpu_s_per_exam']:.2f}",
                f"{t['wall_s_per_exam']:.2f}",
            ]
            print("| " + " | ".join(cells) + " |")
    print(f"\ntiming: {json.dumps(timing)}")
    report = {
        "bayes_auc": bayes,
        "networks": {a: {k: v for k, v in r.items() if k != "views"} for a, r in results.items()},
        "runs": [str(run) for run in args.run],
        "timing": timing,
    }
    (args.run[0] / "bac_benchmark.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()

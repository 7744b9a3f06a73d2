"""Saliency faithfulness on the phantom: a small phantom (microcalcai.phantom, spot fields, 96 px ROIs,
negative ROIs), two networks trained here (through microcalcai.train.loop) to tell calcification ROIs
from normal ones (a tiny CNN from scratch and tf_efficientnet_lite0 fine-tuned from its offline
ImageNet weights), then per network and method on held-out calcification ROIs: pointing game
(15 px), share of saliency energy inside the calcification mask (beside the mask's share of the
area), the model randomisation check (Spearman and SSIM, trained vs re-initialised weights) and
deletion/insertion AUCs (microcalcai.explain.faithfulness). Figures go to
docs/images/explain-phantom-*.png.

    .venv/bin/python benchmarks/bench_explain_faithfulness.py
    .venv/bin/python benchmarks/bench_explain.py --part faithfulness   (the same, through the driver)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain_common import (  # noqa: E402
    GRADIENT,
    ROOT,
    auc,
    log,
    part_parser,
    phantom_rois,
    run_part,
    split_patients,
    train,
)

sys.path.insert(0, str(ROOT / "Testing" / "explain"))
from blobs import TinyCNN  # noqa: E402  (the tests' spot detector, wider here)


def add_arguments(parser) -> None:
    group = parser.add_argument_group("faithfulness")
    group.add_argument("--methods", nargs="*", default=list(GRADIENT) + ["eigencam", "scorecam"])
    group.add_argument("--epochs", type=int, default=20)
    group.add_argument("--curves", type=int, default=8, help="ROIs per method for deletion/insertion curves")


def bench_faithfulness(models: dict, crops, masks, labels, methods, curves_n: int) -> list[dict]:
    from microcalcai.explain.faithfulness import (
        energy_in_mask,
        model_randomisation_check,
        perturbation_curves,
        pointing_game,
    )
    from microcalcai.explain.saliency import predict_probability

    positive = labels == 1
    rows = []
    for name, (model, layer) in models.items():
        score = auc(labels, predict_probability(model, crops))
        for method in methods:
            start = time.perf_counter()
            check = model_randomisation_check(model, crops[positive], method=method, layer=layer)
            maps = check.trained_maps
            pairs = list(zip(maps, masks[positive], strict=True))
            curves = [
                perturbation_curves(model, c, s)
                for c, s in zip(crops[positive][:curves_n], maps[:curves_n], strict=True)
            ]
            rows.append(
                {
                    "model": name,
                    "test_auc": score,
                    "method": method,
                    "n": int(positive.sum()),
                    "pointing": float(np.mean([pointing_game(s, m) for s, m in pairs])),
                    "energy": float(np.mean([energy_in_mask(s, m) for s, m in pairs])),
                    "area": float(masks[positive].mean()),
                    "random_pointing": float(
                        np.mean(
                            [
                                pointing_game(s, m)
                                for s, m in zip(check.random_maps, masks[positive], strict=True)
                            ]
                        )
                    ),
                    "random_energy": float(
                        np.mean(
                            [
                                energy_in_mask(s, m)
                                for s, m in zip(check.random_maps, masks[positive], strict=True)
                            ]
                        )
                    ),
                    "spearman": check.mean_spearman,
                    "ssim": check.mean_ssim,
                    "deletion": float(np.mean([c.deletion_auc for c in curves])),
                    "insertion": float(np.mean([c.insertion_auc for c in curves])),
                }
            )
            log(
                f"{name} {method}: pointing {rows[-1]['pointing']:.2f}, energy {rows[-1]['energy']:.3f} "
                f"(area {rows[-1]['area']:.3f}), randomised {rows[-1]['random_energy']:.3f}, "
                f"Spearman {rows[-1]['spearman']:.2f} ({time.perf_counter() - start:.0f} s)"
            )
        _figure(name, model, layer, crops[positive][:6], masks[positive][:6], methods)
    return rows


def _figure(name, model, layer, crops, masks, methods):
    """ROIs (rows) x methods (columns), the calcification mask outlined in white."""
    from matplotlib.figure import Figure

    from microcalcai.explain import explain_crops
    from microcalcai.explain.outputs import add_colorbar, save_figure

    maps = {m: explain_crops(model, crops, method=m, layer=layer).maps for m in methods}
    fig = Figure(figsize=(1.6 * (len(methods) + 1) + 0.8, 1.6 * len(crops) + 0.5))
    for row, crop in enumerate(crops):
        for col, method in enumerate(("ROI", *methods)):
            ax = fig.add_subplot(len(crops), len(methods) + 1, row * (len(methods) + 1) + col + 1)
            ax.imshow(crop, cmap="gray", vmin=0, vmax=1)
            if method != "ROI":
                ax.imshow(maps[method][row], cmap="jet", vmin=0, vmax=1, alpha=0.45)
            ax.contour(masks[row], levels=[0.5], colors="white", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(method, fontsize=8)
    add_colorbar(fig, fig.axes)
    fig.suptitle(f"{name}: saliency for 'calcification' on held-out phantom ROIs (mask outlined)", fontsize=9)
    path = save_figure(fig, ROOT / "docs" / "images" / f"explain-phantom-{name}.png", 100)
    log(f"figure: {path.relative_to(ROOT)}")


def faithfulness_table(rows) -> str:
    lines = [
        "| model (test AUC) | method | pointing game | energy in mask (mask area) | randomised: energy | "
        "Spearman trained vs randomised | SSIM | deletion AUC | insertion AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} ({r['test_auc']:.2f}) | {r['method']} | {r['pointing']:.2f} "
            f"(rand. {r['random_pointing']:.2f}) | {r['energy']:.3f} ({r['area']:.3f}) | "
            f"{r['random_energy']:.3f} | {r['spearman']:.2f} | {r['ssim']:.2f} | {r['deletion']:.2f} | "
            f"{r['insertion']:.2f} |"
        )
    return "\n".join(lines)


def run(args) -> str:
    from microcalcai.models import create_model
    from microcalcai.models.preprocess import GreyInput

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        crops, masks, labels, ids = phantom_rois(Path(tmp) / "phantom", args.patients, args.roi, seed=0)
    seconds = time.perf_counter() - started
    log(f"phantom: {len(crops)} ROIs ({labels.sum()} with calcifications) in {seconds:.0f} s")
    test = split_patients(ids)
    models = {}
    torch.manual_seed(0)
    models["tiny-cnn"] = (train(TinyCNN(width=16), crops[~test], labels[~test], args.epochs, 3e-3), None)
    lite0 = create_model("tf_efficientnet_lite0", "imagenet")
    net = GreyInput(lite0, lite0.pretrained_cfg["mean"], lite0.pretrained_cfg["std"])
    models["lite0-imagenet"] = (
        train(net, crops[~test], labels[~test], max(2, args.epochs // 4), 3e-4),
        "module.bn2",
    )
    rows = bench_faithfulness(models, crops[test], masks[test], labels[test], args.methods, args.curves)
    header = (
        f"{len(crops)} phantom ROIs of {args.roi} px ({labels.sum()} with calcifications), "
        f"{len(np.unique(ids[test]))} of {len(np.unique(ids))} patients held out ({test.sum()} ROIs, "
        f"{int(labels[test].sum())} with calcifications scored)."
    )
    return header + "\n\n" + faithfulness_table(rows)


def build_parser() -> argparse.ArgumentParser:
    return part_parser(__doc__, add_arguments)


def main(argv=None) -> int:
    return run_part(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Saliency benchmark: speed per architecture, and faithfulness on the phantom.

Speed (``--part speed``): per registry architecture at 512 x 512 on the CPU, the time for one map
as a ratio to one plain forward + backward pass of the same network (same input, same run,
interleaved repeats, medians), for each gradient method and Eigen-CAM; the ratio for
pytorch-grad-cam used as-is (no freezing, full backward) beside it; and batch throughput (maps/s).

Faithfulness (``--part faithfulness``): a small phantom (microcalcai.phantom, spot fields, 96 px
ROIs, negative ROIs), two networks trained here to tell calcification ROIs from normal ones (a
tiny CNN from scratch and tf_efficientnet_lite0 fine-tuned from its offline ImageNet weights), then
per network and method on held-out calcification ROIs: pointing game (15 px), share of saliency
energy inside the calcification mask (beside the mask's share of the area), the model
randomisation check (Spearman and SSIM, trained vs re-initialised weights) and deletion/insertion
AUCs. Figures go to docs/images/explain-*.png.

    .venv/bin/python benchmarks/bench_explain.py              # both parts (about 15 min on 2 busy cores)
    .venv/bin/python benchmarks/bench_explain.py --part speed --archs resnet50 tf_efficientnet_lite0
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing" / "explain"))
from blobs import TinyCNN  # noqa: E402  (the tests' spot detector, wider here)

GRADIENT = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- speed


def _plain_step(model, x):
    """One forward and backward pass of the kind training does: gradients for every parameter."""
    model.zero_grad(set_to_none=True)
    model(x)[:, 1].sum().backward()


def _library_as_is(model, layer, x):
    """pytorch-grad-cam's Grad-CAM with no help: full graph, gradients for every parameter."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=model, target_layers=[layer])
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(1)] * len(x))
    finally:
        cam.activations_and_grads.release()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_speed(archs, size: int, repeats: int, batch: int, methods) -> list[dict]:
    from microcalcai.explain import explain_crops
    from microcalcai.explain.target_layers import resolve_target_layer
    from microcalcai.models import create_model
    from microcalcai.models.preprocess import normalise, to_grey_tensor

    rng = np.random.default_rng(0)
    crop = rng.random((size, size), dtype=np.float32)
    crops = rng.random((batch, size, size), dtype=np.float32)
    rows = []
    for index, arch in enumerate(archs):
        torch.manual_seed(0)
        model = create_model(arch, "none").eval()
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
        x = normalise(to_grey_tensor(crop), mean, std)  # what explain_crops feeds a bare network
        _, layer = resolve_target_layer(model, arch)
        jobs = {"plain": partial(_plain_step, model, x), "as-is": partial(_library_as_is, model, layer, x)}
        for method in methods:
            jobs[method] = partial(explain_crops, model, crop, method=method)
        for fn in jobs.values():  # warm-up: allocator, lazy imports
            fn()
        times = {name: [] for name in jobs}
        for _ in range(repeats):  # interleaved, so the machine's load drifts over all of them alike
            for name, fn in jobs.items():
                times[name].append(_timed(fn))
        median = {name: statistics.median(values) for name, values in times.items()}
        batch_time = _timed(partial(explain_crops, model, crops, method="gradcam", batch_size=batch))
        row = {
            "arch": arch,
            "layer": resolve_target_layer(model, arch)[0],
            "plain_s": median["plain"],
            "as_is_ratio": median["as-is"] / median["plain"],
            "maps_per_s": batch / batch_time,
        }
        row.update({f"{m}_ratio": median[m] / median["plain"] for m in methods})
        rows.append(row)
        log(
            f"[{index + 1}/{len(archs)}] {arch}: plain {median['plain']:.2f} s, "
            + ", ".join(f"{m} x{row[f'{m}_ratio']:.2f}" for m in methods)
            + f", as-is x{row['as_is_ratio']:.2f}, {row['maps_per_s']:.2f} maps/s (batch {batch})"
        )
    return rows


def speed_table(rows, methods) -> str:
    head = (
        "| architecture | target layer | fwd+bwd (s) | "
        + " | ".join(methods)
        + " | Grad-CAM, library as-is | maps/s (batch) |"
    )
    lines = [head, "|" + "---|" * (5 + len(methods))]
    for r in rows:
        lines.append(
            f"| {r['arch']} | `{r['layer']}` | {r['plain_s']:.2f} | "
            + " | ".join(f"{r[f'{m}_ratio']:.2f}" for m in methods)
            + f" | {r['as_is_ratio']:.2f} | {r['maps_per_s']:.2f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------- faithfulness


def phantom_rois(folder: Path, patients: int, roi: int, seed: int):
    """(crops, masks, labels, ids): calcification ROIs (label 1) and normal ROIs (0) inside the field."""
    from PIL import Image

    from microcalcai.data.manifest import read_manifest
    from microcalcai.io import read_image
    from microcalcai.io.image import Mammogram
    from microcalcai.phantom.dataset import generate_dataset
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


class _Net(torch.nn.Module):
    """A registry network with the project's preprocessing in front, so it trains on grey crops."""

    def __init__(self, module, mean, std):
        super().__init__()
        self.module = module
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, grey):
        return self.module((grey.expand(-1, 3, -1, -1) - self.mean) / self.std)


def train(model, crops, labels, epochs: int, lr: float, seed: int = 0):
    from tqdm import tqdm

    torch.manual_seed(seed)
    x, y = torch.from_numpy(crops)[:, None], torch.from_numpy(labels).long()
    weights = torch.tensor(
        [len(labels) / (2.0 * max(1, (labels == c).sum())) for c in (0, 1)], dtype=torch.float32
    )
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(epochs), desc=f"train {type(model).__name__}", unit="epoch", file=sys.stderr):
        for batch in torch.randperm(len(x), generator=generator).split(16):
            flips = torch.rand(2) < 0.5  # flips keep the masks' meaning and double the data
            inputs = x[batch].flip(-1) if flips[0] else x[batch]
            inputs = inputs.flip(-2) if flips[1] else inputs
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs), y[batch], weight=weights).backward()
            optimiser.step()
    return model.eval()


def _auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


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
        auc = _auc(labels, predict_probability(model, crops))
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
                    "test_auc": auc,
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


def run_faithfulness(args) -> str:
    from microcalcai.models import create_model

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        crops, masks, labels, ids = phantom_rois(Path(tmp) / "phantom", args.patients, args.roi, seed=0)
    seconds = time.perf_counter() - start
    log(f"phantom: {len(crops)} ROIs ({labels.sum()} with calcifications) in {seconds:.0f} s")
    patients = np.unique(ids)
    test_patients = set(np.random.default_rng(0).permutation(patients)[: max(2, len(patients) // 4)])
    test = np.isin(ids, list(test_patients))
    models = {}
    torch.manual_seed(0)
    models["tiny-cnn"] = (train(TinyCNN(width=16), crops[~test], labels[~test], args.epochs, 3e-3), None)
    lite0 = create_model("tf_efficientnet_lite0", "imagenet")
    cfg = lite0.pretrained_cfg
    net = _Net(lite0, cfg["mean"], cfg["std"])
    models["lite0-imagenet"] = (
        train(net, crops[~test], labels[~test], max(2, args.epochs // 4), 3e-4),
        "module.bn2",
    )
    rows = bench_faithfulness(models, crops[test], masks[test], labels[test], args.methods, args.curves)
    header = (
        f"{len(crops)} phantom ROIs of {args.roi} px ({labels.sum()} with calcifications), "
        f"{len(test_patients)} of {len(patients)} patients held out ({test.sum()} ROIs, "
        f"{int(labels[test].sum())} with calcifications scored)."
    )
    return header + "\n\n" + faithfulness_table(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("speed", "faithfulness", "all"), default="all")
    parser.add_argument("--archs", nargs="*", help="default: every registry architecture")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--speed-methods", nargs="*", default=["gradcam", "gradcam++", "eigencam"])
    parser.add_argument("--methods", nargs="*", default=list(GRADIENT) + ["eigencam", "scorecam"])
    parser.add_argument("--patients", type=int, default=80)
    parser.add_argument("--roi", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine two threads mostly wait "
        "for each other, which blurs the ratios)",
    )
    parser.add_argument("--curves", type=int, default=8, help="ROIs per method for deletion/insertion curves")
    args = parser.parse_args()

    from microcalcai.models.registry import ARCHITECTURES

    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"CUDA available: {torch.cuda.is_available()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    if args.part in ("speed", "all"):
        archs = args.archs or list(ARCHITECTURES)
        rows = bench_speed(archs, args.size, args.repeats, args.batch, args.speed_methods)
        print(
            f"\nOne map at {args.size} px as a multiple of one forward+backward pass "
            f"(median of {args.repeats}):\n"
        )
        print(speed_table(rows, args.speed_methods))
    if args.part in ("faithfulness", "all"):
        print("\n" + run_faithfulness(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

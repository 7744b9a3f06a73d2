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

Localisation (``--part localisation``): every registry architecture (or ``--archs``) behind the
project's grey-crop preprocessing, the 96 px phantom ROIs resized to the smallest input (192 px
and up) at which its default target layer gives at least a 6 x 6 map; trained for a fixed time
(``--train-seconds``, 1 torch thread) from random initialisation, or from ImageNet where the
project has the weights offline (tf_efficientnet_lite0); then its test AUC and, per method on the
held-out calcification ROIs, the pointing game (15 px and 5 px, beside a random point's hit rate)
and the energy in the masks beside the mask's area share and the layer grid's ceiling (the mask
averaged over the map's cells). A network with test AUC < 0.8 is marked "not learnt". One JSON file
per architecture in ``--results``: a re-run skips finished ones, and ``--archs`` splits the work
over processes; ``--report-only`` prints the table and draws docs/images/explain-localisation.png.

    .venv/bin/python benchmarks/bench_explain.py     # speed + faithfulness (~15 min, 2 busy cores)
    .venv/bin/python benchmarks/bench_explain.py --part speed --archs resnet50 tf_efficientnet_lite0
    .venv/bin/python benchmarks/bench_explain.py --part localisation   # 24 x ~5 min; resumable
    .venv/bin/python benchmarks/bench_explain.py --part localisation --report-only
"""

from __future__ import annotations

import argparse
import os
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
    """A registry network with the project's preprocessing in front, so it trains on grey crops.

    ``size``: the crop is resized (bilinear) to this network input first, as the predictor does;
    the saliency map still comes back at the crop's size.
    """

    def __init__(self, module, mean, std, size: int | None = None):
        super().__init__()
        self.module = module
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, grey):
        if self.size is not None and grey.shape[-1] != self.size:
            grey = torch.nn.functional.interpolate(
                grey, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return self.module((grey.expand(-1, 3, -1, -1) - self.mean) / self.std)


def _training_steps(model, crops, labels, lr: float, seed: int, batch_size: int = 16):
    """Endless class-weighted Adam steps over shuffled epochs (random flips); yields after each step."""
    torch.manual_seed(seed)
    x, y = torch.from_numpy(crops)[:, None], torch.from_numpy(labels).long()
    weights = torch.tensor(
        [len(labels) / (2.0 * max(1, (labels == c).sum())) for c in (0, 1)], dtype=torch.float32
    )
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    while True:
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            if len(batch) < 2:  # batch norm cannot train on one sample
                continue
            flips = torch.rand(2) < 0.5  # flips keep the masks' meaning and double the data
            inputs = x[batch].flip(-1) if flips[0] else x[batch]
            inputs = inputs.flip(-2) if flips[1] else inputs
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs), y[batch], weight=weights).backward()
            optimiser.step()
            yield


def train(model, crops, labels, epochs: int, lr: float, seed: int = 0):
    from tqdm import tqdm

    per_epoch = sum(1 for b in range(0, len(labels), 16) if len(labels) - b >= 2)
    steps = _training_steps(model, crops, labels, lr, seed)
    for _ in tqdm(range(epochs), desc=f"train {type(model).__name__}", unit="epoch", file=sys.stderr):
        for _ in range(per_epoch):
            next(steps)
    return model.eval()


def train_for(model, crops, labels, seconds: float, lr: float, max_steps: int, seed: int = 0, batch_size=16):
    """Train for a wall-clock budget (or ``max_steps``); returns (model in eval mode, steps, seconds).

    A time budget, not a step budget, because the heaviest registry network costs ~30x the
    lightest per step: equal time is the fair share of a shared CPU. Batch-norm statistics are
    re-estimated afterwards over the training ROIs (a cumulative average instead of the running
    one), since a few dozen steps leave the running averages far from the final weights'.
    """
    start, done = time.perf_counter(), 0
    for _ in _training_steps(model, crops, labels, lr, seed, batch_size):
        done += 1
        if done >= max_steps or time.perf_counter() - start >= seconds:
            break
    _recalibrate_batch_norm(model, crops[:128])
    return model.eval(), done, time.perf_counter() - start


def _recalibrate_batch_norm(model, crops, batch_size: int = 16) -> None:
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


# --------------------------------------------------------------------------------- localisation

LOCALISATION_METHODS = (*GRADIENT, "eigencam")
MIN_AUC = 0.8  # below this a network has not learnt the task: its maps say nothing about the method


def _split_patients(ids, seed: int = 0):
    """Boolean test mask: a quarter of the patients (at least two), the same draw as faithfulness."""
    patients = np.unique(ids)
    test_patients = set(np.random.default_rng(seed).permutation(patients)[: max(2, len(patients) // 4)])
    return np.isin(ids, list(test_patients))


def localisation_rois(cache: Path, patients: int, roi: int):
    """phantom_rois once, cached as .npz beside the results so resumed runs score the same ROIs."""
    if cache.exists():
        data = np.load(cache)
        return data["crops"], data["masks"], data["labels"], data["ids"]
    with tempfile.TemporaryDirectory() as tmp:
        crops, masks, labels, ids = phantom_rois(Path(tmp) / "phantom", patients, roi, seed=0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial_file = cache.with_suffix(".part.npz")
    np.savez_compressed(partial_file, crops=crops, masks=masks, labels=labels, ids=ids)
    partial_file.replace(cache)
    return crops, masks, labels, ids


def _feature_map_size(net, layer: str, roi: int) -> tuple[int, int]:
    from microcalcai.explain.target_layers import resolve_target_layer

    _, module = resolve_target_layer(net, None, layer)
    seen = {}

    def record(module, inputs, output):  # returns None: the output is left alone
        seen["shape"] = tuple(output.shape[-2:])

    handle = module.register_forward_hook(record)
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 1, roi, roi))
    finally:
        handle.remove()
    return seen["shape"]


def localisation_net(arch: str, roi: int, min_map: int):
    """(net, weights, input size, target layer, map size): the registry network behind grey-crop
    preprocessing, at the smallest input (from 192 px in 32 px steps) whose default target layer
    gives at least ``min_map`` x ``min_map`` cells, so the map can place something in a 96 px ROI."""
    from microcalcai.models import create_model
    from microcalcai.models.registry import default_data_config, get_arch

    spec = get_arch(arch)
    weights = "imagenet" if arch == "tf_efficientnet_lite0" else "none"  # the only offline weights
    torch.manual_seed(0)
    module = create_model(arch, weights)
    cfg = default_data_config(arch)
    layer = f"module.{spec.target_layer}"
    for size in range(192, 417, 32):
        net = _Net(module, cfg["mean"], cfg["std"], size=size)
        cells = _feature_map_size(net, layer, roi)
        if min(cells) >= min_map:
            return net, weights, size, layer, cells
    raise SystemExit(f"{arch}: no input up to 416 px gives a {min_map} x {min_map} map at {layer}")


def _pointing_chance(masks, tolerance_px: float) -> float:
    """Hit rate of a map whose maximum falls anywhere at random: the share of the ROI within reach."""
    from scipy.ndimage import distance_transform_edt

    return float(np.mean([(distance_transform_edt(~m) <= tolerance_px).mean() for m in masks]))


def coarse_mask_energy(masks, cells) -> float:
    """Energy in mask of the mask itself seen through a ``cells`` grid: averaged over each cell, then
    resized back bilinearly as the CAM library resizes its maps. The most a perfect map of that
    target layer can put on the calcifications, so a score can be read against what the layer allows."""
    import cv2

    from microcalcai.explain.faithfulness import energy_in_mask

    pooled = torch.nn.functional.adaptive_avg_pool2d(
        torch.from_numpy(masks[:, None].astype(np.float32)), cells
    )
    height, width = masks.shape[-2:]
    return float(
        np.mean(
            [
                energy_in_mask(cv2.resize(p[0].numpy(), (width, height), interpolation=cv2.INTER_LINEAR), m)
                for p, m in zip(pooled, masks, strict=True)
            ]
        )
    )


def localisation_scores(net, layer, crops, masks, methods, tolerance_px: float, tight_px: float) -> dict:
    """Per method: pointing game (at two tolerances), energy in mask (and the mask's area share),
    seconds per map."""
    from microcalcai.explain import explain_crops
    from microcalcai.explain.faithfulness import energy_in_mask, pointing_game

    area = float(masks.mean())
    out = {}
    for method in methods:
        start = time.perf_counter()
        maps = explain_crops(net, crops, method=method, layer=layer).maps
        pairs = list(zip(maps, masks, strict=True))
        energy = float(np.mean([energy_in_mask(s, m) for s, m in pairs]))
        out[method] = {
            "pointing": float(np.mean([pointing_game(s, m, tolerance_px=tolerance_px) for s, m in pairs])),
            "pointing_tight": float(np.mean([pointing_game(s, m, tolerance_px=tight_px) for s, m in pairs])),
            "energy": energy,
            "area": area,
            "energy_ratio": energy / area,
            "flat_maps": int(sum(np.ptp(s) == 0 for s in maps)),
            "s_per_map": (time.perf_counter() - start) / len(crops),
            "n": len(crops),
        }
    return out


def _scorecam_affordable(net, layer, roi: int, seconds: float) -> bool:
    """Score-CAM runs one forward pass per target-layer channel: only where that stays cheap."""
    from microcalcai.explain.target_layers import resolve_target_layer

    _, module = resolve_target_layer(net, None, layer)
    seen = {}

    def record(module, inputs, output):
        seen["channels"] = output.shape[1]

    handle = module.register_forward_hook(record)
    x = torch.rand(8, 1, roi, roi)
    try:
        with torch.no_grad():
            start = time.perf_counter()
            net.eval()(x)
            per_forward = (time.perf_counter() - start) / len(x)
    finally:
        handle.remove()
    return seen["channels"] * per_forward <= seconds


def run_localisation_arch(arch, data, args) -> dict:
    crops, masks, labels, test = data
    positive = test & (labels == 1)
    scored = np.flatnonzero(positive)[: args.max_scored]
    net, weights, size, layer, cells = localisation_net(arch, crops.shape[-1], args.min_map)
    lr = args.lr_pretrained if weights == "imagenet" else args.lr
    net, steps, seconds = train_for(
        net, crops[~test], labels[~test], args.train_seconds, lr, args.max_steps, batch_size=args.batch_size
    )
    from microcalcai.explain.saliency import predict_probability

    auc = _auc(labels[test], predict_probability(net, crops[test]))
    methods = list(args.loc_methods)
    if args.scorecam_rois and _scorecam_affordable(net, layer, crops.shape[-1], args.scorecam_seconds):
        methods.append("scorecam")
    scores = localisation_scores(
        net,
        layer,
        crops[scored],
        masks[scored],
        [m for m in methods if m != "scorecam"],
        args.tolerance,
        args.tight_tolerance,
    )
    if "scorecam" in methods:
        few = scored[: args.scorecam_rois]
        scores.update(
            localisation_scores(
                net, layer, crops[few], masks[few], ["scorecam"], args.tolerance, args.tight_tolerance
            )
        )
    return {
        "arch": arch,
        "weights": "ImageNet" if weights == "imagenet" else "random",
        "input": size,
        "layer": layer.removeprefix("module."),
        "map": list(cells),
        "lr": lr,
        "train_steps": steps,
        "train_s": seconds,
        "train_rois": int((~test).sum()),
        "test_auc": auc,
        "learnt": auc >= MIN_AUC,
        "pointing_chance": _pointing_chance(masks[scored], args.tolerance),
        "tolerance_px": args.tolerance,
        "pointing_chance_tight": _pointing_chance(masks[scored], args.tight_tolerance),
        "tight_tolerance_px": args.tight_tolerance,
        "methods": scores,
    }


def _auc_text(auc: float) -> str:
    """Three decimals, rounded down, so a network just under MIN_AUC never reads as reaching it."""
    return f"{np.floor(auc * 1000) / 1000:.3f}"


def _localisation_config(args) -> dict:
    keys = (
        "patients",
        "roi",
        "train_seconds",
        "max_steps",
        "lr",
        "lr_pretrained",
        "min_map",
        "tolerance",
        "tight_tolerance",
        "max_scored",
        "batch_size",
    )
    return {k: getattr(args, k) for k in keys}


def run_localisation(args) -> str:
    """Train each architecture on the phantom, score its maps, one JSON file per architecture.

    Resumable: an architecture whose file exists (with the same settings) is skipped, so a long run
    can be stopped and started again, or split over processes with ``--archs``.
    """
    import json

    from microcalcai.atomic import atomic_write_text
    from microcalcai.models.registry import ARCHITECTURES

    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    config = _localisation_config(args)
    crops, masks, labels, ids = localisation_rois(
        out / f"rois-{args.patients}-{args.roi}.npz", args.patients, args.roi
    )
    test = _split_patients(ids)
    log(
        f"phantom: {len(crops)} ROIs of {args.roi} px ({int(labels.sum())} with calcifications); "
        f"test: {int(test.sum())} ROIs of {len(np.unique(ids[test]))} patients"
    )
    archs = args.archs or list(ARCHITECTURES)
    todo = []
    for arch in archs:
        path = out / f"{arch}.json"
        if path.exists() and json.loads(path.read_text()).get("config") == config:
            log(f"{arch}: done before ({path}), skipped")
        elif not args.report_only:
            todo.append(arch)
    started = time.perf_counter()
    for index, arch in enumerate(todo):
        arch_start = time.perf_counter()
        row = run_localisation_arch(arch, (crops, masks, labels, test), args)
        row["config"] = config
        row["wall_s"] = time.perf_counter() - arch_start
        row["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        row["load"] = os.getloadavg()[0]
        atomic_write_text(out / f"{arch}.json", json.dumps(row, indent=1))
        per_arch = (time.perf_counter() - started) / (index + 1)
        eta = time.gmtime(time.time() + per_arch * (len(todo) - index - 1))
        best = max(row["methods"].items(), key=lambda kv: kv[1]["energy_ratio"])
        log(
            f"[{index + 1}/{len(todo)}] {arch}: {row['input']} px, {row['layer']} "
            f"{row['map'][0]}x{row['map'][1]}, {row['train_steps']} steps in {row['train_s']:.0f} s, "
            f"test AUC {_auc_text(row['test_auc'])}; best {best[0]} pointing {best[1]['pointing']:.2f}, "
            f"energy x{best[1]['energy_ratio']:.1f} of area; {row['wall_s']:.0f} s, "
            f"ETA {time.strftime('%H:%M UTC', eta)}"
        )
    rows = [json.loads((out / f"{a}.json").read_text()) for a in archs if (out / f"{a}.json").exists()]
    rows = [r for r in rows if r.get("config") == config]  # another run's settings are not comparable
    scored = np.flatnonzero(test & (labels == 1))[: args.max_scored]
    for row in rows:  # what the layer's grid allows, from the same scored masks
        row["coarse_energy"] = coarse_mask_energy(masks[scored], tuple(row["map"]))
    missing = [a for a in archs if a not in {r["arch"] for r in rows}]
    if rows:
        localisation_figure(rows, Path(args.figure))
    header = (
        f"{len(crops)} phantom ROIs of {args.roi} px ({int(labels.sum())} with calcifications); "
        f"{int(test.sum())} ROIs of {len(np.unique(ids[test]))} patients held out, the first "
        f"{len(scored)} held-out calcification ROIs scored."
    )
    footer = f"\n\nNot run: {', '.join(missing)}." if missing else ""
    tight = (
        f"\n\nPointing game at {args.tight_tolerance:g} px (chance: a random point's hit rate):\n\n"
        + tight_pointing_table(rows)
        if rows
        else ""
    )
    return header + "\n\n" + localisation_table(rows) + tight + footer


def localisation_table(rows) -> str:
    """Architecture x method: "pointing game / energy in mask", with the baselines beside them."""
    methods = list(dict.fromkeys(m for r in rows for m in r["methods"]))
    lines = [
        "| architecture (weights) | input, layer, map | training | test AUC | mask area share | "
        "grid ceiling | pointing chance | " + " | ".join(methods) + " |",
        "|" + "---|" * (7 + len(methods)),
    ]
    for r in rows:
        cells = []
        for m in methods:
            s = r["methods"].get(m)
            cells.append("-" if s is None else f"{s['pointing']:.2f} / {s['energy']:.3f}")
        auc = _auc_text(r["test_auc"]) + ("" if r["learnt"] else " **not learnt**")
        area = next(iter(r["methods"].values()))["area"]
        lines.append(
            f"| {r['arch']} ({r['weights']}) | {r['input']} px, `{r['layer']}` {r['map'][0]}x{r['map'][1]} | "
            f"{r['train_steps']} steps, {r['train_s']:.0f} s | {auc} | {area:.3f} | "
            f"{r.get('coarse_energy', float('nan')):.3f} | {r['pointing_chance']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def tight_pointing_table(rows) -> str:
    """The pointing game at the strict tolerance, architecture x method, beside its chance level."""
    methods = list(dict.fromkeys(m for r in rows for m in r["methods"]))
    lines = [
        "| architecture | test AUC | chance | " + " | ".join(methods) + " |",
        "|" + "---|" * (3 + len(methods)),
    ]
    for r in rows:
        cells = [f"{r['methods'][m]['pointing_tight']:.2f}" if m in r["methods"] else "-" for m in methods]
        lines.append(
            f"| {r['arch']} | {_auc_text(r['test_auc'])} | {r['pointing_chance_tight']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def localisation_figure(rows, path: Path) -> None:
    """Heat-table: energy in mask as a multiple of the mask's area share, architecture x method
    (and the layer grid's ceiling); pointing game in each cell; networks that did not learn greyed."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter

    from microcalcai.explain.outputs import save_figure

    methods = list(dict.fromkeys(m for r in rows for m in r["methods"]))
    columns = [*methods, "grid ceiling"]
    ratio = np.full((len(rows), len(columns)), np.nan)
    for i, r in enumerate(rows):
        area = next(iter(r["methods"].values()))["area"]
        for j, m in enumerate(methods):
            if m in r["methods"]:
                ratio[i, j] = r["methods"][m]["energy_ratio"]
        ratio[i, -1] = r.get("coarse_energy", np.nan) / area
    fig = Figure(figsize=(1.0 * len(columns) + 4.4, 0.3 * len(rows) + 1.7))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.clip(ratio, 1 / 3, 3.0), cmap="RdBu_r", norm=LogNorm(1 / 3, 3.0), aspect="auto")
    for i, r in enumerate(rows):
        for j, m in enumerate(columns):
            if not np.isfinite(ratio[i, j]):
                continue
            s = r["methods"].get(m)
            text = f"x{ratio[i, j]:.1f}" + ("" if s is None else f" {s['pointing']:.2f}")
            dark = ratio[i, j] <= 0.45 or ratio[i, j] >= 2.2
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white" if dark else "black")
        if not r["learnt"]:
            ax.axhspan(i - 0.5, i + 0.5, xmax=len(methods) / len(columns), color="grey", alpha=0.6, lw=0)
    ax.axvline(len(methods) - 0.5, color="black", lw=1)
    ax.set_xticks(range(len(columns)), columns, fontsize=7)
    ax.set_yticks(
        range(len(rows)),
        [f"{r['arch']} ({r['map'][0]}x{r['map'][1]}, AUC {_auc_text(r['test_auc'])})" for r in rows],
        fontsize=7,
    )
    ax.xaxis.tick_top()
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.ax.yaxis.set_major_locator(FixedLocator([1 / 3, 0.5, 1, 1.5, 2, 3]))
    bar.ax.yaxis.set_minor_locator(FixedLocator([]))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"x{v:.2g}"))
    bar.set_label("energy in mask / mask area share (x1 = uniform map)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(
        "Localisation on held-out phantom ROIs: energy in the calcification masks as a multiple of a "
        "uniform map's,\nand the pointing game (15 px); grey: test AUC < "
        f"{MIN_AUC} (the network did not learn the task); last column: the best the layer's grid allows",
        fontsize=7,
    )
    fig.tight_layout()
    save_figure(fig, path, 110)
    log(f"figure: {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part",
        choices=("speed", "faithfulness", "localisation", "all"),
        default="all",
        help="all = speed and faithfulness; localisation trains every architecture (hours)",
    )
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
    loc = parser.add_argument_group("localisation")
    loc.add_argument("--results", default="/tmp/microcalcai-localisation", help="one JSON per architecture")
    loc.add_argument("--report-only", action="store_true", help="train nothing: table and figure only")
    loc.add_argument("--train-seconds", type=float, default=240.0, help="training budget per architecture")
    loc.add_argument("--max-steps", type=int, default=2000)
    loc.add_argument("--lr", type=float, default=1e-3, help="Adam, random initialisation")
    loc.add_argument("--lr-pretrained", type=float, default=3e-4, help="Adam, ImageNet weights")
    loc.add_argument("--min-map", type=int, default=6, help="smallest target-layer map (cells per side)")
    loc.add_argument("--tolerance", type=float, default=15.0, help="pointing game tolerance (ROI pixels)")
    loc.add_argument("--tight-tolerance", type=float, default=5.0, help="a second, strict tolerance")
    loc.add_argument(
        "--batch-size", type=int, default=8, help="training batch (small: more steps per second budget)"
    )
    loc.add_argument("--max-scored", type=int, default=30, help="held-out calcification ROIs scored")
    loc.add_argument("--loc-methods", nargs="*", default=list(LOCALISATION_METHODS))
    loc.add_argument("--scorecam-rois", type=int, default=8, help="0: no Score-CAM")
    loc.add_argument(
        "--scorecam-seconds",
        type=float,
        default=10.0,
        help="Score-CAM only where one map is estimated to cost at most this",
    )
    loc.add_argument(
        "--figure",
        default=str(ROOT / "docs" / "images" / "explain-localisation.png"),
        help="heat-table PNG of the finished architectures",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

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
    if args.part == "localisation":
        print("\n" + run_localisation(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

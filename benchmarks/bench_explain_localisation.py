"""Saliency localisation across the registry: every registry architecture (or ``--archs``) behind the
project's grey-crop preprocessing (models.preprocess.GreyInput), the 96 px phantom ROIs resized to
the smallest input (192 px and up) at which its default target layer gives at least a 6 x 6 map;
trained for a fixed time (``--train-seconds``, 1 torch thread, through microcalcai.train.loop) from
random initialisation, or from ImageNet where the project has the weights offline
(tf_efficientnet_lite0); then its test AUC and, per method on the held-out calcification ROIs, the
pointing game (15 px and 5 px, beside a random point's hit rate) and the energy in the masks beside
the mask's area share and the layer grid's ceiling (microcalcai.explain.faithfulness). A network
with test AUC < 0.8 is marked "not learnt". One JSON file per architecture in ``--results``: a
re-run skips finished ones, and ``--archs`` splits the work over processes; ``--report-only``
prints the table and draws docs/images/explain-localisation.png.

    .venv/bin/python benchmarks/bench_explain_localisation.py               # 24 x ~5 min; resumable
    .venv/bin/python benchmarks/bench_explain_localisation.py --report-only
    .venv/bin/python benchmarks/bench_explain.py --part localisation ...     (the same, through the driver)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from microcalcai.explain.faithfulness import coarse_mask_energy, pointing_chance

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
    train_for,
)

__all__ = ["coarse_mask_energy", "train_for", "run_localisation", "build_parser"]

LOCALISATION_METHODS = (*GRADIENT, "eigencam")
MIN_AUC = 0.8  # below this a network has not learnt the task: its maps say nothing about the method


def add_arguments(parser) -> None:
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
    from microcalcai.models.preprocess import GreyInput
    from microcalcai.models.registry import default_data_config, get_arch
    from microcalcai.models.weights import imagenet_offline

    spec = get_arch(arch)
    weights = "imagenet" if imagenet_offline(arch) else "none"
    torch.manual_seed(0)
    module = create_model(arch, weights)
    cfg = default_data_config(arch)
    layer = f"module.{spec.target_layer}"
    for size in range(192, 417, 32):
        net = GreyInput(module, cfg["mean"], cfg["std"], size=size)
        cells = _feature_map_size(net, layer, roi)
        if min(cells) >= min_map:
            return net, weights, size, layer, cells
    raise SystemExit(f"{arch}: no input up to 416 px gives a {min_map} x {min_map} map at {layer}")


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

    score = auc(labels[test], predict_probability(net, crops[test]))
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
        "test_auc": score,
        "learnt": score >= MIN_AUC,
        "pointing_chance": pointing_chance(masks[scored], args.tolerance),
        "tolerance_px": args.tolerance,
        "pointing_chance_tight": pointing_chance(masks[scored], args.tight_tolerance),
        "tight_tolerance_px": args.tight_tolerance,
        "methods": scores,
    }


def _auc_text(value: float) -> str:
    """Three decimals, rounded down, so a network just under MIN_AUC never reads as reaching it."""
    return f"{np.floor(value * 1000) / 1000:.3f}"


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
    test = split_patients(ids)
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
    return part_parser(__doc__, add_arguments)


def main(argv=None) -> int:
    return run_part(build_parser(), run_localisation, argv)


if __name__ == "__main__":
    sys.exit(main())

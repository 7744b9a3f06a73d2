"""Saliency speed: per registry architecture at 512 x 512 on the CPU, the time for one map as a ratio
to one plain forward + backward pass of the same network (same input, same run, interleaved
repeats, medians), for each gradient method and Eigen-CAM; the ratio for pytorch-grad-cam used
as-is (no freezing, full backward) beside it; and batch throughput (maps/s).

    .venv/bin/python benchmarks/bench_explain_speed.py --archs resnet50 tf_efficientnet_lite0
    .venv/bin/python benchmarks/bench_explain.py --part speed ...      (the same, through the driver)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain_common import log, part_parser, run_part  # noqa: E402


def add_arguments(parser) -> None:
    group = parser.add_argument_group("speed")
    group.add_argument("--size", type=int, default=512)
    group.add_argument("--repeats", type=int, default=3)
    group.add_argument("--batch", type=int, default=4)
    group.add_argument("--speed-methods", nargs="*", default=["gradcam", "gradcam++", "eigencam"])


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


def run(args) -> str:
    from microcalcai.models.registry import ARCHITECTURES

    archs = args.archs or list(ARCHITECTURES)
    rows = bench_speed(archs, args.size, args.repeats, args.batch, args.speed_methods)
    head = f"One map at {args.size} px as a multiple of one forward+backward pass (median of {args.repeats}):"
    return head + "\n\n" + speed_table(rows, args.speed_methods)


def build_parser() -> argparse.ArgumentParser:
    return part_parser(__doc__, add_arguments)


def main(argv=None) -> int:
    return run_part(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())

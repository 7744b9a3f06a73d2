"""Training's input pipeline: images a second the loader delivers (augmentation and normalisation of
cached crops), for 0 .. N worker processes, measured alternately in one run.

On a GPU this, not the network, can bound a training at full resolution: an H200 fine-tuning two
EfficientNet-Lite0 on 512 px crops, augmented in the training process, ran at 2-36% utilisation
(RESULTS.md "On an H200"). The recipes' `num_workers: auto` gives a GPU run loader workers; this
says how many images a second they can feed.

    .venv/bin/python benchmarks/bench_loader.py [--size 512] [--recipe phantom] [--workers 0 1 2 4 8]
                                                [--images 512] [--repeats 2] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from records import finish

from microcalcai.models import card_for
from microcalcai.train.data import CropDataset, CropSet
from microcalcai.train.loop import FitConfig, _loader
from microcalcai.train.recipes import load_recipe


def dataset(size: int, recipe: dict, crops: int = 64) -> CropDataset:
    rng = np.random.default_rng(0)
    grey = rng.random((crops, size, size), dtype=np.float32)
    labels = np.arange(crops) % 2
    card = card_for(recipe["archs"][0], input_size=size)
    return CropDataset(CropSet.from_arrays(grey, labels), card.mean, card.std, augment=recipe["augment"])


def images_per_second(data: CropDataset, workers: int, images: int, batch: int) -> float:
    config = FitConfig(batch_size=batch, num_workers=workers, min_epoch_images=images, progress=False)
    loader = _loader(data, config, torch.Generator().manual_seed(0), False, 0, 1)
    start, seen = time.perf_counter(), 0
    for inputs, _ in loader:
        seen += len(inputs)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="crop side fed to the network (px)")
    parser.add_argument("--recipe", default="phantom", help="whose augmentation")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument("--images", type=int, default=512, help="images drawn per measurement")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="alternating passes over --workers")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a training process augments: one thread, the rest for the model
    data = dataset(args.size, load_recipe(args.recipe))
    rates: dict[int, list[float]] = {w: [] for w in args.workers}
    load_before = os.getloadavg()
    for repeat in range(args.repeats):
        for workers in args.workers:
            rates[workers].append(images_per_second(data, workers, args.images, args.batch))
            print(f"pass {repeat + 1}: {workers} workers {rates[workers][-1]:.0f} images/s", flush=True)
    best = {w: max(r) for w, r in rates.items()}
    summary = {
        "torch": torch.__version__,
        "size": args.size,
        "recipe": args.recipe,
        "images": args.images,
        "batch": args.batch,
        "images_per_s": {str(w): [round(x, 1) for x in r] for w, r in rates.items()},
        "ratio_to_in_process": {str(w): round(best[w] / best[0], 2) for w in best} if 0 in best else None,
    }
    finish(summary, load_before, args.out)


if __name__ == "__main__":
    main()

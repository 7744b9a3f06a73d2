"""Helpers of the training tests: tiny labelled crops made here, and tiny recipe settings."""

from __future__ import annotations

import numpy as np

# Small enough for 2 CPU cores: 64 px crops and inputs, batch 8 (also what the installed-wheel
# test trains with, which names its architecture on the command line).
TINY_SIZES = [
    "input_size=64",
    "roi_size=64",
    "batch_size=8",
    "split.val=0.25",
    "split.test=0.25",
    "augment.shift_reference_px=64",
]
# ... with ImageNet Lite0 (offline).
TINY = ["archs=[tf_efficientnet_lite0]", *TINY_SIZES]


def blob_crops(n: int, size: int = 48, seed: int = 0, contrast: float = 0.5):
    """Noise, plus a bright blob cluster for malignant ones.

    (n, size, size) float32 crops in 0..1 and labels alternating benign/malignant."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:size, :size]
    crops = rng.normal(0.4, 0.08, (n, size, size))
    for i in np.flatnonzero(labels):
        for _ in range(3):
            cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
            crops[i] += contrast * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 16) ** 2))
    return np.clip(crops, 0, 1).astype(np.float32), labels

"""Tiny labelled crops made here: noise, plus a bright blob cluster for malignant ones."""

from __future__ import annotations

import numpy as np


def blob_crops(n: int, size: int = 48, seed: int = 0, contrast: float = 0.5):
    """(n, size, size) float32 crops in 0..1 and labels alternating benign/malignant."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:size, :size]
    crops = rng.normal(0.4, 0.08, (n, size, size))
    for i in np.flatnonzero(labels):
        for _ in range(3):
            cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
            crops[i] += contrast * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 16) ** 2))
    return np.clip(crops, 0, 1).astype(np.float32), labels

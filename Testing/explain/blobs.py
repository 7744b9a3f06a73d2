"""Phantom-like ROI crops for the saliency tests: a textured background, and for the positive class a
small cluster of bright calcification-like specks whose mask is known exactly."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter


def make_crops(n: int, size: int = 48, seed: int = 0, margin: int = 8):
    """(crops (n, size, size) float32 0..1, masks (n, size, size) bool, labels (n,) int): half positive."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    crops, masks, labels = [], [], []
    for index in range(n):
        texture = gaussian_filter(rng.normal(size=(size, size)), 3.0)
        crop = 0.35 + 0.08 * texture / (texture.std() + 1e-9) + rng.normal(0, 0.02, (size, size))
        mask = np.zeros((size, size), bool)
        label = index % 2
        if label:
            cx, cy = rng.uniform(margin, size - margin, 2)
            for _ in range(rng.integers(3, 6)):
                sx, sy = cx + rng.normal(0, 2.0), cy + rng.normal(0, 2.0)
                r2 = (xx - sx) ** 2 + (yy - sy) ** 2
                crop += 0.45 * np.exp(-r2 / (2 * 1.2**2))
                mask |= r2 <= 2.5**2
        crops.append(np.clip(crop, 0, 1))
        masks.append(mask)
        labels.append(label)
    return np.asarray(crops, np.float32), np.asarray(masks), np.asarray(labels)


class TinyCNN(torch.nn.Module):
    """Three convolution blocks (``width``, 2x, 4x channels), global max pooling, two logits
    (benign, malignant): a spot detector small enough to train on a CPU in seconds. The saliency
    benchmark uses it too."""

    def __init__(self, width: int = 8):
        super().__init__()

        def block(cin, cout, pool):
            layers = [torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.ReLU()]
            return layers + ([torch.nn.MaxPool2d(2)] if pool else [])

        self.features = torch.nn.Sequential(
            *block(1, width, True), *block(width, 2 * width, True), *block(2 * width, 4 * width, False)
        )
        self.pool = torch.nn.AdaptiveMaxPool2d(1)
        self.fc = torch.nn.Linear(4 * width, 2)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def train_tiny_cnn(crops, labels, epochs: int = 10, seed: int = 0) -> TinyCNN:
    threads = torch.get_num_threads()
    # One thread: for a network this small, two OpenMP threads on a shared 2-core machine spend
    # most of their time waiting for each other (measured: 38 s vs 5 s under load).
    torch.set_num_threads(1)
    try:
        return _train(crops, labels, epochs, seed)
    finally:
        torch.set_num_threads(threads)


def _train(crops, labels, epochs, seed) -> TinyCNN:
    torch.manual_seed(seed)
    model = TinyCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.from_numpy(crops)[:, None]
    y = torch.from_numpy(labels).long()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(32):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
    return model.eval()

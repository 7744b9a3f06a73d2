"""Crops -> network input. The one place where this happens, for training, prediction and saliency.

Crops are grey float32 images in 0..1 (higher = denser), shape (B, N, N) or (N, N). They are resized
to the architecture's input size (bilinear with antialiasing, so a large crop is not aliased when
shrunk), replicated to three channels so the pretrained first convolution is used as it is, and
normalised with the weights' own mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from microcalcai.errors import InputError

CHANNEL_MODES = ("replicate",)


def to_grey_tensor(crops) -> torch.Tensor:
    """(B, N, N) or (N, N) array-like in 0..1 -> float32 tensor (B, 1, N, N); bad input is an error."""
    tensor = (
        torch.as_tensor(np.asarray(crops, dtype=np.float32)) if not torch.is_tensor(crops) else crops.float()
    )
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 4 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.ndim != 3 or tensor.shape[0] == 0 or tensor.shape[1] < 2 or tensor.shape[2] < 2:
        raise InputError(f"crops must have shape (B, N, N) (grey, B >= 1), got {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise InputError(
            "crops contain NaN or infinite values; crop inside the image or fix the source pixels"
        )
    low, high = float(tensor.min()), float(tensor.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise InputError(
            f"crop intensities must be 0..1 (higher = denser), found {low:.3g}..{high:.3g}; "
            "use microcalcai.io.read_image, which windows and scales the pixels"
        )
    return tensor[:, None]


def resize_grey(grey: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, size, size)."""
    if grey.shape[-2:] == (size, size):
        return grey
    return F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def normalise(
    grey: torch.Tensor, mean: Sequence[float], std: Sequence[float], channel_mode: str = "replicate"
):
    """(B, 1, H, W) in 0..1 -> (B, 3, H, W) normalised network input."""
    if channel_mode not in CHANNEL_MODES:
        raise InputError(f"channel_mode {channel_mode!r} is not supported; use one of {CHANNEL_MODES}")
    mean_t = torch.as_tensor(mean, dtype=grey.dtype, device=grey.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=grey.dtype, device=grey.device).view(1, -1, 1, 1)
    return (grey.expand(-1, len(mean), -1, -1) - mean_t) / std_t


def square_whole_image(pixels: np.ndarray) -> np.ndarray:
    """Pad the shorter side with zeros (background) so the whole breast keeps its aspect ratio."""
    rows, cols = pixels.shape
    side = max(rows, cols)
    out = np.zeros((side, side), dtype=np.float32)
    out[:rows, :cols] = pixels
    return out


def whole_image_input(pixels: np.ndarray, out_size: int) -> torch.Tensor:
    """(1, out_size, out_size) float16: a whole view as whole-image training stores it (padded to a
    square, resized). Scoring a whole view (models.tiles.score_whole_image: `microcalcai predict`,
    the server) prepares it with this too, so a score is the one training's evaluation saw."""
    square = square_whole_image(np.asarray(pixels, dtype=np.float32))
    return resize_grey(to_grey_tensor(np.clip(square, 0, 1)), out_size)[0].half()


def preprocess_crops(crops, input_size: int, mean, std, channel_mode: str = "replicate") -> torch.Tensor:
    return normalise(resize_grey(to_grey_tensor(crops), input_size), mean, std, channel_mode)


class GreyInput(torch.nn.Module):
    """A network with this preprocessing in front: it takes grey crops (B, 1, N, N) in 0..1.

    For code that trains or explains a bare network on crop tensors (the saliency benchmarks): the
    crops are resized to ``size`` (when given; the saliency map still comes back at the crop's size)
    and normalised as :func:`preprocess_crops` does. The network is ``.module``, so its layers are
    named ``module.<layer>``.
    """

    def __init__(self, module: torch.nn.Module, mean, std, size: int | None = None):
        super().__init__()
        self.module = module
        self.mean, self.std, self.size = list(mean), list(std), size

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        if self.size is not None:
            grey = resize_grey(grey, self.size)
        return self.module(normalise(grey, self.mean, self.std))

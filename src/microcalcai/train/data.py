"""Manifest rows -> crops -> cached tensors -> augmented, normalised training batches.

Crops are decoded once (each image read once, however many ROIs it holds), resized to the network
input and kept in memory as float16, so epochs after the first are not I/O bound. Augmentation
works on the grey crop before the channels are replicated (three times cheaper) and follows
Kang et al.: horizontal and vertical flips, rotation by 1-359 degrees, shifts of +-30 px (scaled to
the crop size). Normalisation is microcalcai.models.preprocess, the same code prediction uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from microcalcai_logic.contract import LABEL_INDEX

from microcalcai.errors import InputError, NotAvailableError
from microcalcai.models.preprocess import normalise, resize_grey, to_grey_tensor, whole_image_input

LOG = logging.getLogger(__name__)


def case_ids(frame) -> list[str]:
    """One id per ROI: the manifest's case_id (or roi_id) column, or patient/image/centre (unique-ified)."""
    for column in ("case_id", "roi_id"):
        if column in frame.columns and frame[column].notna().all() and frame[column].astype(str).is_unique:
            return [str(v) for v in frame[column]]
    ids, seen = [], {}
    for _, row in frame.iterrows():
        image = (
            row.get("image_id")
            if isinstance(row.get("image_id"), str) and row.get("image_id")
            else Path(str(row["image_path"])).stem
        )
        base = f"{row['patient_id']}/{image}/{float(row['roi_x']):g},{float(row['roi_y']):g}"
        count = seen.get(base, 0)
        seen[base] = count + 1
        ids.append(base if count == 0 else f"{base}#{count + 1}")
    return ids


def labels_of(frame) -> np.ndarray:
    """0/1 per row (-1 where the label is unknown)."""
    return np.array([LABEL_INDEX.get(str(v).strip().lower(), -1) for v in frame["label"]], dtype=np.int64)


def _crop_size(row, default: int) -> int:
    value = row.get("roi_size")
    try:
        size = int(round(float(value)))
    except (TypeError, ValueError):
        return default
    return size if size > 0 else default


def load_crops(
    frame, *, roi_size: int, out_size: int, task: str = "roi", progress: bool = True
) -> torch.Tensor:
    """(M, 1, out_size, out_size) float16 tensor, one crop per manifest row, in row order."""
    return load_crops_sized(frame, roi_size=roi_size, sizes=(out_size,), task=task, progress=progress)[
        out_size
    ]


def load_crops_sized(
    frame, *, roi_size: int, sizes, task: str = "roi", progress: bool = True
) -> dict[int, torch.Tensor]:
    """{size: (M, 1, size, size) float16}: each crop resized once, straight to each size, from
    one reading of the images (networks of several input sizes each get what serving gives them)."""
    from tqdm.auto import tqdm

    from microcalcai.io import read_image

    try:
        from microcalcai.roi import crop_roi
    except ImportError as exc:  # the roi module is part of the data layer
        raise NotAvailableError("microcalcai.roi.crop_roi is not available in this build") from exc
    sizes = sorted({int(s) for s in sizes})
    out = {size: torch.empty((len(frame), 1, size, size), dtype=torch.float16) for size in sizes}
    positions = {path: [] for path in frame["image_path"]}
    for position, path in enumerate(frame["image_path"]):
        positions[path].append(position)
    rows = frame.reset_index(drop=True)
    for path, members in tqdm(positions.items(), desc="reading crops", unit="image", disable=not progress):
        try:
            image = read_image(path)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot read image {path}: {exc}") from exc
        for position in members:
            row = rows.iloc[position]
            if task == "whole_image":
                for size in sizes:
                    out[size][position] = whole_image_input(image.pixels, size)
                continue
            crop = crop_roi(
                image, (float(row["roi_x"]), float(row["roi_y"])), size_px=_crop_size(row, roi_size)
            )
            grey = to_grey_tensor(np.clip(crop.pixels, 0, 1))
            for size in sizes:
                out[size][position] = resize_grey(grey, size)[0].half()
    return out


def build_augment(augment: dict, size: int):
    """torchvision v2 transforms for a grey (1, S, S) tensor, or None when nothing is switched on."""
    from torchvision.transforms import v2

    steps = []
    if augment.get("hflip"):
        steps.append(v2.RandomHorizontalFlip())
    if augment.get("vflip"):
        steps.append(v2.RandomVerticalFlip())
    low, high = augment.get("rotate_degrees") or [0, 0]
    shift = float(augment.get("shift_px") or 0) / float(augment.get("shift_reference_px") or size)
    if high > low or shift > 0:
        steps.append(
            v2.RandomAffine(
                degrees=(float(low), float(high)),
                translate=(shift, shift) if shift else None,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=0.0,
            )
        )
    return v2.Compose(steps) if steps else None


@dataclass
class CropSet:
    """Cached crops of some manifest rows: grey (M, 1, S, S) float16, labels (M,), ids, the frame."""

    grey: torch.Tensor
    labels: np.ndarray
    case_ids: list
    frame: object = None
    meta: dict = field(default_factory=dict)
    # the same crops at other sizes, each resized straight from the image (load_crops_sized)
    other_sizes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask) -> CropSet:
        index = torch.as_tensor(np.flatnonzero(np.asarray(mask)))
        frame = self.frame.iloc[index.numpy()].reset_index(drop=True) if self.frame is not None else None
        return CropSet(
            self.grey[index],
            self.labels[index.numpy()],
            [self.case_ids[i] for i in index.tolist()],
            frame,
            dict(self.meta),
            {size: grey[index] for size, grey in self.other_sizes.items()},
        )

    def resized(self, size: int) -> CropSet:
        if self.grey.shape[-1] == size:
            return self
        if size in self.other_sizes:
            grey = self.other_sizes[size]
        else:
            grey = resize_grey(self.grey.float(), size).half()
        return CropSet(grey, self.labels, self.case_ids, self.frame, dict(self.meta))

    @classmethod
    def from_arrays(cls, crops, labels, ids=None, size: int | None = None, frame=None) -> CropSet:
        """From in-memory crops (B, N, N) 0..1, e.g. made by a test or an importer."""
        grey = to_grey_tensor(crops)
        if size is not None:
            grey = resize_grey(grey, size)
        labels = np.asarray(labels, dtype=np.int64)
        ids = list(ids) if ids is not None else [f"case{i:05d}" for i in range(len(labels))]
        return cls(grey.half(), labels, ids, frame)


class CropDataset(torch.utils.data.Dataset):
    """Items ``(network input (3, S, S), label)``; augmentation only when ``augment`` is given."""

    def __init__(
        self,
        crops: CropSet,
        mean,
        std,
        *,
        augment: dict | None = None,
        channel_mode: str = "replicate",
        offline_copies: int = 0,
        seed: int = 0,
    ):
        self.crops = crops
        self.mean, self.std, self.channel_mode = list(mean), list(std), channel_mode
        size = crops.grey.shape[-1]
        self.transform = build_augment(augment, size) if augment else None
        self.grey = crops.grey
        self.labels = torch.as_tensor(crops.labels)
        if offline_copies and self.transform is not None:
            self._add_offline_copies(offline_copies, seed)

    def _add_offline_copies(self, copies: int, seed: int) -> None:
        """Kang's optional offline augmentation: fixed augmented copies made once, seeded."""
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        extra = [
            torch.stack([self.transform(g.float()) for g in self.crops.grey]).half() for _ in range(copies)
        ]
        torch.random.set_rng_state(state)
        self.grey = torch.cat([self.crops.grey, *extra])
        self.labels = torch.as_tensor(np.tile(self.crops.labels, copies + 1))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        grey = self.grey[index].float()
        if self.transform is not None:
            grey = self.transform(grey)
        return normalise(grey[None], self.mean, self.std, self.channel_mode)[0], self.labels[index]

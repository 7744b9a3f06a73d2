"""Training tiles from whole images and their vessel masks, and whole-image scores after training.

Recipe ``task: tiles`` (see :mod:`microcalcai.models.tiles` for why): every manifest row is a whole
view with a ``mask_path`` (the phantom's calcified-vessel mask; a missing mask on a negative image
means "no vessel"). Tiles are cut on the inference grid (same size in mm, same stride, breast tiles
only); a tile is positive when at least ``positive_fraction`` of its pixels are vessel, negative
when none is, and left out in between (a vessel corner is neither a clear example of BAC nor of
its absence). Per image at most ``positives_per_image`` positive and ``negatives_per_image``
negative tiles are drawn (seeded), so an image with a long artery does not outweigh the others and
the set stays CPU-sized. Tiles inherit the image's columns (patient, exam, split), so the split
stays at the patient level.

After training, validation and test images are scored whole (every breast tile), which is what
the threshold, the metrics and predictions_*.csv are about: the per-image score the server gives.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from microcalcai_logic.contract import LABEL_INDEX, POSITIVE_LABEL

from microcalcai.errors import InputError
from microcalcai.models.preprocess import resize_grey, to_grey_tensor
from microcalcai.models.tiles import (
    TileSettings,
    box_fractions,
    breast_tiles,
    pixel_spacing,
    score_whole_image,
)
from microcalcai.train.data import CropSet, case_ids

LOG = logging.getLogger(__name__)


def _spacing(row, image) -> float:
    value = row.get("spacing_mm")
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = None
    return pixel_spacing(image, default=value if value and value > 0 else None)


def _mask(row, shape) -> np.ndarray | None:
    from PIL import Image

    path = row.get("mask_path")
    if not isinstance(path, str) or not path:
        return None
    try:
        mask = np.asarray(Image.open(path))
    except Exception as exc:
        raise InputError(f"cannot read vessel mask {path}: {exc}") from exc
    if mask.shape != tuple(shape):
        raise InputError(f"vessel mask {path} is {mask.shape}, its image {tuple(shape)}; they must match")
    return mask


def training_tiles(frame, settings: TileSettings, out_size: int, *, seed: int = 0, progress: bool = True):
    """A :class:`CropSet` of labelled tiles from the whole-image rows of `frame` (absolute paths)."""
    import pandas as pd
    from tqdm.auto import tqdm

    from microcalcai.io import read_image

    rng = np.random.default_rng(seed)
    positive = LABEL_INDEX[POSITIVE_LABEL]
    grey, labels, rows = [], [], []
    frame = frame.reset_index(drop=True)
    for _, row in tqdm(frame.iterrows(), total=len(frame), desc="cutting tiles", unit="image",
                       disable=not progress, mininterval=2.0):  # fmt: skip
        image = read_image(row["image_path"])
        spacing = _spacing(row, image)
        boxes, crops = breast_tiles(image.pixels, settings, spacing)
        image_positive = LABEL_INDEX.get(str(row["label"]).strip().lower(), -1) == positive
        mask = _mask(row, image.pixels.shape)
        if image_positive and mask is None:
            raise InputError(
                f"image {row['image_path']} is BAC-positive but has no mask_path; tile training labels "
                "tiles from vessel masks (or train with task whole_image)"
            )
        vessel = box_fractions(mask, boxes) if mask is not None else np.zeros(len(boxes))
        chosen = []
        if image_positive:
            pos = np.flatnonzero(vessel >= settings.positive_fraction)
            chosen += [(i, 1) for i in rng.permutation(pos)[: settings.positives_per_image]]
        neg = np.flatnonzero(vessel == 0)
        chosen += [(i, 0) for i in rng.permutation(neg)[: settings.negatives_per_image]]
        for i, label in chosen:
            grey.append(resize_grey(to_grey_tensor(np.clip(crops[i], 0, 1)), out_size)[0].half())
            labels.append(label)
            r0, c0, r1, c1 = (int(v) for v in boxes[i])
            rows.append({**row.to_dict(), "label": "malignant" if label else "benign",
                         "tile_box": f"{r0},{c0},{r1},{c1}", "roi_x": (c0 + c1 - 1) / 2,
                         "roi_y": (r0 + r1 - 1) / 2, "roi_size": r1 - r0})  # fmt: skip
    if not grey:
        raise InputError("no training tiles could be cut from the manifest's images")
    tiles = pd.DataFrame(rows)
    tiles["case_id"] = [f"{cid}@{box}" for cid, box in zip(case_ids(tiles), tiles["tile_box"], strict=True)]
    out = CropSet(torch.stack(grey), np.asarray(labels, dtype=np.int64), list(tiles["case_id"]), tiles)
    LOG.info(
        "%d training tiles (%d of them BAC) from %d images, %s",
        len(out),
        int(out.labels.sum()),
        len(frame),
        settings,
    )
    return out


def score_images(predictor, frame, *, progress: bool = True) -> np.ndarray:
    """Whole-image scores (every breast tile, aggregated) of the rows of `frame`, in order."""
    from tqdm.auto import tqdm

    from microcalcai.io import read_image

    out = np.empty(len(frame))
    bar = tqdm(total=len(frame), desc="scoring images", unit="image", disable=not progress, mininterval=2.0)
    for k, (_, row) in enumerate(frame.iterrows()):
        image = read_image(row["image_path"])
        out[k] = score_whole_image(predictor, image.pixels, _spacing(row, image)).score
        bar.update(1)
    bar.close()
    return out


def in_memory_predictor(model, card, *, device: str = "cpu", batch_size: int = 64):
    """A :class:`ModelPredictor` around a just-trained network (no model folder written yet)."""
    from microcalcai.models.artifact import LoadedModel, _unwrap
    from microcalcai.models.predictor import ModelPredictor

    loaded = LoadedModel(_unwrap(model).eval(), card, None)
    return ModelPredictor(loaded, device=device, batch_size=batch_size)

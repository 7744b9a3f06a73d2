"""A whole mammogram scored tile by tile: the way a thin structure is seen at full resolution.

A calcified artery is 1-2 mm across with a calcified wall of 0.1-0.2 mm; shrinking a whole view
(240 x 180 mm) to a network's 224-256 pixel input leaves it at about one pixel, where a CPU-sized
training set does not learn it (Training/scripts/mobini2024.sh: 0.52 test AUC at 256 px). Tiles of
``size_mm`` at the image's own pixel size keep it 3-5 pixels wide; a classifier trained on tiles
(labelled from vessel masks, :mod:`microcalcai.train.tiles`) scores every tile that holds breast,
and the image's score is the maximum (or the mean of the ``top`` highest) tile probabilities, since
BAC anywhere in the view makes the view positive. The exam's score is then the views' aggregate
(:mod:`microcalcai.evaluate.exam`).

The tiling is stored in the model card (``card.crop = {"task": "tiles", "tiles": {...}}``), so a
model folder alone says how to score a whole image: :func:`score_whole_image` reads it and also
scores models trained on the whole (square-padded) image, so one call serves both kinds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from microcalcai.errors import InputError
from microcalcai.models.preprocess import resize_grey, whole_image_input

AGGREGATES = ("max", "top3")


@dataclass(frozen=True)
class TileSettings:
    """How an image is cut into tiles; the recipe's ``tiles`` block and the card's ``crop.tiles``."""

    size_mm: float = 25.6  # tile side (64 pixels at 0.4 mm, 128 at 0.2 mm)
    stride: float = 0.5  # step between neighbouring tiles, as a share of the tile side
    min_tissue: float = 0.3  # tiles with a smaller share of breast (non-zero pixels) are skipped
    positive_fraction: float = 0.004  # training: share of a tile's pixels in the vessel mask for BAC
    positives_per_image: int = 8  # training: BAC tiles drawn per image (all when fewer)
    negatives_per_image: int = 4  # training: tiles without vessel drawn per image
    aggregate: str = "max"  # image score from tile scores: max | top3 (mean of the three highest)

    @classmethod
    def from_dict(cls, data: dict | None, *, where: str = "tiles") -> TileSettings:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{where}: unknown tile setting(s) {', '.join(unknown)}; known: {sorted(known)}")
        return cls(**data).validate(where)

    def validate(self, where: str = "tiles") -> TileSettings:
        def bad(name, what):
            raise InputError(f"{where}.{name}={getattr(self, name)!r}: {what}")

        if not self.size_mm > 0:
            bad("size_mm", "give the tile side in millimetres (> 0)")
        if not 0 < self.stride <= 1:
            bad("stride", "a share of the tile side within (0, 1]")
        if not 0 <= self.min_tissue <= 1:
            bad("min_tissue", "a share within 0..1")
        if not 0 < self.positive_fraction < 1:
            bad("positive_fraction", "a share of the tile's pixels within (0, 1)")
        for name in ("positives_per_image", "negatives_per_image"):
            if getattr(self, name) < 1:
                bad(name, "give at least one positive and one negative tile per image")
        if self.aggregate not in AGGREGATES:
            bad("aggregate", f"one of {', '.join(AGGREGATES)}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def tile_px(self, spacing_mm: float) -> int:
        """The tile side in pixels of an image of `spacing_mm` (at least 8)."""
        return max(8, int(round(self.size_mm / float(spacing_mm))))


def pixel_spacing(image, default: float | None = None) -> float:
    """The (square) pixel size of a read image in mm; a tile model needs it to cut tiles in mm."""
    spacing = getattr(image, "spacing_mm", None)
    if spacing is None:
        if default is None:
            raise InputError(
                "this image carries no pixel spacing, and a tile model cuts its tiles in millimetres; "
                "give the spacing (e.g. read_image(..., default_spacing_mm=0.1) or a manifest "
                "spacing_mm column)"
            )
        return float(default)
    values = np.atleast_1d(np.asarray(spacing, dtype=float))
    return float(values.mean())


def tile_boxes(shape: tuple[int, int], tile_px: int, stride_px: int) -> np.ndarray:
    """(T, 4) boxes (row0, col0, row1, col1) covering an image of `shape`; the last row and
    column of tiles are pushed back inside the image so every pixel is covered."""
    rows, cols = int(shape[0]), int(shape[1])
    if rows < tile_px or cols < tile_px:
        raise InputError(
            f"the image ({rows} x {cols} pixels) is smaller than one tile ({tile_px} pixels); "
            "check the pixel spacing or use a smaller tile (tiles.size_mm)"
        )

    def starts(length):
        out = list(range(0, length - tile_px + 1, stride_px))
        if out[-1] != length - tile_px:
            out.append(length - tile_px)
        return np.array(out)

    r, c = np.meshgrid(starts(rows), starts(cols), indexing="ij")
    r, c = r.ravel(), c.ravel()
    return np.stack([r, c, r + tile_px, c + tile_px], axis=1)


def box_fractions(plane: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of each box's pixels that are non-zero in `plane` (a summed-area table: one pass for
    all boxes, where slicing every box would cost tiles x pixels)."""
    table = np.zeros((plane.shape[0] + 1, plane.shape[1] + 1), dtype=np.float64)
    table[1:, 1:] = np.cumsum(np.cumsum(plane != 0, axis=0), axis=1)
    r0, c0, r1, c1 = boxes.T
    counts = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
    return counts / ((r1 - r0) * (c1 - c0))


def breast_tiles(
    pixels: np.ndarray, settings: TileSettings, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the tiles that hold breast and their pixels: ((T, 4) int, (T, n, n) float32)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2:
        raise InputError(f"a whole image must be one grey plane (rows, cols), got shape {pixels.shape}")
    tile = settings.tile_px(spacing_mm)
    boxes = tile_boxes(pixels.shape, tile, max(1, int(round(tile * settings.stride))))
    keep = box_fractions(pixels > 0, boxes) >= settings.min_tissue
    if not keep.any():  # a nearly empty image still gets a score: its most filled tile
        keep[np.argmax(box_fractions(pixels > 0, boxes))] = True
    boxes = boxes[keep]
    crops = np.stack([pixels[r0:r1, c0:c1] for r0, c0, r1, c1 in boxes])
    return boxes, crops


def aggregate_tiles(probability: np.ndarray, how: str = "max") -> float:
    """An image's score from its tiles' probabilities."""
    probability = np.asarray(probability, dtype=np.float64)
    if how == "max":
        return float(probability.max())
    if how == "top3":
        return float(np.sort(probability)[-3:].mean())
    raise InputError(f"tile aggregation must be one of {', '.join(AGGREGATES)}, not {how!r}")


def tile_map(shape: tuple[int, int], boxes: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """(rows, cols) float32 map: each pixel the highest probability of the tiles covering it
    (0 where no tile was scored), the tile model's picture of where it sees BAC."""
    out = np.zeros(shape, dtype=np.float32)
    for (r0, c0, r1, c1), p in zip(boxes, probability, strict=True):
        np.maximum(out[r0:r1, c0:c1], np.float32(p), out=out[r0:r1, c0:c1])
    return out


@dataclass
class WholeImageScore:
    score: float  # the image's P(positive) as the model aggregates it
    decision: bool  # score >= threshold (the model's validation threshold)
    threshold: float
    task: str  # "tiles" or "whole_image"
    boxes: np.ndarray  # (T, 4) tiles scored (one box, the whole image, for a whole-image model)
    tile_probability: np.ndarray  # (T,)

    def map(self, shape: tuple[int, int]) -> np.ndarray:
        """The per-pixel picture of the tile scores over an image of `shape`."""
        return tile_map(shape, self.boxes, self.tile_probability)


def tile_settings_of(card) -> TileSettings | None:
    """The tiling a model was trained with, or None for a model of whole images or ROIs."""
    crop = dict(getattr(card, "crop", None) or {})
    if crop.get("task") != "tiles":
        return None
    return TileSettings.from_dict(crop.get("tiles"), where=f"model {card.name} crop.tiles")


def score_whole_image(
    predictor, pixels: np.ndarray, spacing_mm: float | None = None, *, threshold: float | None = None
) -> WholeImageScore:
    """Score one whole view (grey 0..1, its stored grid) with a single-model predictor.

    A tile model (card crop task "tiles") scores every breast tile at the image's own pixel size
    (`spacing_mm` is needed to cut tiles of the trained size in mm) and aggregates them; any other
    model sees the whole view padded to a square, as whole-image training does. `threshold`
    defaults to the model card's.
    """
    members = getattr(predictor, "members", [predictor])
    if len(members) != 1:
        raise InputError("whole-image scoring takes one model folder, not an ensemble")
    model = members[0]
    threshold = float(model.threshold if threshold is None else threshold)
    pixels = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    settings = tile_settings_of(model.card)
    if settings is None:  # prepared as whole-image training stores a view (at the card's crop size)
        probability = model.predict_proba(_whole_view_input(model, pixels))
        rows, cols = pixels.shape
        boxes = np.array([[0, 0, rows, cols]])
        return WholeImageScore(float(probability[0]), bool(probability[0] >= threshold), threshold,
                               "whole_image", boxes, probability)  # fmt: skip
    if spacing_mm is None:
        raise InputError(
            f"model {model.name} scores tiles of {settings.size_mm:g} mm; give the image's pixel spacing"
        )
    boxes, crops = breast_tiles(pixels, settings, spacing_mm)
    probability = model.predict_proba(crops)
    score = aggregate_tiles(probability, settings.aggregate)
    return WholeImageScore(score, score >= threshold, threshold, "tiles", boxes, probability)


def _whole_view_input(model, pixels: np.ndarray) -> np.ndarray:
    """(1, size, size) float32: what a whole-view model scores (padded square, card size, float16 as
    whole-image training stores it); its map explains this same input."""
    size = int((model.card.crop or {}).get("roi_size") or model.card.input_size)
    return whole_image_input(pixels, size).float().numpy()


def whole_image_saliency(
    predictor,
    pixels: np.ndarray,
    spacing_mm: float | None = None,
    *,
    method: str = "gradcam++",
    top: int = 8,
    scored: WholeImageScore | None = None,
) -> np.ndarray:
    """(rows, cols) float32 map in 0..1 over a whole view: where the model sees the positive class.

    A tile model's view is explained by its `top` highest-scoring tiles: each tile's saliency map
    (`method`, Grad-CAM++ by default, through microcalcai.explain) times that tile's probability,
    placed on the image, the maximum where tiles overlap; the other tiles, which the image score
    does not depend on, stay 0. A whole-image model's map explains the input its score comes from
    (the view padded square and resized to the card's size), resized back to the square and cut
    to the image. `scored` reuses a :func:`score_whole_image` result instead of scoring again.
    """
    from microcalcai.explain.saliency import explain_crops

    pixels = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    scored = scored or score_whole_image(predictor, pixels, spacing_mm)
    members = getattr(predictor, "members", [predictor])
    if scored.task != "tiles":
        prepared = _whole_view_input(members[0], pixels)
        small = explain_crops(members[0], prepared, method=method, target="malignant").maps[0]
        small = torch.as_tensor(np.asarray(small, dtype=np.float32))[None, None]
        square = resize_grey(small, max(pixels.shape))
        out = square[0, 0, : pixels.shape[0], : pixels.shape[1]].numpy()
        return np.clip(out, 0.0, 1.0).astype(np.float32)  # antialiased resizing may overshoot 0..1
    if top < 1:
        raise InputError(f"top={top}: explain at least one tile")
    order = np.argsort(scored.tile_probability)[::-1][:top]
    boxes = scored.boxes[order]
    crops = np.stack([pixels[r0:r1, c0:c1] for r0, c0, r1, c1 in boxes])
    maps = explain_crops(members[0], crops, method=method, target="malignant").maps
    out = np.zeros(pixels.shape, dtype=np.float32)
    for (r0, c0, r1, c1), tile_map_, p in zip(boxes, maps, scored.tile_probability[order], strict=True):
        np.maximum(out[r0:r1, c0:c1], tile_map_ * np.float32(p), out=out[r0:r1, c0:c1])
    return out


__all__ = [
    "AGGREGATES",
    "TileSettings",
    "WholeImageScore",
    "aggregate_tiles",
    "box_fractions",
    "breast_tiles",
    "pixel_spacing",
    "score_whole_image",
    "tile_boxes",
    "tile_map",
    "tile_settings_of",
    "whole_image_saliency",
]

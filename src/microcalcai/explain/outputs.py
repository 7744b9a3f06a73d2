"""Saliency maps to files: NRRD (with geometry), .npy, PNG overlays and montages.

NRRD geometry follows docs/server-api.md, so a map written here and one answered by the server
read the same way: a 2D float32 image, first axis = x (column), ``space dimension: 2``, ``space
origin`` = the source's stored pixel under the map's top-left pixel centre and ``space
directions`` = one map pixel's step in source pixels (``units="pixel"``). With ``units="mm"`` the
same geometry is written in millimetres (source pixel position x spacing), which standalone
viewers place next to the mammogram without further arithmetic. Every file is written atomically.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_write_bytes
from microcalcai.errors import InputError

NRRD_UNITS = ("pixel", "mm")


@dataclass(frozen=True)
class MapGeometry:
    """Where a crop-sized map lies on the source: ``to_source`` 3x3 (crop pixel -> stored pixel) and
    the source's (row, col) pixel spacing in mm, when known."""

    to_source: np.ndarray
    source_spacing_mm: tuple[float, float] | None = None

    @classmethod
    def of(cls, crop=None, source_spacing_mm=None) -> MapGeometry:
        """The geometry of a RoiCrop (identity for a bare array: the crop is its own source)."""
        to_source = np.asarray(getattr(crop, "to_source", np.eye(3)), dtype=float)
        if source_spacing_mm is None and getattr(crop, "spacing_mm", None) is not None:
            # The crop's spacing and its scale in to_source give the source's spacing.
            row_mm, col_mm = np.broadcast_to(np.asarray(crop.spacing_mm, dtype=float), (2,))
            source_spacing_mm = (row_mm / np.hypot(*to_source[:2, 1]), col_mm / np.hypot(*to_source[:2, 0]))
        if source_spacing_mm is not None:
            source_spacing_mm = tuple(float(v) for v in source_spacing_mm)
        return cls(to_source, source_spacing_mm)

    @property
    def origin_xy(self) -> tuple[float, float]:
        return float(self.to_source[0, 2]), float(self.to_source[1, 2])

    @property
    def step_xy(self) -> tuple[float, float]:
        return float(self.to_source[0, 0]), float(self.to_source[1, 1])

    def directions(self, units: str) -> np.ndarray:
        """Rows = NRRD axes (x then y), columns = space coordinates."""
        directions = self.to_source[:2, :2].T.copy()
        if units == "mm":
            directions *= self._mm_per_pixel()[None, :]
        return directions

    def origin(self, units: str) -> np.ndarray:
        origin = self.to_source[:2, 2].copy()
        return origin * self._mm_per_pixel() if units == "mm" else origin

    def _mm_per_pixel(self) -> np.ndarray:
        if self.source_spacing_mm is None:
            raise InputError(
                "the source image has no pixel spacing, so a map cannot be written in mm; "
                "write it in pixel units or give the spacing (parameter 'source_spacing_mm')"
            )
        row_mm, col_mm = self.source_spacing_mm
        return np.array([col_mm, row_mm])  # (x, y)


def write_map_nrrd(
    path,
    saliency: np.ndarray,
    geometry: MapGeometry | None = None,
    *,
    units: str = "pixel",
    model: str | None = None,
    method: str | None = None,
    probability: float | None = None,
    image: str | None = None,
    extra: dict | None = None,
    compress: bool = False,
) -> Path:
    """A 2D float32 NRRD of ``saliency`` (rows x cols) with its place on the source image.

    `extra` adds `microcalcai_<key>` text fields (the server's model version and target, say);
    `compress` writes gzip-encoded data, for maps sent over the network."""
    import nrrd

    if units not in NRRD_UNITS:
        raise InputError(
            f"unknown NRRD units {units!r} (parameter 'units'); choose one of: {', '.join(NRRD_UNITS)}"
        )
    saliency = _check_map(saliency)
    geometry = geometry or MapGeometry(np.eye(3))
    spacing = geometry.source_spacing_mm
    spacing_text = "unknown" if spacing is None else f"{spacing[0]:.9g} {spacing[1]:.9g}"
    header = {
        "space dimension": 2,
        "space directions": geometry.directions(units),
        "space origin": geometry.origin(units),
        "space units": [units, units],
        "kinds": ["domain", "domain"],
        "microcalcai_source_spacing_mm": spacing_text,
    }
    for key, value in (("model", model), ("method", method), ("image", image)):
        if value is not None:
            header[f"microcalcai_{key}"] = str(value)
    if probability is not None:
        header["microcalcai_probability"] = f"{float(probability):.6g}"
    for key, value in (extra or {}).items():
        header[f"microcalcai_{key}"] = str(value)
    if compress:
        header["encoding"] = "gzip"
    # pynrrd writes to a path only: write a private temporary file, then publish its bytes atomically.
    with tempfile.TemporaryDirectory() as tmp:
        scratch = os.path.join(tmp, "map.nrrd")
        nrrd.write(scratch, saliency, header, index_order="C")
        return atomic_write_bytes(path, Path(scratch).read_bytes())


def read_map_nrrd(path) -> tuple[np.ndarray, dict]:
    """(rows x cols map, header) of a map written by :func:`write_map_nrrd`."""
    import nrrd

    data, header = nrrd.read(str(path), index_order="C")
    return data, header


def write_map_npy(path, saliency: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, _check_map(saliency), allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue())


def overlay_title(
    probability: float | None,
    method_title: str | None = None,
    model: str | None = None,
    explained: str | None = None,
    threshold: float | None = None,
) -> str:
    parts = []
    if probability is not None:
        decision = ""
        if threshold is not None:
            decision = " (malignant)" if probability >= threshold else " (benign)"
        parts.append(f"P(malignant) = {probability:.3f}{decision}")
    detail = " ".join(p for p in (method_title, f"for {explained}" if explained else None) if p)
    if detail:
        parts.append(detail)
    if model:
        parts.append(model)
    return "\n".join(parts)


def write_overlay_png(
    path,
    crop: np.ndarray,
    saliency: np.ndarray,
    *,
    title: str = "",
    alpha: float = 0.45,
    cmap: str = "jet",
    dpi: int = 110,
) -> Path:
    """The crop in grey, the map over it, a colour bar, and ``title`` (see :func:`overlay_title`)."""
    from matplotlib.figure import Figure

    crop, saliency = _pair(crop, saliency)
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    _draw_overlay(ax, crop, saliency, alpha, cmap, fig=fig)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path, dpi)


def write_montage_png(
    path,
    items: list[dict],
    *,
    columns: int | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
    dpi: int = 90,
    suptitle: str = "",
) -> Path:
    """Many ROIs on one page. Each item: ``crop``, ``saliency``, and optional ``title``."""
    from matplotlib.figure import Figure

    if not items:
        raise InputError("a montage needs at least one ROI")
    columns = columns or min(6, math.ceil(math.sqrt(len(items))))
    rows = math.ceil(len(items) / columns)
    fig = Figure(figsize=(2.6 * columns + 0.8, 2.8 * rows + (0.4 if suptitle else 0)))
    image = None
    for index, item in enumerate(items):
        ax = fig.add_subplot(rows, columns, index + 1)
        crop, saliency = _pair(item["crop"], item["saliency"])
        image = _draw_overlay(ax, crop, saliency, alpha, cmap)
        ax.set_title(item.get("title", ""), fontsize=7)
    fig.colorbar(image, ax=fig.axes, fraction=0.02, pad=0.02, label="saliency")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, path, dpi)


def _draw_overlay(ax, crop, saliency, alpha, cmap, fig=None):
    """Grey crop under the map; the map fades out where it is low so the anatomy under it stays visible."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    ax.imshow(crop, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.imshow(
        saliency,
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        alpha=alpha * np.clip(saliency / 0.25, 0.0, 1.0),
        interpolation="bilinear",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap)  # opaque colours for the bar
    if fig is not None:
        add_colorbar(fig, ax, cmap)
    return mappable


def add_colorbar(fig, ax, cmap: str = "jet", label: str = "saliency (0..1)"):
    """A colour bar of the map's colours at full opacity (the overlay itself is translucent)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    return fig.colorbar(
        ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), ax=ax, fraction=0.046, pad=0.04, label=label
    )


def save_figure(fig, path, dpi) -> Path:
    """Render a matplotlib Figure to PNG and write it atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def _check_map(saliency) -> np.ndarray:
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.ndim != 2:
        raise InputError(f"a saliency map must be 2D (rows, cols), got shape {saliency.shape}")
    return saliency


def _pair(crop, saliency) -> tuple[np.ndarray, np.ndarray]:
    crop = np.asarray(getattr(crop, "pixels", crop), dtype=np.float32)
    saliency = _check_map(saliency)
    if crop.shape != saliency.shape:
        raise InputError(f"the map {saliency.shape} and the crop {crop.shape} must have the same shape")
    return crop, saliency

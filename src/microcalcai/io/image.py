"""The one in-memory mammogram type that every later stage reads."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from microcalcai.io.intensity import Transform, evaluate


def map_point(affine: np.ndarray, x: float, y: float, *, inverse: bool = False) -> tuple[float, float]:
    """(x, y) through a 3x3 affine on homogeneous column vectors (or through its inverse)."""
    matrix = np.linalg.inv(affine) if inverse else affine
    u, v, _ = matrix @ np.array([x, y, 1.0])
    return float(u), float(v)


class DeferredPixels:
    """Stored pixels and the pointwise transform to display values, for an image whose float32
    pixels have not been made yet.

    Indexing (`deferred[rows, cols]`, any numpy index) transforms only the pixels it selects, so
    a crop or an overview costs a fraction of the whole image; `materialise()` makes the whole
    float32 image once (through a StoredTable when that is cheaper) and keeps it.
    """

    def __init__(self, stored: np.ndarray, transform: Transform):
        self.stored = stored
        self.transform = transform
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stored.shape

    def __getitem__(self, key) -> np.ndarray:
        if self._pixels is not None:
            return self._pixels[key]
        return self.transform(np.asarray(self.stored[key]))

    def materialise(self) -> np.ndarray:
        with self._lock:  # two threads asking at once make the image once
            if self._pixels is None:
                self._pixels = evaluate(self.transform, self.stored)
            return self._pixels

    def flip_columns(self) -> DeferredPixels:
        """The mirrored image, still deferred (a view of the stored pixels)."""
        return DeferredPixels(self.stored[:, ::-1], self.transform)

    def __reduce__(self):
        # Pickled (and copied) as the float32 array it stands for: the transform is a closure.
        return _same_array, (self.materialise(),)


def _same_array(pixels: np.ndarray) -> np.ndarray:
    return pixels


@dataclass
class Mammogram:
    """A 2D mammogram ready for analysis.

    pixels: float32 (rows, cols), 0..1 after windowing, higher = denser (MONOCHROME1 already
        inverted), in the stored pixel grid unless `to_stored` says otherwise (orientation flip).
        A reader may construct it with DeferredPixels instead of the array: the array is then
        made on the first access of `pixels`, and `lazy_pixels` (which crop_roi uses) windows
        only what is indexed.
    spacing_mm: (row spacing, column spacing) in millimetres, or None when the file has none.
    spacing_source: which tag or field gave the spacing ("PixelSpacing", "ImagerPixelSpacing",
        "png:pHYs", "tiff:resolution", "user", ...) or None.
    to_stored: 3x3 affine taking homogeneous (x=column, y=row, 1) of `pixels` to the stored
        pixel coordinates of the source file. Identity unless the image was flipped.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None = None
    spacing_source: str | None = None
    laterality: str | None = None  # "L" or "R"
    view: str | None = None  # "CC", "MLO", ...
    source_path: Path | None = None
    to_stored: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.lazy_pixels.shape  # type: ignore[return-value]

    @property
    def lazy_pixels(self) -> np.ndarray | DeferredPixels:
        """The float32 pixels if they have been made, else the DeferredPixels that make them;
        both index alike (`lazy_pixels[y0:y1, x0:x1]` is float32 0..1)."""
        return self.__dict__["_pixels"]

    def pixel_to_stored(self, x: float, y: float) -> tuple[float, float]:
        return map_point(self.to_stored, x, y)

    def stored_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        return map_point(self.to_stored, x, y, inverse=True)


class _Pixels:
    """`Mammogram.pixels`: always the float32 array; DeferredPixels given to the constructor (or
    assigned) are materialised on the first read and replaced by the array they make, which
    frees the stored pixels."""

    def __get__(self, image: Mammogram | None, owner=None):
        if image is None:
            return self
        value = image.__dict__["_pixels"]
        if isinstance(value, DeferredPixels):
            value = image.__dict__["_pixels"] = value.materialise()
        return value

    def __set__(self, image: Mammogram, value) -> None:
        image.__dict__["_pixels"] = value


# Installed after @dataclass so that the generated __init__, __eq__ and dataclasses.replace
# still see an ordinary required field named `pixels`.
Mammogram.pixels = _Pixels()  # type: ignore[assignment]

"""Stored pixel values -> float32 0..1, higher = denser.

The window centre/width functions are evaluated here in float32 rather than through pydicom's
`apply_windowing`, which computes in float64 with `np.piecewise` and rescales to the output bit
range: on a 4.4k x 2.9k mammogram it costs about twice the RLE decode itself and ~0.5 GB of
temporaries, while the transforms below fold rescale, window and MONOCHROME1 inversion into one
multiply-add and one clip. They follow PS3.3 C.11.2.1.2 exactly (the tests check them against
the standard's formulas and against pydicom). LUT sequences (Modality LUT, VOI LUT) are applied
by `lut_table` / `apply_lut` (why not pydicom's: see lut_table).

Every map from stored values to display values is pointwise (`Transform`). So it can be
evaluated on a crop alone (a Mammogram keeps its stored pixels until the whole image is asked
for), and, for integer pixels of at most 16 bits, once on every value the stored type can hold
(at most 65536) and the image mapped through that table (`StoredTable`): the same numbers,
because the table is made by the same code, at a fraction of the cost of a SIGMOID window, a
LUT sequence or a logarithm on every pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
# Below this many pixels the transform is evaluated on the image directly: building a table of
# 65536 entries would cost more than it saves.
TABLE_MIN_PIXELS = 1 << 18
# "auto", "table" or "direct": see evaluate (the tests set it to compare the two).
EVALUATION = "auto"
# Pixels mapped per np.take call: the intp copy of the indices numpy makes stays in the cache.
_TAKE_CHUNK = 1 << 16


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"

    def describe(self) -> str:
        return f"window C={self.center:g} W={self.width:g} {self.function}"


def linear_coefficients(window: Window) -> tuple[float, float]:
    """(a, b) such that the window's output in 0..1 is clip(a * x + b, 0, 1).

    LINEAR (C.11.2.1.2.1): y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped below at
    x <= c - 0.5 - (w - 1) / 2 and above at x > c - 0.5 + (w - 1) / 2; the clip points are where
    the line reaches 0 and 1, so clipping the line is the same function.
    LINEAR_EXACT (C.11.2.1.3.2): y = (x - c) / w + 0.5, clipped likewise.
    """
    c, w = window.center, window.width
    if window.function == "LINEAR_EXACT":
        return 1.0 / w, 0.5 - c / w
    span = w - 1.0  # LINEAR needs w > 1 here; w == 1 (a step) is handled in apply_window
    return 1.0 / span, 0.5 - (c - 0.5) / span


def apply_window(
    values: np.ndarray, window: Window, *, slope: float = 1.0, intercept: float = 0.0, invert: bool = False
) -> np.ndarray:
    """Rescale (slope, intercept), window and optionally invert `values` into a new float32 array."""
    if window.function == "SIGMOID":
        # C.11.2.1.3.1: y = 1 / (1 + exp(-4 (x - c) / w)), on the rescaled values.
        out = np.multiply(values, np.float32(-4.0 * slope / window.width), dtype=np.float32)
        out += np.float32(-4.0 * (intercept - window.center) / window.width)
        with np.errstate(over="ignore"):  # far below the centre exp gives inf, and 1 / inf = 0
            np.exp(out, out=out)
        out += np.float32(1.0)
        np.reciprocal(out, out=out)
        if invert:
            np.subtract(np.float32(1.0), out, out=out)
        return out
    if window.function == "LINEAR" and window.width == 1.0:
        # C.11.2.1.2.1 with w = 1 is a step: 0 for x <= c - 0.5, 1 above.
        rescaled = np.multiply(values, np.float32(slope), dtype=np.float32) + np.float32(intercept)
        out = (rescaled > np.float32(window.center - 0.5)).astype(np.float32)
        return np.subtract(np.float32(1.0), out, out=out) if invert else out
    a, b = linear_coefficients(window)
    # Fold the modality rescale and the inversion into the same line: y = a (s x + i) + b,
    # and the conversion to float32 into the multiplication: three passes over the pixels.
    a, b = a * slope, a * intercept + b
    if invert:
        a, b = -a, 1.0 - b
    out = np.multiply(values, np.float32(a), dtype=np.float32)
    out += np.float32(b)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def scale_range(values: np.ndarray, lo: float, hi: float, *, invert: bool = False) -> np.ndarray:
    """Linear map of [lo, hi] to [0, 1] (clipped), as a new float32 array."""
    span = float(hi) - float(lo)
    if span <= 0:
        return np.zeros(values.shape, np.float32)
    return apply_window(
        values, Window(center=(lo + hi) / 2.0, width=span, function="LINEAR_EXACT"), invert=invert
    )


def percentile_sample_step(shape: tuple[int, ...]) -> int:
    """Percentiles of an image are estimated on every step-th row and column."""
    return 4 if min(shape) >= 64 else 1


def robust_range(
    sample: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5, *, valid: np.ndarray | None = None
) -> tuple[float, float]:
    """Percentiles of `sample` (of its `valid` pixels when given); pass the image subsampled by
    percentile_sample_step, which is cheaper and as good for a 0.5..99.5 range."""
    if valid is not None:
        sample = sample[valid]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    return float(lo), float(hi)


def lut_table(item, *, signed_input: bool) -> tuple[np.ndarray, int, int]:
    """(entries as float32, first mapped input value, bits per entry) of a Modality or VOI LUT item.

    Written here rather than through pydicom 2.4's apply_voi / apply_modality_lut: apply_voi
    indexes with the LUT's entry type, so an 8-bit LUT with more than 256 entries wraps around
    (a test computes the standard's result and caught it), and apply_modality_lut cannot build
    10..15-bit tables. LUT Descriptor (PS3.3 C.11.1.1 / C.11.2.1.1): number of entries (0 means
    65536), first mapped input value (signed when the pixels are), bits per entry.
    """
    descriptor = [int(v) for v in item.LUTDescriptor]
    entries = descriptor[0] or 65536
    first = descriptor[1]
    if signed_input and first > 32767:
        first -= 65536
    bits = descriptor[2]
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):
        table = np.frombuffer(data, dtype="<u2" if len(data) >= 2 * entries else np.uint8)
    else:
        table = np.asarray(data if hasattr(data, "__len__") else [data])
    table = table[:entries].astype(np.float32)
    return table, first, bits


def apply_lut(values: np.ndarray, table: np.ndarray, first: int) -> np.ndarray:
    """PS3.3 C.11.1.1: inputs below `first` take the first entry, beyond the table the last."""
    if values.dtype.kind == "f":
        index = np.rint(values).astype(np.int64)
    elif first != 0 or values.dtype.kind == "i":
        index = values.astype(np.int64)
    else:
        index = values
    if first != 0:
        index = index - first
    return np.take(table, index, mode="clip")


@dataclass(frozen=True)
class Transform:
    """A pointwise map of stored values (an array of any shape) to float32 display values 0..1.

    `cheap`: a single pass such as one division, which numpy does faster than one table gather
    (4432 x 2864 pixels: ~11 ms against ~18 ms). Anything more is tabled: a LINEAR window's
    multiply-add-clip takes as long as the gather on an idle machine and longer on a busy one
    (three passes over the float image against one), SIGMOID, LUT sequences and logarithms far
    longer.
    """

    apply: Callable[[np.ndarray], np.ndarray]
    cheap: bool = False

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(self.apply(values), dtype=np.float32)


def _unsigned_view(values: np.ndarray) -> np.ndarray:
    """The bits of integer `values` read as unsigned: the index of each value in a StoredTable."""
    return values.view(np.dtype(f"u{values.dtype.itemsize}"))


class StoredTable:
    """`transform` of every value an integer type of 8 or 16 bits can hold, indexed by the value's
    bits read as unsigned (two's complement for signed pixels)."""

    def __init__(self, transform: Transform, dtype: np.dtype):
        dtype = np.dtype(dtype)
        codes = np.arange(1 << (8 * dtype.itemsize), dtype=f"u{dtype.itemsize}").view(dtype)
        self.dtype = dtype
        self.values = np.ascontiguousarray(transform(codes), dtype=np.float32)

    @staticmethod
    def applicable(stored: np.ndarray) -> bool:
        return stored.dtype.kind in "ui" and stored.dtype.itemsize <= 2

    def __call__(self, stored: np.ndarray) -> np.ndarray:
        """A new float32 array of stored's shape: one gather, in chunks (np.take copies its
        indices to intp first; chunks keep that copy in the cache). mode="wrap" skips the bounds
        error path and never wraps: the table holds every index the stored type can hold."""
        index = _unsigned_view(np.ascontiguousarray(stored, dtype=self.dtype))
        out = np.empty(index.shape, np.float32)
        flat_index, flat_out = index.reshape(-1), out.reshape(-1)
        for start in range(0, flat_index.size, _TAKE_CHUNK):
            stop = start + _TAKE_CHUNK
            np.take(self.values, flat_index[start:stop], out=flat_out[start:stop], mode="wrap")
        return out


def evaluate(transform: Transform, stored: np.ndarray, method: str | None = None) -> np.ndarray:
    """transform(stored) as a new float32 array: through a StoredTable ("table") or on the pixels
    ("direct"); by default ("auto", or EVALUATION) the table for large integer images whose
    transform is not cheap. Both give the same numbers: the table is made by the same code."""
    method = method or EVALUATION
    if method == "auto":
        large = stored.size >= TABLE_MIN_PIXELS
        method = "table" if large and not transform.cheap and StoredTable.applicable(stored) else "direct"
    if method == "table" and StoredTable.applicable(stored):
        return StoredTable(transform, stored.dtype)(stored)
    return transform(stored)

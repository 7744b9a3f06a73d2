"""Square regions of interest around a calcification, in pixels or millimetres.

A crop always knows where it came from: `to_source` maps its pixel (x, y, 1) to the stored pixel
grid of the source file (through any orientation flip of the image), so a saliency map computed
on the crop can be pasted back onto the full mammogram with `RoiCrop.paste`.

Conventions (docs/DESIGN.md): x = column, y = row, pixel centres at integers. A crop of N pixels
sized in pixels is taken without resampling; its pixel (N // 2, N // 2) is the source pixel
nearest the requested centre. A crop sized in millimetres is resampled (linear interpolation,
Gaussian anti-aliasing first when it shrinks) so that the requested centre falls exactly on the
crop's centre, (N - 1) / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from microcalcai_logic.contract import crop_origin

from microcalcai.errors import InputError
from microcalcai.io.image import DeferredPixels, Mammogram, map_point

# numpy.pad's names; scipy.ndimage calls the same extensions differently.
PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")
MAX_CROP_PX = 16384


@dataclass
class RoiCrop:
    """A square crop. `to_source`: crop pixel (x, y, 1) -> source stored pixel (x, y, 1)."""

    pixels: np.ndarray
    center_xy: tuple[float, float]
    size_px: int
    spacing_mm: tuple[float, float] | None
    pad_mode: str
    to_source: np.ndarray
    source_path: Path | None = None
    size_mm: float | None = None
    padded: bool = False
    metadata: dict = field(default_factory=dict)

    def crop_to_source(self, x: float, y: float) -> tuple[float, float]:
        return map_point(self.to_source, x, y)

    def source_to_crop(self, x: float, y: float) -> tuple[float, float]:
        return map_point(self.to_source, x, y, inverse=True)

    def paste(self, map_: np.ndarray, source_shape: tuple[int, int]) -> np.ndarray:
        """Resample a map computed on this crop onto the full source grid; NaN outside the ROI.

        `map_` may have another size than the crop (a saliency map at the network's input size):
        it is taken to cover the crop exactly. Linear interpolation; source pixels whose centre
        falls inside the crop's footprint get a value.
        """
        from scipy.ndimage import map_coordinates

        map_ = np.asarray(map_, dtype=np.float32)
        if map_.ndim != 2:
            raise InputError(f"paste: the map must be 2D; got shape {map_.shape}")
        rows, cols = (int(n) for n in source_shape)
        out = np.full((rows, cols), np.nan, dtype=np.float32)
        n = self.size_px
        corners = np.array([[-0.5, -0.5, 1], [n - 0.5, -0.5, 1], [-0.5, n - 0.5, 1], [n - 0.5, n - 0.5, 1]]).T
        src = self.to_source @ corners
        x_lo, x_hi = max(0, math.floor(src[0].min())), min(cols - 1, math.ceil(src[0].max()))
        y_lo, y_hi = max(0, math.floor(src[1].min())), min(rows - 1, math.ceil(src[1].max()))
        if x_lo > x_hi or y_lo > y_hi:
            return out
        ys, xs = np.mgrid[y_lo : y_hi + 1, x_lo : x_hi + 1].astype(np.float64)
        inverse = np.linalg.inv(self.to_source)
        cx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
        cy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
        inside = (cx >= -0.5) & (cx <= n - 0.5) & (cy >= -0.5) & (cy <= n - 0.5)
        # Crop pixel coordinates -> map pixel coordinates (both grids cover the same square).
        mx = (cx + 0.5) * (map_.shape[1] / n) - 0.5
        my = (cy + 0.5) * (map_.shape[0] / n) - 0.5
        values = map_coordinates(map_, [my, mx], order=1, mode="nearest")
        out[y_lo : y_hi + 1, x_lo : x_hi + 1] = np.where(inside, values, np.nan)
        return out


def _check_size(value: float | None, name: str, path) -> None:
    if value is None:
        return
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{path}: the ROI {name} must be a positive number; got {value!r}")


def _padded_indices(length: int, start: int, count: int, pad_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices into an axis of `length` for positions start..start+count-1, extended past the
    image edges with numpy.pad's semantics for `pad_mode`; and a mask of positions inside."""
    before, after = max(0, -start), max(0, start + count - length)
    positions = np.arange(length)
    if pad_mode == "constant":
        extended = np.pad(positions, (before, after), mode="constant", constant_values=-1)
    else:
        extended = np.pad(positions, (before, after), mode=pad_mode)
    window = extended[start + before : start + before + count]
    return np.clip(window, 0, length - 1), window >= 0


def _take(
    pixels: np.ndarray | DeferredPixels,
    x0: int,
    y0: int,
    width: int,
    height: int,
    pad_mode: str,
    pad_value: float,
) -> tuple[np.ndarray, bool]:
    """pixels[y0:y0+height, x0:x0+width], padded with `pad_mode` where it leaves the image.

    `pixels` may be an image's DeferredPixels: then only the crop's stored pixels are windowed."""
    rows, cols = pixels.shape
    if x0 >= 0 and y0 >= 0 and x0 + width <= cols and y0 + height <= rows:
        return np.array(pixels[y0 : y0 + height, x0 : x0 + width], dtype=np.float32), False
    row_idx, row_in = _padded_indices(rows, y0, height, pad_mode)
    col_idx, col_in = _padded_indices(cols, x0, width, pad_mode)
    out = pixels[np.ix_(row_idx, col_idx)].astype(np.float32)
    if pad_mode == "constant":
        out[~(row_in[:, None] & col_in[None, :])] = pad_value
    return out, True


def crop_roi(
    image: Mammogram,
    center_xy: tuple[float, float],
    *,
    size_px: int | None = None,
    size_mm: float | None = None,
    spacing_mm: float | None = None,
    pad_mode: str = "constant",
    pad_value: float = 0.0,
) -> RoiCrop:
    """A square crop of `image` centred at `center_xy` (stored pixel coordinates of the source).

    Give `size_px` (N pixels, no resampling), or `size_mm` (resampled to `spacing_mm` per pixel,
    default the image's own finer spacing), or both (N pixels covering `size_mm`: the spacing is
    size_mm / N). Where the square leaves the image it is padded: `pad_mode` is one of PAD_MODES
    (numpy.pad's meaning; "constant" fills `pad_value`, 0 = air), recorded in the crop.
    """
    path = image.source_path or "image"
    if pad_mode not in PAD_MODES:
        raise InputError(f"pad_mode {pad_mode!r} is not one of {', '.join(PAD_MODES)}")
    if size_px is None and size_mm is None:
        raise InputError(
            "give the ROI size in pixels (size_px / --size) or in millimetres (size_mm / --size-mm)"
        )
    _check_size(size_px, "size in pixels", path)
    _check_size(size_mm, "size in mm", path)
    _check_size(spacing_mm, "target spacing in mm", path)
    if size_px is not None and int(size_px) != size_px:
        raise InputError(f"{path}: the ROI size in pixels must be a whole number; got {size_px!r}")
    try:
        cx_src, cy_src = (float(v) for v in center_xy)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the ROI centre must be two numbers x,y; got {center_xy!r}") from exc
    rows, cols = image.shape
    px, py = image.stored_to_pixel(cx_src, cy_src)
    if not (np.isfinite(px) and np.isfinite(py) and -0.5 <= px <= cols - 0.5 and -0.5 <= py <= rows - 0.5):
        raise InputError(
            f"{path}: the ROI centre x={cx_src:g}, y={cy_src:g} is outside the image "
            f"({cols} columns x {rows} rows; "
            f"x is the column 0..{cols - 1}, y the row 0..{rows - 1}, from the top-left of the stored image)"
        )

    target = _target_spacing(image, size_px, size_mm, spacing_mm, path)
    if target is None:  # pixel-sized crop, no resampling
        n = int(size_px)
        return _pixel_crop(image, (cx_src, cy_src), (px, py), n, pad_mode, pad_value, None, None)
    n = int(size_px) if size_px is not None else max(1, int(round(size_mm / target)))
    if n > MAX_CROP_PX:
        raise InputError(
            f"{path}: the ROI would be {n} x {n} pixels (limit {MAX_CROP_PX}); "
            "choose a smaller size or a coarser spacing"
        )
    row_sp, col_sp = image.spacing_mm  # type: ignore[misc]
    if math.isclose(target, row_sp, rel_tol=1e-9) and math.isclose(target, col_sp, rel_tol=1e-9):
        # Same grid: an exact, unresampled crop.
        return _pixel_crop(
            image, (cx_src, cy_src), (px, py), n, pad_mode, pad_value, (target, target), n * target
        )
    return _resampled_crop(image, (cx_src, cy_src), (px, py), n, target, pad_mode, pad_value)


def _target_spacing(image: Mammogram, size_px, size_mm, spacing_mm, path) -> float | None:
    if size_mm is None:
        if spacing_mm is not None:
            raise InputError(
                "a target spacing (spacing_mm / --spacing-mm) needs the ROI size in mm (--size-mm)"
            )
        return None
    if image.spacing_mm is None:
        raise InputError(
            f"{path}: the image has no pixel spacing, so a size in mm cannot be converted to pixels; "
            "give the size in pixels (--size N), or the image's spacing if you know it "
            "(--image-spacing-mm, or read_image(..., default_spacing_mm=...))"
        )
    if size_px is not None:
        implied = size_mm / int(size_px)
        if spacing_mm is not None and not math.isclose(implied, spacing_mm, rel_tol=1e-6):
            raise InputError(
                f"size {size_px} px, size {size_mm} mm and spacing {spacing_mm} mm disagree "
                f"({size_mm} / {size_px} = {implied:g} mm); give two of the three"
            )
        return implied
    return float(spacing_mm) if spacing_mm is not None else float(min(image.spacing_mm))


def _pixel_crop(image, center_src, center_px, n, pad_mode, pad_value, spacing, size_mm) -> RoiCrop:
    if n > MAX_CROP_PX:
        raise InputError(
            f"{image.source_path or 'image'}: the ROI size {n} px exceeds the limit {MAX_CROP_PX}"
        )
    x0, y0 = crop_origin(center_px[0], n), crop_origin(center_px[1], n)
    pixels, padded = _take(image.lazy_pixels, x0, y0, n, n, pad_mode, pad_value)
    crop_to_image = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    return RoiCrop(
        pixels=pixels,
        center_xy=center_src,
        size_px=n,
        spacing_mm=spacing if spacing is not None else image.spacing_mm,
        pad_mode=pad_mode,
        to_source=image.to_stored @ crop_to_image,
        source_path=image.source_path,
        size_mm=size_mm,
        padded=padded,
        metadata={"resampled": False, "pad_value": pad_value},
    )


def _resampled_crop(image, center_src, center_px, n, target, pad_mode, pad_value) -> RoiCrop:
    from scipy.ndimage import gaussian_filter, map_coordinates

    row_sp, col_sp = image.spacing_mm
    step = np.array([target / row_sp, target / col_sp])  # source pixels per crop pixel (rows, cols)
    half = (n - 1) / 2.0
    # Anti-aliasing before shrinking, with the sigma scikit-image's resize uses: (factor - 1) / 2.
    sigma = np.maximum(0.0, (step - 1.0) / 2.0)
    margin = np.ceil(4.0 * sigma + 2.0).astype(int)
    y_first, x_first = center_px[1] - half * step[0], center_px[0] - half * step[1]
    y0, x0 = int(math.floor(y_first)) - margin[0], int(math.floor(x_first)) - margin[1]
    height = int(math.ceil((n - 1) * step[0])) + 2 * margin[0] + 2
    width = int(math.ceil((n - 1) * step[1])) + 2 * margin[1] + 2
    region, padded = _take(image.lazy_pixels, x0, y0, width, height, pad_mode, pad_value)
    if np.any(sigma > 0):
        region = gaussian_filter(region, sigma=sigma, mode="nearest")
    grid = np.arange(n, dtype=np.float64)
    ys = (y_first - y0) + grid * step[0]
    xs = (x_first - x0) + grid * step[1]
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    pixels = map_coordinates(region, [yy, xx], order=1, mode="nearest").astype(np.float32)
    rows, cols = image.shape
    y_last, x_last = y_first + (n - 1) * step[0], x_first + (n - 1) * step[1]
    padded = padded and (x_first < 0 or y_first < 0 or x_last > cols - 1 or y_last > rows - 1)
    crop_to_image = np.array([[step[1], 0.0, x_first], [0.0, step[0], y_first], [0.0, 0.0, 1.0]])
    return RoiCrop(
        pixels=pixels,
        center_xy=center_src,
        size_px=n,
        spacing_mm=(target, target),
        pad_mode=pad_mode,
        to_source=image.to_stored @ crop_to_image,
        source_path=image.source_path,
        size_mm=n * target,
        padded=padded,
        metadata={
            "resampled": True,
            "interpolation": "linear",
            "antialias_sigma_px": [float(s) for s in sigma],
            "pad_value": pad_value,
        },
    )

"""PNG, PGM (Pillow), TIFF (tifffile) and NRRD (pynrrd) -> Mammogram.

Grey levels are taken as displayed: brighter = denser, like MONOCHROME2 (TIFF's MINISWHITE is
inverted, like MONOCHROME1). Integers are scaled by the full range of their type (8-bit by 255,
16-bit by 65535; Pillow already scales a PGM's maxval to that range), floats already in 0..1 are
kept and other floats are scaled min..max. NRRD volumes from 3D Slicer hold stored values
without a display window: key/value fields `window_center`/`window_width` (and `photometric`,
`laterality`, `view`) are honoured when present; otherwise integers are scaled min..max.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from microcalcai.errors import InputError
from microcalcai.io.image import Mammogram
from microcalcai.io.intensity import Window, apply_window, scale_range

MM_PER_INCH = 25.4


def _pillow_header(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except UnidentifiedImageError as exc:
        raise InputError(f"{path}: not a readable PNG/PGM image ({exc}); the file is corrupt") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: corrupt image header ({exc}); re-export the image") from exc


def _pillow_spacing(image) -> tuple[tuple[float, float] | None, str | None]:
    # Pillow reports PNG's pHYs as dpi only when its unit is the metre (so the size is physical).
    dpi = image.info.get("dpi")
    if not dpi or min(float(d) for d in dpi) <= 0:
        return None, None
    x_dpi, y_dpi = (float(d) for d in dpi)
    return (MM_PER_INCH / y_dpi, MM_PER_INCH / x_dpi), f"{image.format.lower()}:pHYs"


def _grey_from_pillow(image, path: Path) -> tuple[np.ndarray, float]:
    """(grey array, full-scale value) from a decoded Pillow image."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "P", "LA", "PA"):
        rgb = np.asarray(image.convert("RGB"))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(
                f"{path}: a colour ({mode}) image; mammograms are greyscale: give the original grey image"
            )
        return rgb[..., 0], 255.0
    arr = np.asarray(image)
    if mode == "1":
        return arr.astype(np.uint8), 1.0
    if mode == "L":
        return arr, 255.0
    if mode.startswith("I;16"):
        return arr.astype(np.uint16, copy=False), 65535.0
    if mode == "I":
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            return arr, float("nan")  # scaled min..max below
        return arr.astype(np.uint16), 65535.0
    if mode == "F":
        return arr, float("nan")
    raise InputError(f"{path}: image mode {mode!r} is not a grey image; convert it to 8- or 16-bit grey")


def _finite_range(arr: np.ndarray) -> tuple[float, float]:
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def _fill_non_finite(arr: np.ndarray) -> np.ndarray:
    """Float rasters may mark background with NaN (or carry an infinity): NaN and -inf become the
    darkest finite value, +inf the brightest, so that windowing and crops stay finite."""
    if arr.dtype.kind != "f" or np.isfinite(arr).all():
        return arr
    lo, hi = _finite_range(arr)
    return np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)


def _to_unit(arr: np.ndarray, full_scale: float, *, invert: bool = False) -> tuple[np.ndarray, str]:
    if arr.dtype.kind == "f" or not np.isfinite(full_scale):
        lo, hi = _finite_range(arr)
        if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
        out = scale_range(_fill_non_finite(arr), lo, hi, invert=invert)
        return out, f"linear {lo:g}..{hi:g}"
    return scale_range(
        arr, 0.0, full_scale, invert=invert
    ), f"linear 0..{full_scale:g} (full range of the type)"


def read_pillow(path: Path, fmt: str) -> Mammogram:
    image = _pillow_header(path)
    with image:
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(
                f"{path}: the {fmt.upper()} pixel data could not be decoded ({exc}); "
                "the file is truncated or corrupt: copy or export it again"
            ) from exc
        arr, full_scale = _grey_from_pillow(image, path)
        spacing_mm, source = _pillow_spacing(image)
        mode = image.mode
    pixels, scaling = _to_unit(arr, full_scale)
    metadata = {
        "format": fmt,
        "rows": arr.shape[0],
        "columns": arr.shape[1],
        "mode": mode,
        "bits_stored": 8 * arr.dtype.itemsize if arr.dtype.kind in "ui" else None,
        "photometric": "MONOCHROME2",
        "voi": scaling,
    }
    return Mammogram(
        pixels=pixels, spacing_mm=spacing_mm, spacing_source=source, source_path=path, metadata=metadata
    )


def _tiff_page(tif, path: Path):
    if not tif.pages:
        raise InputError(f"{path}: the TIFF file holds no image")
    return tif.pages[0]


def _tiff_spacing(page) -> tuple[tuple[float, float] | None, str | None]:
    tags = page.tags
    unit_tag = tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    mm_per_unit = {2: MM_PER_INCH, 3: 10.0}.get(unit)  # 1 = no absolute unit
    x_tag, y_tag = tags.get("XResolution"), tags.get("YResolution")
    if mm_per_unit is None or x_tag is None or y_tag is None:
        return None, None

    def per_unit(value) -> float:
        num, den = value if isinstance(value, tuple) else (value, 1)
        return float(num) / float(den) if den else 0.0

    x_res, y_res = per_unit(x_tag.value), per_unit(y_tag.value)
    if x_res <= 0 or y_res <= 0:
        return None, None
    return (mm_per_unit / y_res, mm_per_unit / x_res), "tiff:resolution"


def _tiff_photometric(page) -> str:
    return "MONOCHROME1" if int(page.photometric) == 0 else "MONOCHROME2"  # 0 = MINISWHITE


def _open_tiff(path: Path):
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError, struct.error) as exc:
        raise InputError(f"{path}: corrupt TIFF header ({exc}); re-export the image") from exc


def read_tiff(path: Path) -> Mammogram:
    with _open_tiff(path) as tif:
        page = _tiff_page(tif, path)
        try:
            arr = page.asarray()
        except Exception as exc:  # tifffile and its codecs raise many types
            raise InputError(
                f"{path}: the TIFF pixel data could not be decoded ({type(exc).__name__}: {exc}); "
                "the file is truncated or corrupt: copy or export it again"
            ) from exc
        spacing_mm, source = _tiff_spacing(page)
        photometric = _tiff_photometric(page)
        bits = int(page.bitspersample)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise InputError(f"{path}: a colour TIFF; mammograms are greyscale: give the original grey image")
        arr = arr[..., 0]
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise InputError(f"{path}: the TIFF image has shape {arr.shape}; a single 2D grey image is needed")
    full_scale = (
        float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2 else float("nan")
    )
    pixels, scaling = _to_unit(arr, full_scale, invert=photometric == "MONOCHROME1")
    metadata = {
        "format": "tiff",
        "rows": arr.shape[0],
        "columns": arr.shape[1],
        "bits_stored": bits,
        "photometric": photometric,
        "voi": scaling,
    }
    return Mammogram(
        pixels=pixels, spacing_mm=spacing_mm, spacing_source=source, source_path=path, metadata=metadata
    )


def _nrrd_header(path: Path) -> dict[str, Any]:
    import nrrd

    try:
        return nrrd.read_header(str(path))
    except (nrrd.NRRDError, OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: corrupt NRRD header ({exc}); re-save the volume") from exc


def _nrrd_geometry(
    header: dict[str, Any], path: Path
) -> tuple[list[int], tuple[float, float] | None, str | None]:
    """The two image axes in C order (among the file's axes) and their (row, col) spacing."""
    if "sizes" not in header or "type" not in header:
        raise InputError(
            f"{path}: corrupt NRRD header (the required 'sizes' or 'type' field is missing); "
            "re-save the volume"
        )
    sizes = [int(s) for s in header["sizes"]]
    spatial = [i for i, s in enumerate(sizes) if s > 1]
    if len(spatial) != 2:
        raise InputError(
            f"{path}: the NRRD image has sizes {sizes}; a single 2D image (other axes of size 1) is needed"
        )
    per_axis: list[float | None] = [None] * len(sizes)
    source = None
    directions = header.get("space directions")
    if directions is not None:
        for i, vector in enumerate(directions):
            vector = np.asarray(vector, dtype=float)
            if vector.size and np.all(np.isfinite(vector)):
                per_axis[i] = float(np.linalg.norm(vector))
        source = "nrrd:space directions"
    elif header.get("spacings") is not None:
        per_axis = [float(s) if np.isfinite(s) else None for s in header["spacings"]]
        source = "nrrd:spacings"
    # The file's first axis varies fastest: it is the column axis.
    col_axis, row_axis = spatial
    row_sp, col_sp = per_axis[row_axis], per_axis[col_axis]
    if row_sp and col_sp and row_sp > 0 and col_sp > 0:
        return spatial, (row_sp, col_sp), source
    return spatial, None, None


def _nrrd_type_bits(type_name: str) -> int | None:
    """Bits of an NRRD "type" field (its specification lists these spellings)."""
    words = type_name.lower().replace("_t", "").split()
    name = words[-1] if words else ""
    bits = {
        "char": 8,
        "int8": 8,
        "uchar": 8,
        "uint8": 8,
        "short": 16,
        "int16": 16,
        "ushort": 16,
        "uint16": 16,
        "int": 32,
        "int32": 32,
        "uint": 32,
        "uint32": 32,
        "longlong": 64,
        "int64": 64,
        "ulonglong": 64,
        "uint64": 64,
        "float": 32,
        "double": 64,
    }
    if name == "long" and len(words) > 1 and words[-2] == "long":
        return 64
    return bits.get(name)


def read_nrrd(path: Path) -> Mammogram:
    import nrrd

    header = _nrrd_header(path)
    _axes, spacing_mm, source = _nrrd_geometry(header, path)
    try:
        data, header = nrrd.read(str(path), index_order="C")
    except Exception as exc:  # pynrrd raises NRRDError, ValueError, zlib/gzip errors, EOFError
        raise InputError(
            f"{path}: the NRRD data could not be read ({type(exc).__name__}: {exc}); "
            "the file is truncated or corrupt: save it again"
        ) from exc
    arr = np.squeeze(data)
    if arr.ndim != 2:
        raise InputError(f"{path}: the NRRD data has shape {data.shape}; a single 2D image is needed")
    arr = _fill_non_finite(arr)
    photometric = str(header.get("photometric", "MONOCHROME2")).upper()
    invert = photometric == "MONOCHROME1"
    if "window_center" in header and "window_width" in header:
        window = Window(float(header["window_center"]), float(header["window_width"]), "LINEAR")
        pixels, scaling = apply_window(arr, window, invert=invert), window.describe()
    else:
        pixels, scaling = _to_unit(arr, float("nan"), invert=invert)
    laterality = str(header.get("laterality", "")).upper() or None
    view = str(header.get("view", "")).upper() or None
    metadata = {
        "format": "nrrd",
        "rows": arr.shape[0],
        "columns": arr.shape[1],
        "bits_stored": 8 * arr.dtype.itemsize if arr.dtype.kind in "ui" else None,
        "photometric": photometric,
        "voi": scaling,
        "laterality_source": "nrrd:laterality" if laterality else None,
        "view_source": "nrrd:view" if view else None,
    }
    return Mammogram(
        pixels=pixels,
        spacing_mm=spacing_mm,
        spacing_source=source,
        laterality=laterality if laterality in ("L", "R") else None,
        view=view,
        source_path=path,
        metadata=metadata,
    )


def _pgm_maxval(path: Path) -> int | None:
    """The maxval field of a PGM header (Pillow rescales it away): 255, 4095, 65535, ..."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    tokens: list[bytes] = []
    for line in head.split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 4:
            break
    try:
        return int(tokens[3])
    except (IndexError, ValueError):
        return None


def inspect_raster(path: Path, fmt: str) -> dict[str, Any]:
    """The inspect fields of a PNG/PGM/TIFF/NRRD file, from its header only."""
    info: dict[str, Any] = {
        "modality": None,
        "presentation_intent": None,
        "laterality": None,
        "view": None,
        "photometric": "MONOCHROME2",
    }
    if fmt in ("png", "pgm"):
        image = _pillow_header(path)
        with image:
            info["columns"], info["rows"] = image.size
            info["bits_stored"] = 16 if image.mode.startswith("I") else 8
            spacing_mm, source = _pillow_spacing(image)
        if fmt == "pgm":
            maxval = _pgm_maxval(path)
            info["bits_stored"] = int(maxval).bit_length() if maxval else info["bits_stored"]
    elif fmt == "tiff":
        with _open_tiff(path) as tif:
            page = _tiff_page(tif, path)
            info["rows"], info["columns"] = int(page.imagelength), int(page.imagewidth)
            info["bits_stored"] = int(page.bitspersample)
            info["photometric"] = _tiff_photometric(page)
            spacing_mm, source = _tiff_spacing(page)
    else:
        header = _nrrd_header(path)
        axes, spacing_mm, source = _nrrd_geometry(header, path)
        sizes = [int(s) for s in header["sizes"]]
        info["columns"], info["rows"] = sizes[axes[0]], sizes[axes[1]]
        info["bits_stored"] = _nrrd_type_bits(str(header.get("type", "")))
        info["photometric"] = str(header.get("photometric", "MONOCHROME2")).upper()
        info["laterality"] = str(header.get("laterality", "")).upper() or None
        info["view"] = str(header.get("view", "")).upper() or None
    info["pixel_spacing_mm"] = list(spacing_mm) if spacing_mm else None
    info["spacing_source"] = source
    return info

"""`read_image` and `inspect_file`: one door for every mammogram format the project reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from microcalcai.errors import InputError
from microcalcai.io.image import Mammogram

FORMATS = ("dicom", "png", "tiff", "pgm", "nrrd")
INSPECT_KEYS = (
    "modality",
    "rows",
    "columns",
    "bits_stored",
    "photometric",
    "presentation_intent",
    "pixel_spacing_mm",
    "spacing_source",
    "laterality",
    "view",
)


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give one image file")
    return path


def sniff_format(path: str | os.PathLike) -> str:
    """The format of `path` from its first bytes (not its name), or InputError."""
    from microcalcai.io.dicom_read import looks_like_dicom

    path = _existing_file(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the file ({exc.strerror}); check the permissions") from exc
    if not head:
        raise InputError(f"{path}: the file is empty; copy it again from its source")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] in (b"P2", b"P5") and head[2:3].isspace():
        return "pgm"
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if looks_like_dicom(head):
        return "dicom"
    raise InputError(
        f"{path}: not an image this tool reads (first bytes {head[:8]!r}); give a DICOM, PNG, TIFF, "
        "PGM or NRRD mammogram"
    )


def read_image(
    path: str | os.PathLike,
    *,
    orient: bool = False,
    for_processing: str = "auto",
    voi: str = "auto",
    window_index: int = 0,
    frame: int = 0,
    default_spacing_mm: tuple[float, float] | float | None = None,
) -> Mammogram:
    """Read a mammogram as float32 0..1, higher = denser, in its stored pixel grid.

    DICOM: modality LUT, then VOI (`voi`: "auto" = the VOI LUT Sequence if present, else window
    `window_index`, else the full stored range; "window", "lut" or "none" to choose), then
    MONOCHROME1 inversion. For Processing images: `for_processing` "auto" uses the file's window
    when it has one, else the documented percentile normalisation ("percentile" forces it,
    "window" requires a window). `frame` picks one frame of a multi-frame file.
    `default_spacing_mm` is used only when the file carries no spacing (mini-MIAS PGMs are 0.2 mm);
    `spacing_source` is then "user". `orient=True` flips so the chest wall is on the left and
    records the flip in `to_stored`.
    """
    fmt = sniff_format(path)
    path = Path(path)
    if fmt == "dicom":
        from microcalcai.io.dicom_read import read_dicom

        image = read_dicom(
            path, for_processing=for_processing, voi=voi, window_index=window_index, frame=frame
        )
    elif fmt in ("png", "pgm"):
        from microcalcai.io.raster import read_pillow

        image = read_pillow(path, fmt)
    elif fmt == "tiff":
        from microcalcai.io.raster import read_tiff

        image = read_tiff(path)
    else:
        from microcalcai.io.raster import read_nrrd

        image = read_nrrd(path)
    if image.spacing_mm is None and default_spacing_mm is not None:
        image.spacing_mm = _spacing_pair(default_spacing_mm)
        image.spacing_source = "user"
    if orient:
        from microcalcai.io.orient import orient_chest_wall_left

        image = orient_chest_wall_left(image)
    return image


def _spacing_pair(value: tuple[float, float] | float) -> tuple[float, float]:
    pair = (float(value), float(value)) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if len(pair) != 2 or min(pair) <= 0:
        raise InputError(f"default_spacing_mm={value!r} must be one or two positive numbers (mm)")
    return pair  # type: ignore[return-value]


def inspect_file(path: str | os.PathLike) -> dict[str, Any]:
    """The header facts of an image, without decoding its pixels; keys are INSPECT_KEYS."""
    fmt = sniff_format(path)
    path = Path(path)
    if fmt == "dicom":
        from microcalcai.io import dicom_read as dr

        ds = dr.open_dicom(path)
        header = dr.check_image_header(ds, path, check_decoder=False)
        spacing_mm, source = dr.spacing(ds, path)
        info = {
            "modality": str(ds.get("Modality", "")) or None,
            "rows": header["rows"],
            "columns": header["columns"],
            "bits_stored": header["bits_stored"],
            "photometric": header["photometric"],
            "presentation_intent": dr.presentation_intent(ds),
            "pixel_spacing_mm": list(spacing_mm) if spacing_mm else None,
            "spacing_source": source,
            "laterality": dr.laterality(ds)[0],
            "view": dr.view(ds)[0],
        }
    else:
        from microcalcai.io.raster import inspect_raster

        info = inspect_raster(path, fmt)
    return {key: info.get(key) for key in INSPECT_KEYS}

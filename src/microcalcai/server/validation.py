"""Checks on what clients send, done before any expensive work.

Each check raises a `RequestError` whose message names the parameter or file and says what to
do, so the client gets a 4xx JSON answer and the server keeps serving.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from microcalcai_logic.contract import DEFAULT_ROI_SIZE, MAX_IMAGE_SIDE, MAX_ROI_SIZE, MIN_ROI_SIZE, PixelRoi

from microcalcai.server.errors import RequestError, TooLarge, UnsupportedMedia

# Decoding holds the decoder's buffer, the stored integers and the float32 image at once: about
# 12 bytes per pixel at the peak. The pixel limit follows from the memory a decode may take.
DECODE_BYTES_PER_PIXEL = 12
DEFAULT_DECODE_BUDGET_MB = 1024
MAX_ID_LENGTH = 128  # DICOM UIDs are at most 64 characters; uploaded names are shorter still
MAX_TAG_LENGTH = 64

_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._\-]*")
_TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")


def decode_budget_bytes() -> int:
    """Memory one image decode may take: MICROCALCAI_DECODE_BUDGET_MB (default 1024), and never
    more than a quarter of the machine's memory."""
    try:
        budget = int(os.environ.get("MICROCALCAI_DECODE_BUDGET_MB", DEFAULT_DECODE_BUDGET_MB)) << 20
    except ValueError:
        budget = DEFAULT_DECODE_BUDGET_MB << 20
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = 0
    return min(budget, physical // 4) if physical > 0 else budget


def max_upload_pixels() -> int:
    """The most pixels an uploaded or stored image may have for the server to decode it."""
    return max(1, decode_budget_bytes() // DECODE_BYTES_PER_PIXEL)


def parse_roi(value, *, where: str = "params.roi") -> PixelRoi:
    """Read `{"x": .., "y": .., "size": ..}` and check its types and ranges."""
    if not isinstance(value, dict):
        raise RequestError(
            f'{where} must be an object like {{"x": 120, "y": 80, "size": 256}}, got {value!r}'
        )
    unknown = set(value) - {"x", "y", "size"}
    if unknown:
        raise RequestError(f"{where} has unknown keys {sorted(unknown)}; use x, y and size")
    coords = {}
    for key in ("x", "y"):
        if key not in value:
            raise RequestError(
                f"{where}.{key} is missing; give the ROI centre in stored pixels (x = column, y = row)"
            )
        number = _finite(value[key])
        if number is None:
            raise RequestError(f"{where}.{key} must be a finite number of pixels, got {_short(value[key])}")
        coords[key] = number
    size = value.get("size", DEFAULT_ROI_SIZE)
    number = _finite(size)
    if number is None or not number.is_integer():
        raise RequestError(f"{where}.size must be a whole number of pixels, got {_short(size)}")
    size = int(number)
    if not MIN_ROI_SIZE <= size <= MAX_ROI_SIZE:
        raise RequestError(
            f"{where}.size must be between {MIN_ROI_SIZE} and {MAX_ROI_SIZE} pixels, got {size}"
        )
    return PixelRoi(coords["x"], coords["y"], size)


def _finite(value) -> float | None:
    """The value as a finite float, or None (bools, strings, huge integers like 10**400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _short(value, limit: int = 60) -> str:
    """repr of a client's value, cut so that an answer never echoes a huge input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_roi_inside(roi: PixelRoi, rows: int, cols: int, *, image: str) -> None:
    """The ROI's centre must lie on the image: a crop of pure padding classifies nothing."""
    if not (-0.5 <= roi.x <= cols - 0.5 and -0.5 <= roi.y <= rows - 0.5):
        raise RequestError(
            f"ROI centre (x={roi.x:g}, y={roi.y:g}) lies outside image {image!r} "
            f"of {cols} columns x {rows} rows; "
            f"x must be in 0..{cols - 1} and y in 0..{rows - 1} (stored pixel coordinates)"
        )


def parse_params(text) -> dict:
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"the params form field is not valid JSON ({exc}); send a JSON object") from None
    except RecursionError:
        raise RequestError("the params form field nests too deeply; send a flat JSON object") from None
    if not isinstance(value, dict):
        raise RequestError(f"the params form field must be a JSON object, got {type(value).__name__}")
    return value


def check_image_id(image_id: str, *, what: str = "image id") -> str:
    """A datastore id is a plain name: no folders, no '..', nothing that could leave the studies."""
    if not isinstance(image_id, str) or not image_id:
        raise RequestError("no image given: pass image=ID (see GET /datastore/?output=all) or upload a file")
    if len(image_id) > MAX_ID_LENGTH:
        raise RequestError(
            f"{what} of {len(image_id)} characters is longer than {MAX_ID_LENGTH}; "
            "use an id listed by GET /datastore/?output=all"
        )
    if "/" in image_id or "\\" in image_id or image_id in {".", ".."} or ".." in image_id.split("."):
        raise RequestError(
            f"{what} {_short(image_id)} contains a path; use an id listed by GET /datastore/?output=all"
        )
    if not _ID_PATTERN.fullmatch(image_id):
        raise RequestError(
            f"{what} {_short(image_id)} must start with a letter, digit or '_' and hold only letters, "
            "digits, '.', '_' and '-'; use an id listed by GET /datastore/?output=all"
        )
    return image_id


def check_tag(tag) -> str:
    """A label tag names a folder under the studies' labels/: a plain name, never a path."""
    if tag in (None, ""):
        return "final"
    if not isinstance(tag, str) or len(tag) > MAX_TAG_LENGTH or not _TAG_PATTERN.fullmatch(tag):
        raise RequestError(
            f"label tag {_short(tag)} must be a plain name of at most {MAX_TAG_LENGTH} letters, digits, "
            "'_' and '-' (not a path); annotators' labels use tag=final"
        )
    return tag


def sniff_format(path: Path, label: str | None = None) -> str:
    """The image format from the file's first bytes (names and declared types lie)."""
    with open(path, "rb") as handle:
        head = handle.read(132)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:4] == b"NRRD":
        return "nrrd"
    if head[:2] in (b"P2", b"P5"):
        return "pgm"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    raise UnsupportedMedia(
        f"{label or path.name} is not an image this server reads "
        "(DICOM with a 'DICM' preamble, PNG, PGM, NRRD or TIFF)"
    )


def header_shape(path: Path, fmt: str, label: str | None = None) -> tuple[int, int]:
    """Rows and columns as the header claims them, read without decoding any pixel."""
    label = label or path.name
    try:
        if fmt == "dicom":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if "Rows" not in ds or "Columns" not in ds:
                raise RequestError(f"{label}: DICOM without Rows/Columns; it holds no image")
            if "PixelData" not in ds and _dicom_has_no_pixels(path):
                raise RequestError(f"{label}: DICOM without pixel data")
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            if frames > 1:
                raise RequestError(f"{label}: DICOM with {frames} frames; send a 2D mammogram (one frame)")
            return int(ds.Rows), int(ds.Columns)
        if fmt == "png":
            return _png_shape(path, label)
        if fmt in ("pgm", "tiff"):
            from PIL import Image

            try:
                with Image.open(path) as img:  # lazy: reads the header only
                    cols, rows = img.size
            except Image.DecompressionBombError as exc:
                # PIL refuses huge headers itself; they are the same refusal as ours (413).
                raise TooLarge(
                    f"{label}: the header claims more pixels than this server decodes ({exc}); "
                    "crop the region of interest and upload that"
                ) from None
            return rows, cols
        if fmt == "nrrd":
            import nrrd

            header = nrrd.read_header(str(path))
            if any(key in header for key in ("data file", "datafile")):
                # a detached header names another file to read: never follow it on a server
                raise RequestError(f"{label}: NRRD with a detached data file; send one .nrrd with its data")
            sizes = [int(s) for s in header["sizes"]]
            sizes = [s for s in sizes if s != 1]
            if len(sizes) != 2:
                raise RequestError(f"{label}: NRRD of sizes {header['sizes']}; send a 2D image")
            return sizes[1], sizes[0]
    except RequestError:
        raise
    except Exception as exc:  # any parser failure on a header means the file is damaged
        raise RequestError(
            f"{label}: cannot read the {fmt.upper()} header ({exc}); the file is damaged"
        ) from None
    raise UnsupportedMedia(f"{label}: unsupported format {fmt}")


def _png_shape(path: Path, label: str) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG standard puts first; read by hand so
    that a hostile header is refused before any decoder (PIL's refuses such files as unidentified)."""
    import struct

    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise RequestError(f"{label}: PNG without an IHDR header; the file is damaged")
    cols, rows = struct.unpack(">II", head[16:24])
    return rows, cols


def _dicom_has_no_pixels(path: Path) -> bool:
    import pydicom

    ds = pydicom.dcmread(path, specific_tags=["PixelData"])
    return "PixelData" not in ds


def check_image_file(path: Path, *, name: str | None = None) -> tuple[str, int, int]:
    """Format and claimed shape of an image file, refusing non-images and oversized headers."""
    label = name or path.name
    if not path.is_file() or path.stat().st_size == 0:
        raise UnsupportedMedia(f"{label} is empty; upload a DICOM, PNG, PGM or NRRD image")
    fmt = sniff_format(path, label)
    rows, cols = header_shape(path, fmt, label)
    if rows <= 0 or cols <= 0:
        raise RequestError(f"{label}: header claims {cols} x {rows} pixels; the file is damaged")
    limit = max_upload_pixels()
    if rows > MAX_IMAGE_SIDE or cols > MAX_IMAGE_SIDE or rows * cols > limit:
        raise TooLarge(
            f"{label}: header claims {cols} x {rows} pixels, more than this server decodes "
            f"({MAX_IMAGE_SIDE} per side, {limit} in all, for {decode_budget_bytes() >> 20} MB of decoding "
            "memory); crop the region of interest and upload that"
        )
    return fmt, rows, cols

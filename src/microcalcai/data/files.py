"""Small file helpers the importers share: finding DICOMs, reading headers, image sizes, masks.

Importers need only sizes, a few header tags and the raw values of binary masks, never the
display pipeline of microcalcai.io (windowing, inversion), so these read with pydicom and
Pillow directly and stop before the pixel data wherever they can.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from microcalcai.errors import InputError

RASTER_SUFFIXES = {".png", ".tif", ".tiff", ".pgm", ".jpg", ".jpeg", ".bmp"}


def progress(iterable, *, desc: str, unit: str, total: int | None = None):
    """A progress bar on stderr while a terminal watches (silent in pipes and tests)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=None, leave=False)


def has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom(path: Path) -> bool:
    return path.suffix.lower() in {".dcm", ".dicom"} or (path.suffix == "" and has_dicom_preamble(path))


def walk_files(root: Path) -> Iterator[Path]:
    """Every regular file under root in a stable order (os.walk is the fastest walk here)."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def dicom_files(root: Path) -> list[Path]:
    return [p for p in walk_files(root) if is_dicom(p)]


def find_one(root: Path, names: tuple[str, ...], what: str, hint: str) -> Path:
    """The single file under root whose name (case-insensitive) is one of `names`."""
    wanted = {n.lower() for n in names}
    hits = [p for p in walk_files(root) if p.name.lower() in wanted]
    if not hits:
        raise InputError(f"no {what} ({' or '.join(names)}) found under {root}; {hint}")
    if len(hits) > 1:
        listed = ", ".join(str(h) for h in hits[:4])
        raise InputError(
            f"several {what} files found under {root} ({listed}); pass the one to use explicitly"
        )
    return hits[0]


def read_dicom_header(path: Path, tags: list[str] | None = None):
    """The DICOM data set without its pixel data (only `tags` when given, which is faster).

    InputError naming the file when it is not readable DICOM.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except (InvalidDicomError, OSError, EOFError, ValueError, AttributeError) as exc:
        raise InputError(f"{path} is not a readable DICOM file ({exc}); re-download or remove it") from exc


def image_shape(path: Path) -> tuple[int, int]:
    """(rows, columns) of a DICOM or raster image, read from its header only."""
    if is_dicom(path):
        header = read_dicom_header(path, ["Rows", "Columns"])
        try:
            return int(header.Rows), int(header.Columns)
        except AttributeError as exc:
            raise InputError(f"{path} has no Rows/Columns tags: it holds no image; remove it") from exc
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path} is not a readable image ({exc}); re-export it as PNG, TIFF or PGM") from exc
    return height, width


def read_mask(path: Path) -> np.ndarray:
    """A mask from a DICOM or raster image: every non-zero pixel is inside.

    The stored values come back as they are (no boolean copy): a full-field mask has ~13
    million pixels, and each extra pass over it costs as much as a fifth of its decode.
    """
    if is_dicom(path):
        import pydicom

        try:
            pixels = pydicom.dcmread(path).pixel_array
        except Exception as exc:  # pydicom raises many types for broken pixel data
            raise InputError(f"cannot decode the pixel data of mask {path} ({exc}); re-download it") from exc
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                pixels = np.asarray(image)
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{path} is not a readable mask image ({exc})") from exc
    if pixels.ndim == 3:  # RGB(A) masks: any channel set counts
        pixels = pixels.max(axis=-1)
    return pixels


def bounding_box_roi(mask: np.ndarray) -> tuple[float, float, int] | None:
    """Centre (x, y) of the bounding box of the mask's non-zero pixels and the box's longer side.

    None for an empty mask. The bounding box centre (not the centroid) is used so that a square
    crop of that side at that centre contains the whole outlined lesion.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))  # only the rows that have any
    return points_roi(np.array([[cols[0], rows[0]], [cols[-1], rows[-1]]], dtype=float))


def points_roi(points_xy: np.ndarray) -> tuple[float, float, int]:
    """Centre (x, y) of the bounding box of points and its longer side in pixels (>= 1)."""
    low, high = points_xy.min(axis=0), points_xy.max(axis=0)
    centre = (low + high) / 2.0
    side = int(np.ceil((high - low).max())) + 1
    return float(centre[0]), float(centre[1]), side


def read_table(
    path: Path, required: tuple[str, ...], what: str, *, sep: str | None = None, rename=None
) -> pd.DataFrame:
    """A data set's table (CSV with its delimiter sniffed unless given, or XLS/XLSX) as stripped text.

    rename: applied to every column name before the required ones are checked.
    """
    try:
        if path.suffix.lower() in {".xlsx", ".xls"}:
            table = pd.read_excel(path, dtype=str)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, engine="python")
    except ImportError as exc:  # .xls needs xlrd, which is not installed
        raise InputError(f"cannot read {path} ({exc}); save the sheet as CSV and pass that") from exc
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable {what} table ({exc}); re-download it") from exc
    table.columns = [(rename or str.strip)(str(c)) for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(
            f"{path} lacks the {what} column(s) {', '.join(missing)}; "
            f"its columns are {', '.join(table.columns)}"
        )
    return table.fillna("").apply(lambda column: column.astype(str).str.strip())

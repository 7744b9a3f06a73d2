"""The manifest: one CSV row per region of interest, the one data-set format every stage reads.

Rows in error messages are numbered as lines of the file (the header is line 1), which is what
a text editor or a spreadsheet shows, so a user can go straight to the offending line.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from microcalcai_logic.contract import LABEL_INDEX, LABELS

from microcalcai.atomic import atomic_write_text
from microcalcai.errors import InputError

REQUIRED_COLUMNS = ("patient_id", "image_path", "roi_x", "roi_y", "label", "finding")
OPTIONAL_COLUMNS = (
    "study_id",
    "image_id",
    "roi_size",
    "roi_radius",
    "birads",
    "view",
    "laterality",
    "study_date",
    "split",
    "morphology",
    "distribution",
    "mask_path",
    "spacing_mm",
)
SPLITS = ("train", "val", "test")
PATH_COLUMNS = ("image_path", "mask_path")  # files that must exist


def path_columns(frame: pd.DataFrame) -> list[str]:
    """Columns holding file paths relative to the manifest: the documented ones and any `*_path`."""
    return [c for c in frame.columns if c in PATH_COLUMNS or str(c).endswith("_path")]


COORDINATE_COLUMNS = ("roi_x", "roi_y")
# Positive numbers; spacing_mm is the pixel spacing to assume for images that carry none.
SIZE_COLUMNS = ("roi_size", "roi_radius", "spacing_mm")
# Errors list this many offending rows, then say how many more there are.
_MAX_LISTED = 8


def _listing(rows: list[str]) -> str:
    shown = ", ".join(rows[:_MAX_LISTED])
    more = len(rows) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


class _Problems:
    """Collects every problem in a frame so the user fixes them all in one pass."""

    def __init__(self, where: str, row_name: Callable[[object], str]):
        self.where = where
        self.row_name = row_name
        self.items: list[str] = []

    def rows(self, mask: pd.Series, message: str, values: pd.Series | None = None) -> None:
        if not mask.any():
            return
        if values is None:
            names = [self.row_name(i) for i in mask.index[mask]]
        else:
            names = [f"{self.row_name(i)} ({values[i]!r})" for i in mask.index[mask]]
        self.items.append(f"{message}: {_listing(names)}")

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n  - ".join(self.items)
            raise InputError(f"{self.where} is not a valid manifest:\n  - {lines}")


def _as_text(series: pd.Series) -> pd.Series:
    """Strings with surrounding spaces removed; blanks become missing (NaN)."""
    text = series.astype("str").str.strip()
    return text.mask(text == "")


def _blank(series: pd.Series) -> pd.Series:
    return _as_text(series).isna()


def normalise_manifest(
    frame: pd.DataFrame,
    *,
    where: str,
    row_name: Callable[[object], str] | None = None,
    require_label: bool = True,
) -> pd.DataFrame:
    """Validate a manifest frame and return a cleaned copy (used by both read and write).

    Text columns are stripped strings with blanks as missing values, `label` is lower case,
    coordinates and sizes are floats, `laterality` is "L"/"R", `view` is upper case and
    `study_date` is an ISO date string. Columns not in the manifest format are kept unchanged.
    """
    frame, problems = _normalise(frame, where, row_name or (lambda index: f"row {index}"), require_label)
    problems.raise_if_any()
    return frame


def _normalise(
    frame: pd.DataFrame, where: str, row_name: Callable[[object], str], require_label: bool
) -> tuple[pd.DataFrame, _Problems]:
    """normalise_manifest's work; the value problems come back so a reader can add its own."""
    problems = _Problems(where, row_name)
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"{where} is missing the required column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns)) or 'no columns'}. "
            f"A manifest needs {', '.join(REQUIRED_COLUMNS)} (see docs/data.md)."
        )
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise InputError(
            f"{where} has the column(s) {', '.join(duplicated)} more than once; keep one of each"
        )

    for column in ("patient_id", "image_path", "finding"):
        problems.rows(_blank(frame[column]), f"empty {column} in")

    text_columns = ["patient_id", "image_path", "label", "finding"] + [
        c for c in OPTIONAL_COLUMNS if c in frame.columns and c not in SIZE_COLUMNS
    ]
    for column in text_columns:
        frame[column] = _as_text(frame[column])

    # The project's label codes (docs/DESIGN.md: benign = 0, malignant = 1) are accepted too.
    frame["label"] = frame["label"].str.lower().replace({str(i): label for label, i in LABEL_INDEX.items()})
    label_blank = frame["label"].isna()
    bad_label = ~label_blank & ~frame["label"].isin(LABELS)
    problems.rows(bad_label, f"label must be {' or '.join(LABELS)} in", frame["label"])
    if require_label:
        problems.rows(label_blank, "empty label in")
    frame["finding"] = frame["finding"].str.lower()

    for column in COORDINATE_COLUMNS + tuple(c for c in SIZE_COLUMNS if c in frame.columns):
        raw = frame[column]
        numbers = pd.to_numeric(_as_text(raw), errors="coerce").astype(float)
        blank = _blank(raw)
        if column in COORDINATE_COLUMNS:
            problems.rows(blank, f"empty {column} in")
            problems.rows(~blank & numbers.isna(), f"{column} is not a number in", raw)
            problems.rows(
                numbers.notna() & ~numbers.between(0, math.inf, inclusive="left"),
                f"{column} must be a finite pixel coordinate >= 0 in",
                raw,
            )
        else:
            problems.rows(~blank & numbers.isna(), f"{column} is not a number in", raw)
            problems.rows(
                (numbers.notna() & ~(numbers > 0)) | (numbers == math.inf),
                f"{column} must be a positive finite number in",
                raw,
            )
        frame[column] = numbers

    if "laterality" in frame.columns:
        side = frame["laterality"].str.upper().replace({"LEFT": "L", "RIGHT": "R"})
        problems.rows(side.notna() & ~side.isin(["L", "R"]), "laterality must be L or R in", side)
        frame["laterality"] = side
    if "view" in frame.columns:
        frame["view"] = frame["view"].str.upper()
    if "split" in frame.columns:
        split = frame["split"].str.lower()
        problems.rows(
            split.notna() & ~split.isin(SPLITS), f"split must be one of {', '.join(SPLITS)} in", split
        )
        frame["split"] = split
    if "study_date" in frame.columns:
        dates, bad = parse_dates(frame["study_date"])
        problems.rows(
            bad, "study_date is not a date (use YYYY-MM-DD or DICOM's YYYYMMDD) in", frame["study_date"]
        )
        frame["study_date"] = dates.dt.strftime("%Y-%m-%d").astype("str")

    order = list(REQUIRED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    return frame[order + [c for c in frame.columns if c not in order]], problems


def parse_dates(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse ISO (YYYY-MM-DD) or DICOM (YYYYMMDD) dates; returns (datetimes, mask of bad values)."""
    text = _as_text(values)
    compact = text.str.fullmatch(r"\d{8}").fillna(False).astype(bool)
    parsed = pd.to_datetime(text.where(~compact), format="ISO8601", errors="coerce")
    parsed = parsed.where(~compact, pd.to_datetime(text.where(compact), format="%Y%m%d", errors="coerce"))
    bad = text.notna() & parsed.isna()
    return parsed, bad


def _line_number(index: object) -> str:
    return f"line {int(index) + 2}"  # the header is line 1, the first data row is line 2


def read_manifest(
    path: str | os.PathLike, *, check_files: bool = True, require_label: bool = True
) -> pd.DataFrame:
    """Read and validate a manifest; `image_path` and `mask_path` come back absolute.

    check_files: fail when an image (or mask) named by a row does not exist.
    require_label: False lets rows with an empty label through (data to be predicted).
    The frame's `attrs["manifest_path"]` holds the absolute path of the file read.
    """
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        hint = " (it holds a manifest.csv)" if (path / "manifest.csv").is_file() else ""
        raise InputError(f"manifest {path} is a folder{hint}; give the path of the manifest.csv file")
    if not path.is_file():
        raise InputError(
            f"manifest {path} does not exist; give the path of a manifest.csv "
            "(`microcalcai import` writes one)"
        )
    try:
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark; some locales save
        # semicolons, recognised from a header that has them and no commas.
        with open(path, encoding="utf-8-sig") as handle:
            header = handle.readline()
        sep = ";" if ";" in header and "," not in header else ","
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, sep=sep, encoding="utf-8-sig"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(
            f"manifest {path} is not a readable CSV file ({exc}); "
            "save it as comma-separated UTF-8 text with a header line"
        ) from exc
    if frame.empty:
        raise InputError(f"manifest {path} has no rows; it needs one row per ROI below its header line")
    # Value problems and missing files are reported together, so one pass fixes the file.
    frame, problems = _normalise(frame, f"manifest {path}", _line_number, require_label)
    for column in path_columns(frame):
        frame[column] = _as_text(frame[column]).map(lambda p: _resolve(p, path.parent), na_action="ignore")
        if check_files and column in PATH_COLUMNS:
            present = frame[column].notna()
            missing = present & ~frame[column].map(os.path.isfile, na_action="ignore").astype(bool)
            problems.rows(
                missing,
                f"{column} names a file that does not exist (paths are relative to {path.parent}) in",
                frame[column],
            )
    problems.raise_if_any()
    frame.attrs["manifest_path"] = str(path)
    return frame


def _resolve(value: str, base: Path) -> str:
    candidate = Path(value).expanduser()
    return os.path.normpath(candidate if candidate.is_absolute() else base / candidate)


def _relative(value: str, folder: Path, base: Path) -> str:
    candidate = Path(value).expanduser()
    absolute = candidate if candidate.is_absolute() else base / candidate
    try:
        return Path(os.path.relpath(absolute, folder)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return str(absolute)


def _number_text(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.10g}"


def manifest_csv_text(
    frame: pd.DataFrame,
    folder: str | os.PathLike,
    *,
    base_dir: str | os.PathLike | None = None,
    require_label: bool = True,
) -> str:
    """The CSV text of a validated frame with paths written relative to `folder`."""
    folder = Path(folder).absolute()
    base = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    frame = normalise_manifest(frame, where="the manifest to write", require_label=require_label)
    for column in path_columns(frame):
        frame[column] = _as_text(frame[column]).map(lambda p: _relative(p, folder, base), na_action="ignore")
    for column in COORDINATE_COLUMNS + SIZE_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].map(_number_text)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def write_manifest(
    frame: pd.DataFrame,
    path: str | os.PathLike,
    *,
    base_dir: str | os.PathLike | None = None,
    require_label: bool = True,
) -> Path:
    """Validate `frame` and write it atomically to `path`, paths relative to the file's folder.

    Relative paths in the frame are taken from `base_dir` (default: the current directory).
    Columns come out in the documented order, then any extra columns as they were.
    """
    path = Path(path).expanduser().absolute()
    text = manifest_csv_text(frame, path.parent, base_dir=base_dir, require_label=require_label)
    return atomic_write_text(path, text)


def manifest_sha256(path: str | os.PathLike) -> str:
    """Identity of a data set: SHA-256 of the manifest's bytes with line endings made uniform.

    The same rows saved on Windows (CRLF) or Unix (LF) give the same identity.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror}; check the path") from exc
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def patients(frame: pd.DataFrame) -> Iterable[str]:
    """The distinct patient ids of a manifest frame, in first-seen order."""
    return list(dict.fromkeys(frame["patient_id"]))

"""Which mammogram view an image is, and which datastore images make one exam (one study).

A whole-image model reads screening views: laterality L/R and view CC/MLO, from the DICOM header
(the reader's `laterality`/`view`, the same tags training data were labelled from) or, for an
image whose header names none (a PNG), from the request's `params.view`.

An exam is every datastore image whose StudyInstanceUID is the study's. The datastore has no
index by study, so each image's header is read (no pixels) once per file version and remembered
(`StudyIndex`); a request then costs one `stat` per stored image.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from microcalcai.dicom_out.source import valid_uid
from microcalcai.server.errors import NotFound, RequestError

LOG = logging.getLogger(__name__)
SIDES = ("L", "R")
POSITIONS = ("CC", "MLO")
EXAM_VIEWS = tuple(f"{side}{position}" for side in SIDES for position in POSITIONS)  # LCC LMLO RCC RMLO


@dataclass(frozen=True)
class View:
    laterality: str
    position: str
    source: str  # "header", "params", or "header+params" (params.view filled what the header lacks)

    @property
    def name(self) -> str:
        return f"{self.laterality}{self.position}"

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "laterality": self.laterality,
            "view_position": self.position,
            "source": self.source,
        }


def parse_view_param(value) -> tuple[str, str] | None:
    """`params.view` ("LCC", "RMLO", ...) as (laterality, position); None when not given."""
    if value is None:
        return None
    text = value.strip().upper() if isinstance(value, str) else None
    if text not in EXAM_VIEWS:
        raise RequestError(f"params.view must be one of {', '.join(EXAM_VIEWS)}, got {value!r}")
    return text[0], text[1:]


def view_of(mammogram, image_id: str, requested=None, *, in_exam: bool = False) -> View:
    """The view of a decoded image: its header's, with what the header lacks taken from `params.view`.

    A header may give only one of laterality and view position; `params.view` fills the missing
    one, and is refused only where it contradicts a field the header does give.
    """
    given = parse_view_param(requested)
    header = (mammogram.laterality, mammogram.view)
    if given is not None:
        if any(field is not None and field != wanted for field, wanted in zip(header, given, strict=True)):
            raise RequestError(
                f"params.view {requested!r} disagrees with image {image_id!r}, whose header says "
                f"{header[0] or '?'}{header[1] or '?'}; send no params.view for a DICOM view, or one "
                "that agrees with its header"
            )
        if None in header:
            source = "params" if header == (None, None) else "header+params"
            return View(header[0] or given[0], header[1] or given[1], source)
    laterality, position = header
    problem = _not_a_view(laterality, position)
    if problem and in_exam:  # an exam takes the views from their headers: params.view is not applied
        raise RequestError(
            f"image {image_id!r} is not a mammogram view: {problem}; an exam scores the "
            f"{', '.join(EXAM_VIEWS)} views its headers name (DICOM ImageLaterality and ViewPosition)"
        )
    if problem:
        raise RequestError(
            f"image {image_id!r} is not a mammogram view: {problem}; a whole-image model reads "
            f"{', '.join(EXAM_VIEWS)} views (DICOM ImageLaterality and ViewPosition), or send "
            'params.view, e.g. {"view": "LCC"}, for an image without a header'
        )
    return View(laterality, position, "header")


def _not_a_view(laterality, position) -> str:
    if laterality is None and position is None:
        return "its header names no laterality and no view"
    if laterality not in SIDES:
        return f"its laterality is {laterality or 'not given'} (L or R needed)"
    if position not in POSITIONS:
        return f"its view is {position or 'not given'} (CC or MLO needed)"
    return ""


def check_study_uid(value) -> str:
    if not valid_uid(value):
        shown = repr(value) if len(repr(value)) <= 70 else repr(value)[:67] + "..."
        raise RequestError(
            f"params.study must be a StudyInstanceUID (digits and dots, at most 64 characters), got {shown}"
        )
    return value


@dataclass(frozen=True)
class StudyEntry:
    """What the index knows of one stored image (from its header, no pixels)."""

    image_id: str
    study_uid: str | None
    laterality: str | None
    position: str | None
    patient_id: str | None
    study_date: str | None


def study_fields(metadata: dict) -> dict:
    """The `study` part of an answer from a decoded image's metadata (None where unknown)."""
    return {
        "study_uid": metadata.get("study_instance_uid"),
        "patient_id": metadata.get("patient_id"),
        "study_date": _iso_date(metadata.get("study_date")),
    }


def _iso_date(value) -> str | None:
    text = str(value or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if re.fullmatch(r"\d{8}", text) else (text or None)


class StudyIndex:
    """Study, laterality and view of every stored image, read from headers once per file version.

    One entry per image id, with the file version (path, mtime, size) it was read from: a
    rewritten file replaces its entry, and the entries of images no longer listed are dropped, so
    the index holds no more than the datastore.
    """

    def __init__(self):
        self._entries: dict[str, tuple[tuple, StudyEntry]] = {}  # image id -> (file version, entry)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def images_of(self, datastore, study_uid: str) -> list[StudyEntry]:
        from microcalcai.server.images import image_file

        found, readable = [], set()
        for image_id in sorted(datastore.list_images()):
            try:
                path = image_file(datastore, image_id)
                stat = path.stat()
            except (RequestError, OSError):
                continue  # not a single readable file: it belongs to no study we can score
            readable.add(image_id)
            version = (str(path), stat.st_mtime_ns, stat.st_size)
            with self._lock:
                known = self._entries.get(image_id)
            if known is None or known[0] != version:
                entry = _read_entry(image_id, path)
                with self._lock:
                    self._entries[image_id] = (version, entry)
            else:
                entry = known[1]
            if entry.study_uid == study_uid:
                found.append(entry)
        with self._lock:
            for gone in set(self._entries) - readable:
                del self._entries[gone]
        if not found:
            raise NotFound(
                f"no datastore image belongs to study {study_uid}; GET /datastore/?output=all lists the "
                "images (add the exam's views with PUT /datastore/image)"
            )
        return found


def _read_entry(image_id: str, path: Path) -> StudyEntry:
    """The header fields of one file; a file that is not DICOM belongs to no study."""
    from microcalcai.io.dicom_read import laterality, view
    from microcalcai.io.reader import sniff_format

    try:
        if sniff_format(path) != "dicom":
            return StudyEntry(image_id, None, None, None, None, None)
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        text = {k: (str(ds.get(k)) if ds.get(k) not in (None, "") else None)
                for k in ("StudyInstanceUID", "PatientID", "StudyDate")}  # fmt: skip
        return StudyEntry(
            image_id,
            text["StudyInstanceUID"],
            laterality(ds)[0],
            view(ds)[0],
            text["PatientID"],
            _iso_date(text["StudyDate"]),
        )
    except Exception as exc:  # a damaged header: the file is left out of every study
        LOG.warning("study index: the header of %s does not read (%s)", image_id, exc)
        return StudyEntry(image_id, None, None, None, None, None)

"""The source mammogram's header: what a DICOM result needs to reference it."""

from __future__ import annotations

import re
from pathlib import Path

from microcalcai.errors import InputError

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # digits and dots; the length is checked apart
# A result references its image by study, series and instance (PS3.3 C.17.2, C.8.20.2);
# the SOP class says what kind of object it points at; Rows/Columns place a segmentation on it.
REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Rows", "Columns")


class SourceError(InputError):
    """The source cannot be referenced from a DICOM result (not DICOM, or missing UIDs)."""


def read_source(path) -> object:
    """The header (no pixels) of a DICOM source, checked with `check_source`."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise SourceError(
            f"{path.name}: DICOM results need a DICOM source image to reference, and this file "
            f"is not DICOM ({type(exc).__name__}); classify the DICOM original to get an SR"
        ) from None
    check_source(dataset, name=path.name)
    return dataset


def check_source(dataset, *, name: str = "source") -> None:
    missing = [k for k in REQUIRED if not str(getattr(dataset, k, "") or "").strip()]
    if missing:
        raise SourceError(
            f"{name}: the DICOM source lacks {', '.join(missing)}, which a result must cite to "
            "reference it; nothing was written. Give the image its UIDs (e.g. dcmodify -gst -gse -gin) "
            "or export it again from the archive"
        )
    # A result citing a malformed UID is itself invalid DICOM, and an archive would refuse or
    # misfile it. Leading zeros in a component are tolerated: real archives hold such UIDs.
    malformed = [k for k in REQUIRED if k.endswith("UID") and not valid_uid(str(getattr(dataset, k)))]
    if malformed:
        raise SourceError(
            f"{name}: the DICOM source's {', '.join(malformed)} is not a valid UID (digits and dots, "
            "at most 64 characters), so no result can cite it; nothing was written. Export the "
            "image again from the archive"
        )


def valid_uid(value) -> bool:
    """A DICOM UID as far as citing it goes: digits and dots, at most 64 characters (components
    with leading zeros pass: real archives hold such UIDs)."""
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None

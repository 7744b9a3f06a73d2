"""Where results go: files beside the study (atomic), or a DICOMweb server by STOW-RS.

A file is written whole or not at all (atomic.py): a crash leaves no half object for an
archive import to pick up. STOW-RS sends whole instances; a failed store raises StoreError.
"""

from __future__ import annotations

import io
from pathlib import Path

from microcalcai.atomic import atomic_write_bytes
from microcalcai.errors import MicrocalcError

KIND = {"SR": "sr", "SEG": "saliency"}


class StoreError(MicrocalcError):
    """A result could not be stored (disk or DICOMweb server)."""


def encode(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, write_like_original=False)
    return buffer.getvalue()


def file_name(dataset) -> str:
    kind = KIND.get(str(dataset.Modality), str(dataset.Modality).lower())
    return f"{kind}-{dataset.SOPInstanceUID}.dcm"


def write_files(datasets, folder) -> list[Path]:
    """Each data set as its own file in `folder`, written atomically; the paths written."""
    folder = Path(folder)
    paths = []
    for dataset in datasets:
        data = encode(dataset)  # encode first: a data set that cannot be encoded writes nothing
        try:
            paths.append(atomic_write_bytes(folder / file_name(dataset), data))
        except OSError as exc:
            raise StoreError(f"could not write {file_name(dataset)} in {folder}: {exc}") from exc
    return paths


def stow(client, datasets) -> list[dict]:
    """Send the data sets by STOW-RS with a dicomweb-client; what each became on the server."""
    stored = []
    for dataset in datasets:
        try:
            client.store_instances([dataset])
        except Exception as exc:  # requests' and the client's errors alike: the server said no
            raise StoreError(f"STOW-RS of {file_name(dataset)} failed: {type(exc).__name__}: {exc}") from exc
        stored.append(describe(dataset))
    return stored


def describe(dataset, path: Path | str | None = None) -> dict:
    out = {
        "modality": str(dataset.Modality),
        "sop_class_uid": str(dataset.SOPClassUID),
        "study_uid": str(dataset.StudyInstanceUID),
        "series_uid": str(dataset.SeriesInstanceUID),
        "sop_instance_uid": str(dataset.SOPInstanceUID),
    }
    if path is not None:
        out["path"] = str(path)
    return out

"""Data sets: the manifest format, importers of public mammography formats, patient-level splits."""

from microcalcai.data.manifest import (
    LABELS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    manifest_sha256,
    read_manifest,
    write_manifest,
)

__all__ = [
    "LABELS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "manifest_sha256",
    "read_manifest",
    "write_manifest",
]

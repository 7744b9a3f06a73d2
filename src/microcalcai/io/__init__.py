"""Reading mammograms: DICOM (MG/DX), PNG, TIFF, PGM and NRRD into one `Mammogram` type.

Public surface: `read_image`, `inspect_file`, `Mammogram`, `write_mg_dicom`, `write_nrrd`. Submodules are
imported on first use so that `import microcalcai.io` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Mammogram": "microcalcai.io.image",
    "read_image": "microcalcai.io.reader",
    "inspect_file": "microcalcai.io.reader",
    "write_mg_dicom": "microcalcai.io.dicom_write",
    "build_mg_dataset": "microcalcai.io.dicom_write",
    "write_nrrd": "microcalcai.io.nrrd_write",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'microcalcai.io' has no attribute {name!r}")

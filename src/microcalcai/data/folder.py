"""The folder-per-class layout of ROI crops (`benign/`, `malignant/`), as Kang et al. kept theirs.

Each image file under `SRC/benign/` or `SRC/malignant/` (any depth, folder names in any case) is
one ROI: the crop is the whole image, so roi_x, roi_y are its centre and roi_size its longer
side. The patient comes from, in this order: a regular expression applied to the file name
(its first group, or the whole match), the first sub-folder below the class folder
(`benign/<patient>/crop.png`), or else the file name itself. The last gives no patient-level
guarantee, and the summary says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from microcalcai.data.files import RASTER_SUFFIXES, image_shape, is_dicom, progress, walk_files
from microcalcai.data.manifest import LABELS
from microcalcai.data.report import ImportReport
from microcalcai.errors import InputError, MicrocalcError


def _patient(inside_class: tuple[str, ...], pattern: re.Pattern | None) -> str | None:
    """The patient of a file given its path parts below the class folder."""
    if pattern is not None:
        match = pattern.search(inside_class[-1])
        if match is None:
            return None
        return match.group(1) if match.groups() else match.group(0)
    return inside_class[0] if len(inside_class) > 1 else Path(inside_class[0]).stem


def import_folder(
    src: str | Path, *, finding: str = "calcification", patient_pattern: str | None = None
) -> ImportReport:
    src = Path(src)
    if not src.is_dir():
        raise InputError(f"folder {src} does not exist; give a folder holding benign/ and malignant/")
    try:
        pattern = re.compile(patient_pattern) if patient_pattern else None
    except re.error as exc:
        raise InputError(
            f"--patient-pattern {patient_pattern!r} is not a regular expression ({exc})"
        ) from exc
    if not any(p.is_dir() and p.name.lower() in LABELS for p in src.iterdir()):
        found = ", ".join(sorted(p.name for p in src.iterdir() if p.is_dir())) or "no folders"
        raise InputError(
            f"{src} has no benign/ or malignant/ folder (found {found}); put each ROI crop "
            "in the folder of its label"
        )
    report = ImportReport("folder", src)
    nested = False
    for path in progress(walk_files(src), desc="crops", unit="file"):
        relative = path.relative_to(src)
        label = relative.parts[0].lower() if len(relative.parts) > 1 else None
        if label not in LABELS:
            report.skip(path, "", "not inside benign/ or malignant/")
            continue
        if not (path.suffix.lower() in RASTER_SUFFIXES or is_dicom(path)):
            report.skip(path, "", f"not an image file ({path.suffix or 'no extension'})")
            continue
        patient = _patient(relative.parts[1:], pattern)
        if patient is None:
            report.skip(path, "", f"file name does not match --patient-pattern {patient_pattern}")
            continue
        nested = nested or len(relative.parts) > 2
        try:
            height, width = image_shape(path)
        except MicrocalcError:
            report.skip(path, "", "not a readable image")
            continue
        report.add(
            patient_id=patient,
            image_path=str(path.absolute()),
            roi_x=(width - 1) / 2.0,
            roi_y=(height - 1) / 2.0,
            label=label,
            finding=finding.lower(),
            image_id=path.stem,
            roi_size=max(width, height),
            _source=str(path),
            _where="",
        )
    if pattern is None and not nested and report.rows:
        report.notes.append(
            "patient ids are the file names (no --patient-pattern, no patient sub-folders): "
            "splits cannot keep a patient's crops together"
        )
    return report

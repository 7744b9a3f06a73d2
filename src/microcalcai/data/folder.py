"""The folder-per-class layout of ROI crops (`benign/`, `malignant/`), as Kang et al. kept theirs.

Each image file under `SRC/benign/` or `SRC/malignant/` (any depth, folder names in any case) is
one ROI: the crop is the whole image, so roi_x, roi_y are its centre and roi_size its longer
side. The patient comes from, in this order: a regular expression applied to the file name
(its first group, or the whole match), the first sub-folder below the class folder
(`benign/<patient>/crop.png`), or else the file name itself. The last gives no patient-level
guarantee, and the summary says so.

`export_crops` goes the other way: it cuts each manifest row's ROI into that layout.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from microcalcai_logic.contract import LABELS

from microcalcai.data.files import RASTER_SUFFIXES, image_shape, is_dicom, progress, walk_files
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


def _safe_name(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "x"


def export_crops(
    frame: pd.DataFrame,
    out_dir: str | Path,
    *,
    size_px: int | None = None,
    size_mm: float | None = None,
    spacing_mm: float | None = None,
    pad_mode: str = "constant",
    overwrite: bool = False,
) -> ImportReport:
    """Cut every manifest row's ROI and store it in the folder-per-class layout.

    Writes OUT/<label>/<patient>/<image>_<row>.png (16-bit grey, spacing in the PNG) and
    OUT/manifest.csv describing the crops, so `import_folder(OUT)` and `read_manifest` both read
    it back. The folder appears only when complete. Rows whose image cannot be read or whose
    ROI lies outside the image are reported in the returned report, not written. Images without
    a spacing of their own use the row's `spacing_mm` column when the manifest has one
    (mini-MIAS: 0.2 mm).
    """
    from microcalcai.atomic import atomic_dir
    from microcalcai.data.manifest import write_manifest

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise InputError(
            f"{out_dir} already exists; choose another folder or pass overwrite=True (--overwrite)"
        )
    report = ImportReport("crops", out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        _write_crops(
            frame,
            tmp,
            report,
            dict(size_px=size_px, size_mm=size_mm, spacing_mm=spacing_mm, pad_mode=pad_mode),
        )
        if not report.rows:
            raise InputError(f"no crop could be cut for {out_dir}:\n{report.summary()}")
        write_manifest(report.manifest_rows(), tmp / "manifest.csv", base_dir=tmp)
    for row in report.rows:  # the rows named files in the temporary folder, now moved into place
        row["image_path"] = str(out_dir / row["image_path"])
    return report


def _write_crops(frame: pd.DataFrame, folder: Path, report: ImportReport, crop_options: dict) -> None:
    from microcalcai.io import read_image
    from microcalcai.io.export import write_crop
    from microcalcai.roi import crop_roi

    images = progress(frame.groupby("image_path", sort=False), desc="crops", unit="image")
    for image_path, group in images:
        spacing = group["spacing_mm"].iloc[0] if "spacing_mm" in group else None
        try:
            image = read_image(image_path, default_spacing_mm=spacing if pd.notna(spacing) else None)
        except MicrocalcError as exc:
            for index in group.index:
                report.skip(image_path, f"row {index}", f"image not readable: {exc}")
            continue
        for index, row in group.iterrows():
            try:
                crop = crop_roi(image, (row["roi_x"], row["roi_y"]), **crop_options)
            except MicrocalcError as exc:
                report.skip(image_path, f"row {index}", str(exc).replace(f"{image_path}: ", ""))
                continue
            name = row["image_id"] if pd.notna(row.get("image_id")) else Path(image_path).stem
            relative = Path(row["label"]) / _safe_name(row["patient_id"]) / f"{_safe_name(name)}_{index}.png"
            write_crop(crop, folder / relative)
            # The crop's row: the source row's facts, the geometry of the crop file itself.
            dropped = ("mask_path", "roi_radius", "spacing_mm")
            fields = {k: v for k, v in row.items() if k not in dropped}
            fields.update(
                image_path=str(relative),
                roi_x=(crop.size_px - 1) / 2.0,
                roi_y=(crop.size_px - 1) / 2.0,
                roi_size=crop.size_px,
                spacing_mm=crop.spacing_mm[0] if crop.spacing_mm else None,
                source_image_path=str(image_path),
                source_roi_x=row["roi_x"],
                source_roi_y=row["roi_y"],
            )
            report.add(**fields)

"""INbreast: `AllDICOMs/`, `AllXML/` and the table `INbreast.csv`.

- DICOM names are `<file name>_<patient id>_MG_<L|R>_<CC|MLO>_ANON.dcm`; the 8-digit file name
  links an image to its row in the table and to `AllXML/<file name>.xml`.
- The table is semicolon-separated: Patient ID; Patient age; Laterality; View; Acquisition
  date (YYYYMM); File Name; ACR (density); Bi-Rads (1, 2, 3, 4a, 4b, 4c, 5, 6). Its Patient ID
  column is anonymised ("removed"), so the patient comes from the DICOM name.
- Each XML is an Apple property list (OsiriX ROI export): `Images[0].ROIs` is a list of dicts
  with `Name` (Calcification, Cluster, Mass, ...), `Point_px` (strings "(x, y)", x = column,
  y = row from the top-left) and `Center`.

INbreast has no biopsy result per lesion: the label comes from the image's BI-RADS, malignant
from `malignant_from` upwards (default 4a: BI-RADS 1-3 benign, 4a-6 malignant, the split most
INbreast papers use). BI-RADS 0 (incomplete) rows are reported, not imported. One manifest row
per ROI; the ROI centre is the centre of the bounding box of its points.
"""

from __future__ import annotations

import plistlib
import re
import xml.parsers.expat
from pathlib import Path

import numpy as np

from microcalcai.data.files import find_one, image_shape, points_roi, progress, read_table, walk_files
from microcalcai.data.report import ImportReport
from microcalcai.errors import InputError

DICOM_NAME = re.compile(r"^(\d+)_([0-9a-z]+)_MG_([LR])_([A-Z]+)_ANON$", re.IGNORECASE)
BIRADS_ORDER = ("1", "2", "3", "4a", "4b", "4c", "5", "6")
DEFAULT_ROI_NAMES = ("Calcification", "Cluster")
ROI_FINDING = {
    "calcification": ("calcification", None),
    "cluster": ("calcification", "cluster"),
    "mass": ("mass", None),
    "spiculated region": ("mass", None),
    "asymmetry": ("asymmetry", None),
    "distortion": ("architectural distortion", None),
}
TABLE_COLUMNS = ("Laterality", "View", "File Name", "Bi-Rads")
_POINT = re.compile(r"\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)")


def _birads_key(value: str) -> str | None:
    value = value.strip().lower()
    if value == "4":  # an unqualified 4 sorts with 4a
        value = "4a"
    return value if value in BIRADS_ORDER else None


def _parse_points(values: list, where: str) -> np.ndarray:
    points = []
    for value in values or []:
        match = _POINT.match(str(value))
        if match is None:
            raise InputError(f"{where}: point {value!r} is not of the form '(x, y)'")
        points.append((float(match.group(1)), float(match.group(2))))
    return np.array(points, dtype=float).reshape(-1, 2)


def read_rois(xml_path: Path) -> list[dict]:
    """The ROI dicts of an INbreast XML annotation (all images in it)."""
    try:
        with open(xml_path, "rb") as handle:
            document = plistlib.load(handle, fmt=plistlib.FMT_XML)
    except (plistlib.InvalidFileException, xml.parsers.expat.ExpatError, ValueError) as exc:
        raise InputError(f"{xml_path} is not an INbreast XML property list ({exc}); re-download it") from exc
    images = document.get("Images") if isinstance(document, dict) else None
    if not isinstance(images, list):
        raise InputError(f"{xml_path} has no 'Images' array: it is not an INbreast annotation file")
    return [roi for image in images for roi in image.get("ROIs", [])]


def import_inbreast(
    src: str | Path,
    *,
    table: str | Path | None = None,
    roi_names: tuple[str, ...] = DEFAULT_ROI_NAMES,
    malignant_from: str = "4a",
) -> ImportReport:
    src = Path(src)
    if not src.is_dir():
        raise InputError(
            f"INbreast folder {src} does not exist; give the folder holding AllDICOMs, AllXML "
            "and INbreast.csv"
        )
    threshold = _birads_key(malignant_from)
    if threshold is None:
        raise InputError(
            f"malignant_from {malignant_from!r} is not a BI-RADS category ({', '.join(BIRADS_ORDER)})"
        )
    wanted = {n.strip().lower() for n in roi_names}
    table_path = (
        Path(table)
        if table
        else find_one(
            src,
            ("INbreast.csv", "INbreast.xls"),
            "INbreast table",
            "it comes with the release (INbreast.csv)",
        )
    )
    rows = read_table(table_path, TABLE_COLUMNS, "INbreast")

    dicoms: dict[str, tuple[Path, str]] = {}
    xmls: dict[str, Path] = {}
    for path in walk_files(src):
        match = DICOM_NAME.match(path.stem)
        if path.suffix.lower() == ".dcm" and match:
            dicoms[match.group(1)] = (path, match.group(2))
        elif path.suffix.lower() == ".xml" and path.stem.isdigit():
            xmls[path.stem] = path
    report = ImportReport("inbreast", src)

    for index, row in progress(rows.iterrows(), desc=table_path.name, unit="image", total=len(rows)):
        where = f"line {index + 2} (file {row['File Name']})"

        def skip(reason: str, where=where) -> None:
            report.skip(table_path, where, reason)

        name = row["File Name"].split(".")[0]
        if name not in dicoms:
            skip(f"no DICOM named {name}_*_MG_*_ANON.dcm under {src}")
            continue
        if name not in xmls:
            skip("no annotation XML (image without marked findings)")
            continue
        birads = _birads_key(row["Bi-Rads"])
        if birads is None:
            skip(f"BI-RADS {row['Bi-Rads']!r} gives no label (0 = incomplete assessment)")
            continue
        label = "malignant" if BIRADS_ORDER.index(birads) >= BIRADS_ORDER.index(threshold) else "benign"
        image, patient = dicoms[name]
        height, width = image_shape(image)
        for number, roi in enumerate(read_rois(xmls[name]), start=1):
            roi_where = f"ROI {number}"
            roi_name = str(roi.get("Name", "")).strip()
            if roi_name.lower() not in wanted:
                report.skip(
                    xmls[name],
                    roi_where,
                    f"ROI type {roi_name or '(unnamed)'} not requested (roi names: {', '.join(roi_names)})",
                )
                continue
            points = _parse_points(roi.get("Point_px"), f"{xmls[name]} ROI {number}")
            if len(points) == 0 and roi.get("Center"):
                points = _parse_points([roi["Center"]], f"{xmls[name]} ROI {number}")
            if len(points) == 0:
                report.skip(xmls[name], roi_where, "ROI has no points")
                continue
            x, y, side = points_roi(points)
            if not (0 <= x < width and 0 <= y < height):
                report.skip(
                    xmls[name],
                    roi_where,
                    f"ROI centre ({x:.1f}, {y:.1f}) outside the {width} x {height} image",
                )
                continue
            finding, distribution = ROI_FINDING.get(roi_name.lower(), (roi_name.lower(), None))
            date = row.get("Acquisition date", "")
            report.add(
                patient_id=patient,
                image_path=str(image.absolute()),
                roi_x=x,
                roi_y=y,
                label=label,
                finding=finding,
                image_id=name,
                roi_size=side if len(points) > 1 else None,
                birads=row["Bi-Rads"],
                view=row["View"],
                laterality=row["Laterality"],
                # The table gives the month only (YYYYMM): the first of the month stands for it.
                study_date=f"{date[:4]}-{date[4:6]}-01" if re.fullmatch(r"\d{6}", date) else None,
                distribution=distribution,
                roi_name=roi_name,
                acr=row.get("ACR") or None,
                _source=str(xmls[name]),
                _where=roi_where,
            )
    return report

"""CBIS-DDSM: the case-description CSVs plus the DICOM tree downloaded from TCIA.

The four CSVs (`calc_case_description_{train,test}_set.csv`, `mass_case_description_...`) have
one row per abnormality: patient_id, breast density (`breast_density` in the mass tables),
left or right breast, image view, abnormality id, abnormality type, calc type and calc
distribution (mass shape and mass margins in the mass tables), assessment (BI-RADS), pathology
(MALIGNANT, BENIGN, BENIGN_WITHOUT_CALLBACK), subtlety, image file path, cropped image file
path and ROI mask file path. The paths start with a case folder such as
`Calc-Training_P_00005_RIGHT_CC` (full image) or `Calc-Training_P_00005_RIGHT_CC_1` (the ROI
mask and the cropped lesion of abnormality 1), followed by study and series UID folders.

TCIA's downloader may name the folders below the case folder differently (dates and series
descriptions instead of UIDs), so a path that is not found as written is looked up by its case
folder. The mask is told from the cropped image by its size: the mask has the full image's
rows and columns (the CSV sometimes names the crop in the mask column). The ROI centre is the
centre of the mask's bounding box and roi_size the box's longer side.

Breast arterial calcification: a calc row whose calc type names VASCULAR (alone or in a
combination such as `VASCULAR-COARSE`) marks its full image BAC-positive, so every row of that
image gets `bac` = 1 (the vascular row's mask outlines the calcified vessel); the other calc
rows get `bac` = 0 and mass rows none (their tables have no calc type). CBIS-DDSM outlines the
calcifications that were worked up, not every calcified vessel, so `bac` = 0 means "no vascular
calcification annotated": a weak negative, unlike the expert BAC reading of a screening set.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from microcalcai.data.files import (
    bounding_box_roi,
    dicom_files,
    image_shape,
    progress,
    read_dicom_header,
    read_mask,
    read_table,
    walk_files,
)
from microcalcai.data.report import ImportReport
from microcalcai.errors import InputError

CSV_PATTERN = re.compile(r"(calc|mass)_case_description_(train|test)_set\.csv$", re.IGNORECASE)
CASE_FOLDER = re.compile(r"^(Calc|Mass)-(Training|Test)_P_\d+_(LEFT|RIGHT)_(CC|MLO)(_\d+)?$", re.IGNORECASE)
PATHOLOGY = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign"}
FINDING = {"calcification": "calcification", "mass": "mass"}
VASCULAR = "VASCULAR"  # the calc type of calcified vessels (breast arterial calcification)
# Column names differ between the calc and mass tables ("breast density" / "breast_density"):
# they are compared with spaces and underscores made equal.
REQUIRED = (
    "patient id",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "pathology",
    "image file path",
    "roi mask file path",
)


def _key(column: str) -> str:
    return " ".join(str(column).strip().lower().replace("_", " ").split())


class _Tree:
    """Index of the DICOM files under the source folder by CBIS-DDSM case name.

    The case name is the folder name in TCIA's tree; every CBIS-DDSM DICOM also carries it as
    its PatientID, which finds files whose folders were flattened or renamed (headers are read
    only when a case is not found by folder).
    """

    def __init__(self, root: Path):
        self.root = root
        self.by_case: dict[str, list[Path]] = {}
        self.loose: list[Path] = []
        for path in dicom_files(root):
            parts = path.relative_to(root).parts[:-1]
            case = next((part for part in parts if CASE_FOLDER.match(part)), None)
            if case is None:
                self.loose.append(path)
            else:
                self.by_case.setdefault(case.lower(), []).append(path)
        self.shapes: dict[Path, tuple[int, int]] = {}

    def shape(self, path: Path) -> tuple[int, int]:
        if path not in self.shapes:
            self.shapes[path] = image_shape(path)
        return self.shapes[path]

    def _index_loose_by_patient_id(self) -> None:
        loose, self.loose = self.loose, []
        for path in progress(loose, desc="DICOM headers", unit="file"):
            try:
                case = str(read_dicom_header(path).get("PatientID", "")).strip()
            except InputError:
                continue  # not an image of this data set; rows that needed it are reported
            if CASE_FOLDER.match(case):
                self.by_case.setdefault(case.lower(), []).append(path)

    def candidates(self, csv_path: str) -> list[Path]:
        """The files a CSV path may mean: itself if present as written, else its case's files."""
        relative = Path(csv_path.replace("\\", "/"))
        for base in (self.root, self.root / "CBIS-DDSM"):
            if (base / relative).is_file():
                return [base / relative]
        case = (relative.parts[0] if relative.parts else "").lower()
        if case not in self.by_case and self.loose:
            self._index_loose_by_patient_id()
        return self.by_case.get(case, [])


def import_cbis_ddsm(src: str | Path, *, csv_files: list[str | Path] | None = None) -> ImportReport:
    src = Path(src)
    if not src.is_dir():
        raise InputError(
            f"CBIS-DDSM folder {src} does not exist; give the folder holding the "
            "case-description CSVs and the CBIS-DDSM DICOM tree"
        )
    tables = (
        [Path(p) for p in csv_files]
        if csv_files
        else [p for p in walk_files(src) if CSV_PATTERN.search(p.name)]
    )
    if not tables:
        raise InputError(
            f"no calc_case_description_*_set.csv or mass_case_description_*_set.csv under {src}; "
            "download them from the CBIS-DDSM page at TCIA, or pass them with --csv"
        )
    tree = _Tree(src)
    report = ImportReport("cbis-ddsm", src)
    if not tree.by_case:
        report.notes.append(f"no DICOM files in CBIS-DDSM case folders under {src}")
    for table_path in tables:
        table = read_table(table_path, REQUIRED, "CBIS-DDSM case-description", sep=",", rename=_key)
        split = "test" if "test" in table_path.name.lower() else "train"
        rows = progress(table.iterrows(), desc=table_path.name, unit="row", total=len(table))
        for index, row in rows:
            # Quoted paths in these CSVs hold line breaks, so rows are named by number and case.
            case = row["image file path"].replace("\\", "/").split("/")[0]
            where = f"row {index + 1} ({case} abnormality {row['abnormality id']})"
            _import_row(report, tree, table_path, where, row, split)
    _mark_bac_images(report)
    patients_in_both = _patients_in_both_splits(report)
    if patients_in_both:
        report.notes.append(
            f"{len(patients_in_both)} patient(s) appear in both the official train and "
            f"test tables (e.g. {', '.join(patients_in_both[:3])}); re-split by patient "
            "(microcalcai import --split patient) for a patient-level evaluation"
        )
    return report


def _import_row(
    report: ImportReport, tree: _Tree, table_path: Path, where: str, row: pd.Series, split: str
) -> None:
    def skip(reason: str) -> None:
        report.skip(table_path, where, reason)

    label = PATHOLOGY.get(row["pathology"].upper())
    if label is None:
        return skip(f"pathology {row['pathology']!r} is not MALIGNANT, BENIGN or BENIGN_WITHOUT_CALLBACK")
    images = tree.candidates(row["image file path"])
    if len(images) != 1:
        return skip(
            f"full image {'not found' if not images else 'ambiguous'} for "
            f"{row['image file path'].split('/')[0]} under {tree.root}"
        )
    image = images[0]
    shape = tree.shape(image)
    # The mask is the candidate with the full image's size; the cropped lesion is smaller.
    masks = [p for p in tree.candidates(row["roi mask file path"]) if tree.shape(p) == shape]
    if not masks:
        crop_folder = row["roi mask file path"].split("/")[0]
        masks = [p for p in tree.candidates(crop_folder + "/") if tree.shape(p) == shape]
    if len(masks) != 1:
        return skip(
            "ROI mask "
            + ("with the full image's size not found" if not masks else "ambiguous")
            + f" for {row['roi mask file path'].split('/')[0]} (image {shape[1]} x {shape[0]})"
        )
    roi = bounding_box_roi(read_mask(masks[0]))
    if roi is None:
        return skip(f"ROI mask {masks[0]} is empty")
    x, y, side = roi
    finding = FINDING.get(row["abnormality type"].lower(), row["abnormality type"].lower())
    is_calc = finding == "calcification"
    report.add(
        patient_id=row["patient id"],
        image_path=str(image.absolute()),
        roi_x=x,
        roi_y=y,
        label=label,
        finding=finding,
        image_id=row["image file path"].replace("\\", "/").split("/")[0],
        roi_size=side,
        birads=row.get("assessment") or None,
        view=row["image view"],
        laterality=row["left or right breast"],
        split=split,
        morphology=(row.get("calc type") if is_calc else row.get("mass shape")) or None,
        distribution=row.get("calc distribution") or None if is_calc else None,
        mask_path=str(masks[0].absolute()),
        abnormality_id=row["abnormality id"],
        margins=None if is_calc else row.get("mass margins") or None,
        subtlety=row.get("subtlety") or None,
        breast_density=row.get("breast density") or None,
        pathology=row["pathology"],
        _source=str(table_path),
        _where=where,
    )


def is_vascular(calc_type: object) -> bool:
    """Whether a CBIS-DDSM calc type names vascular calcification (types are joined with '-')."""
    if not isinstance(calc_type, str):
        return False
    return VASCULAR in {part.strip().upper() for part in calc_type.split("-")}


def _mark_bac_images(report: ImportReport) -> None:
    """`bac` per row: 1 on every row of an image with a VASCULAR calc row, 0 on the other calc
    rows, None on mass rows (an image's label, so all its rows agree)."""
    vascular = {
        r["image_path"]
        for r in report.rows
        if r["finding"] == "calcification" and is_vascular(r["morphology"])
    }
    for r in report.rows:
        if r["image_path"] in vascular:
            r["bac"] = 1
        else:
            r["bac"] = 0 if r["finding"] == "calcification" else None


def _patients_in_both_splits(report: ImportReport) -> list[str]:
    splits: dict[str, set] = {}
    for row in report.rows:
        splits.setdefault(row["patient_id"], set()).add(row["split"])
    return sorted(p for p, s in splits.items() if len(s) > 1)

"""CMMD (The Chinese Mammography Database, TCIA): clinical table plus a DICOM tree per patient.

The table `CMMD_clinicaldata_revision.xlsx` (or a CSV saved from it) has one row per breast
with a finding: ID1 (patient, e.g. D1-0001), LeftRight (L/R), Age, number (images of that
breast), abnormality (calcification, mass, both), classification (Benign/Malignant), subtype
(molecular subtype of malignant cases). The DICOMs sit under `CMMD/<ID1>/<study>/<series>/`;
each carries PatientID, ImageLaterality and the view (ViewPosition or the SNOMED code in
ViewCodeSequence: 399162004 = CC, 399368009 = MLO).

CMMD has no lesion coordinates. Rather than invent a centre, the importer refuses unless the
caller asks for whole-image rows (`whole_image=True`, `--whole-image`): each row then stands for
the whole image, with roi_x, roi_y at the image centre, roi_size the longer image side (a crop
of that size is the whole image, padded to a square) and `roi_source` = `whole_image`, so no
later stage can mistake it for a lesion ROI. Breasts without a row in the table (no finding)
are counted in the summary, not imported.
"""

from __future__ import annotations

from pathlib import Path

from microcalcai.data.files import dicom_files, find_one, progress, read_dicom_header, read_table
from microcalcai.data.report import ImportReport
from microcalcai.errors import InputError
from microcalcai.io.dicom_read import laterality as dicom_laterality
from microcalcai.io.dicom_read import view as dicom_view

TABLE_COLUMNS = ("ID1", "LeftRight", "abnormality", "classification")
ABNORMALITY = {"calcification": "calcification", "mass": "mass", "both": "calcification+mass"}
TABLE_NAMES = ("CMMD_clinicaldata_revision.xlsx", "CMMD_clinicaldata_revision.csv")


def import_cmmd(
    src: str | Path, *, table: str | Path | None = None, whole_image: bool = False
) -> ImportReport:
    src = Path(src)
    if not whole_image:
        raise InputError(
            "CMMD has no lesion coordinates, so its images cannot become ROI rows without guessing. "
            "Pass --whole-image to import one row per image that stands for the whole image "
            "(roi_source=whole_image, ROI at the image centre covering all of it), or annotate ROIs "
            "(e.g. in the Slicer module) and write a manifest with their centres."
        )
    if not src.is_dir():
        raise InputError(
            f"CMMD folder {src} does not exist; give the folder holding the CMMD DICOM tree "
            "and CMMD_clinicaldata_revision.xlsx"
        )
    table_path = (
        Path(table)
        if table
        else find_one(
            src,
            TABLE_NAMES,
            "CMMD clinical table",
            "download CMMD_clinicaldata_revision.xlsx from TCIA, or pass it with --table",
        )
    )
    rows = read_table(table_path, TABLE_COLUMNS, "CMMD clinical")
    report = ImportReport("cmmd", src)

    images: dict[tuple[str, str], list[tuple[Path, object]]] = {}
    for path in progress(dicom_files(src), desc="CMMD headers", unit="file"):
        try:
            header = read_dicom_header(path)
        except InputError:
            report.skip(path, "", "not a readable DICOM file")
            continue
        patient = str(getattr(header, "PatientID", "") or "").strip() or path.relative_to(src).parts[0]
        side, _ = dicom_laterality(header)
        if side is None:
            report.skip(
                path,
                "",
                "DICOM without laterality (ImageLaterality, Laterality or codes): no breast to match",
            )
            continue
        images.setdefault((patient, side), []).append((path, header))

    used = set()
    for index, row in rows.iterrows():
        where = f"line {index + 2} ({row['ID1']} {row['LeftRight']})"
        key = (row["ID1"], row["LeftRight"].upper())
        label = {"benign": "benign", "malignant": "malignant"}.get(row["classification"].lower())
        finding = ABNORMALITY.get(row["abnormality"].lower())
        if label is None:
            report.skip(
                table_path, where, f"classification {row['classification']!r} is not Benign or Malignant"
            )
            continue
        if finding is None:
            report.skip(
                table_path, where, f"abnormality {row['abnormality']!r} is not calcification, mass or both"
            )
            continue
        if key not in images:
            report.skip(table_path, where, f"no DICOM of patient {key[0]} breast {key[1]} under {src}")
            continue
        used.add(key)
        for path, header in images[key]:
            rows_px, cols_px = int(header.Rows), int(header.Columns)
            date = str(getattr(header, "StudyDate", "") or "").strip()
            report.add(
                patient_id=row["ID1"],
                image_path=str(path.absolute()),
                roi_x=(cols_px - 1) / 2.0,
                roi_y=(rows_px - 1) / 2.0,
                label=label,
                finding=finding,
                study_id=str(getattr(header, "StudyInstanceUID", "") or "") or None,
                image_id=str(getattr(header, "SOPInstanceUID", "") or "") or path.stem,
                roi_size=max(rows_px, cols_px),
                view=dicom_view(header)[0],
                laterality=key[1],
                study_date=date or None,
                roi_source="whole_image",
                age=row.get("Age") or None,
                subtype=row.get("subtype") or None,
                _source=str(table_path),
                _where=where,
            )
    unused = sum(len(v) for k, v in images.items() if k not in used)
    if unused:
        report.notes.append(
            f"{unused} DICOM image(s) of breasts without a row in {table_path.name} "
            "(no finding) were not imported"
        )
    return report

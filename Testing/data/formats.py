"""Writers of miniature data sets in each public format, file for file as distributed.

Every fixture here writes real files in the format the importer reads (PGM, DICOM via
microcalcai.io.dicom_write, XML property lists, CSV and XLSX tables), small enough that the whole
area's tests run in seconds. Images are not square where the format allows it, so a swapped
row/column would show.
"""

from __future__ import annotations

import plistlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from microcalcai.io.dicom_write import write_mg_dicom


def write_pgm(path: Path, height: int, width: int, value: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width), value, dtype=np.uint8)).save(path)
    return path


def write_png(path: Path, height: int, width: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width), dtype=np.uint8)).save(path)
    return path


def write_dicom(path: Path, pixels: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_mg_dicom(path, pixels, **options)


# ---------------------------------------------------------------- mini-MIAS
MIAS_HEIGHT, MIAS_WIDTH = 40, 50
MIAS_INFO = """REFNUM BG CLASS SEVERITY X Y RADIUS
mdb001 G CALC B 10 5 3
mdb002 G CALC M 20 30 4
mdb002 G CIRC B 30 12 6
mdb003 D NORM
mdb004 F CALC M
mdb005 F SPIC M 400 12 6
mdb006 F CALC B 5 6 2
"""


def make_mias(root: Path) -> Path:
    """Info.txt with: 3 importable rows (two on one image), one NORM, one CALC without a centre,
    one centre outside the image, one row whose image is missing (mdb006)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Info.txt").write_text(MIAS_INFO)
    for number in range(1, 6):
        write_pgm(root / "all-mias" / f"mdb{number:03d}.pgm", MIAS_HEIGHT, MIAS_WIDTH)
    return root


# ---------------------------------------------------------------- CBIS-DDSM
CBIS_HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
    "calc type,calc distribution,assessment,pathology,subtlety,image file path,"
    "cropped image file path,ROI mask file path"
)
CBIS_SHAPE = (60, 40)  # rows, columns of every full image


def _uid_path(case: str, n: int, name: str = "000000.dcm") -> str:
    return f"{case}/1.3.6.1.4.1.9590.100.1.2.{n}1/1.3.6.1.4.1.9590.100.1.2.{n}2/{name}"


def make_cbis(root: Path, calc_types: dict[str, str] | None = None) -> dict:
    """Three calc cases, each in a different on-disk layout TCIA produces:

    P_00001: the tree exactly as the CSV paths say (UID folders).
    P_00002: NBIA's descriptive folder names (dates, series descriptions, 1-1.dcm).
    P_00003: the CSV's mask column names the cropped image (the known swap).
    Plus P_00004 whose files were never downloaded, and P_00005 with an empty mask.
    `calc_types`: the calc type of a patient's row (default PLEOMORPHIC).
    """
    rows, cols = CBIS_SHAPE
    image = np.full(CBIS_SHAPE, 1000, dtype=np.uint16)
    expected = {}
    lines = [CBIS_HEADER]
    boxes = {
        "P_00001": (5, 10, 14, 20),
        "P_00002": (20, 30, 29, 51),
        "P_00003": (0, 0, 9, 4),
        "P_00004": (1, 1, 2, 2),
        "P_00005": None,
    }
    pathology = {
        "P_00001": "MALIGNANT",
        "P_00002": "BENIGN",
        "P_00003": "BENIGN_WITHOUT_CALLBACK",
        "P_00004": "MALIGNANT",
        "P_00005": "BENIGN",
    }
    for n, (patient, box) in enumerate(boxes.items(), start=1):
        case = f"Calc-Training_{patient}_LEFT_CC"
        mask = np.zeros(CBIS_SHAPE, dtype=np.uint8)
        if box is not None:
            x0, y0, x1, y1 = box
            mask[y0 : y1 + 1, x0 : x1 + 1] = 255
            expected[patient] = ((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) + 1)
        crop = np.full((8, 6), 900, dtype=np.uint16)
        image_csv = _uid_path(case, n)
        crop_csv = _uid_path(case + "_1", n + 50, "000000.dcm")
        mask_csv = _uid_path(case + "_1", n + 50, "000001.dcm")
        if patient == "P_00003":
            mask_csv, crop_csv = crop_csv, mask_csv  # the CSV names the crop as the mask
        lines.append(
            f"{patient},2,LEFT,CC,1,calcification,{(calc_types or {}).get(patient, 'PLEOMORPHIC')},"
            f"CLUSTERED,4,{pathology[patient]},3,"
            # Real CSVs carry a stray newline inside some quoted path fields.
            f'{image_csv},"{crop_csv}\n",{mask_csv}'
        )
        if patient == "P_00004":
            continue
        base = root / "CBIS-DDSM"
        if patient == "P_00002":
            write_dicom(
                base / case / "08-07-2016-DDSM-74994" / "1.000000-full mammogram images-24515" / "1-1.dcm",
                image,
                patient_id=case,
            )
            roi_dir = base / (case + "_1") / "08-07-2016-DDSM-09887"
            write_dicom(roi_dir / "1.000000-ROI mask images-12345" / "1-1.dcm", mask, patient_id=case + "_1")
            write_dicom(roi_dir / "2.000000-cropped images-67890" / "1-1.dcm", crop, patient_id=case + "_1")
        else:
            write_dicom(base / image_csv, image, patient_id=case)
            crop_file, mask_file = (
                _uid_path(case + "_1", n + 50, "000000.dcm"),
                _uid_path(case + "_1", n + 50, "000001.dcm"),
            )
            write_dicom(base / mask_file, mask, patient_id=case + "_1")
            write_dicom(base / crop_file, crop, patient_id=case + "_1")
    (root / "calc_case_description_train_set.csv").write_text("\n".join(lines) + "\n")
    return expected


# ---------------------------------------------------------------- INbreast
INBREAST_SHAPE = (70, 50)
INBREAST_CASES = [
    # file name, patient hash, laterality, view, BI-RADS, ROIs [(name, points)]
    (
        "20586908",
        "6c613a14b80a8591",
        "R",
        "CC",
        "2",
        [
            ("Calcification", [(10.5, 20.25)]),
            ("Cluster", [(5, 5), (15, 9), (9, 25)]),
            ("Mass", [(30, 30), (35, 40)]),
        ],
    ),
    ("20586934", "6c613a14b80a8591", "L", "MLO", "4b", [("Cluster", [(40, 60), (48, 66)])]),
    ("22614074", "a1b2c3d4e5f60718", "L", "CC", "5", [("Calcification", [(60, 10)])]),  # x outside 50 columns
    ("22614097", "a1b2c3d4e5f60718", "R", "CC", "1", []),  # no XML: an image without findings
    ("24055274", "0f0f0f0f0f0f0f0f", "R", "MLO", "0", [("Calcification", [(3, 3)])]),
]


def write_inbreast_xml(path: Path, rois: list) -> None:
    document = {
        "Images": [
            {
                "ImageIndex": 0,
                "NumberOfROIs": len(rois),
                "ROIs": [
                    {
                        "Name": name,
                        "NumberOfPoints": len(points),
                        "Point_px": [f"({x:.6f}, {y:.6f})" for x, y in points],
                        "Point_mm": [f"({x * 0.07:.6f}, {y * 0.07:.6f}, 0.000000)" for x, y in points],
                        "Center": "({:.6f}, {:.6f})".format(*np.mean(points, axis=0)),
                        "Area": 0.0,
                        "Dev": 0.0,
                        "IndexInImage": i,
                        "Max": 0.0,
                        "Mean": 0.0,
                        "Min": 0.0,
                        "Total": 0.0,
                        "Type": 19 if len(points) == 1 else 15,
                    }
                    for i, (name, points) in enumerate(rois)
                ],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        plistlib.dump(document, handle, fmt=plistlib.FMT_XML)


def make_inbreast(root: Path) -> Path:
    lines = ["Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"]
    pixels = np.zeros(INBREAST_SHAPE, dtype=np.uint16)
    for name, patient, side, view, birads, rois in INBREAST_CASES:
        lines.append(f"removed;removed;{side};{view};201003;{name};2;{birads}")
        write_dicom(
            root / "AllDICOMs" / f"{name}_{patient}_MG_{side}_{view}_ANON.dcm",
            pixels,
            laterality=side,
            view=view,
        )
        if rois:
            write_inbreast_xml(root / "AllXML" / f"{name}.xml", rois)
    lines.append("removed;removed;L;CC;201003;99999999;1;2")  # a table row whose DICOM is absent
    (root / "INbreast.csv").write_text("\n".join(lines) + "\n")
    return root


# ---------------------------------------------------------------- CMMD
CMMD_SHAPE = (30, 20)


def make_cmmd(root: Path, *, table: str = "xlsx") -> Path:
    """Two patients in NBIA's tree: D1-0001 (left breast, calcification, benign: CC + MLO, view only
    as a code sequence), D2-0002 (right breast, both, malignant), plus D2-0002's left breast
    with no table row, and a table row (D1-0003) with no images."""
    pixels = np.zeros(CMMD_SHAPE, dtype=np.uint16)
    base = root / "CMMD"
    for patient, side, view, date in [
        ("D1-0001", "L", "CC", "20100718"),
        ("D1-0001", "L", "MLO", "20100718"),
        ("D2-0002", "R", "CC", "20170102"),
        ("D2-0002", "L", "CC", "20170102"),
    ]:
        folder = base / patient / f"{date[4:6]}-{date[6:]}-{date[:4]}-NA-NA-79377" / "1.000000-NA-70244"
        number = len(list(folder.glob("*.dcm"))) + 1 if folder.exists() else 1
        write_dicom(
            folder / f"1-{number}.dcm",
            pixels,
            patient_id=patient,
            laterality=side,
            view=view,
            study_date=date,
            view_encoding="code" if patient == "D1-0001" else "both",
        )
    clinical = pd.DataFrame(
        {
            "ID1": ["D1-0001", "D2-0002", "D1-0003"],
            "LeftRight": ["L", "R", "L"],
            "Age": [44, 61, 50],
            "number": [2, 2, 2],
            "abnormality": ["calcification", "both", "mass"],
            "classification": ["Benign", "Malignant", "Benign"],
            "subtype": ["", "Luminal A", ""],
        }
    )
    if table == "xlsx":
        clinical.to_excel(root / "CMMD_clinicaldata_revision.xlsx", index=False)
    else:
        clinical.to_csv(root / "CMMD_clinicaldata_revision.csv", index=False, sep=";")
    return root


# ---------------------------------------------------------------- manifests
def manifest_frame(
    n_patients: int = 40,
    rois_per_patient: int = 2,
    malignant_every: int = 3,
    start_year: int = 2010,
    folder: Path | None = None,
) -> pd.DataFrame:
    """A manifest frame of n patients; every `malignant_every`-th patient is malignant."""
    rows = []
    for p in range(n_patients):
        for r in range(rois_per_patient):
            rows.append(
                {
                    "patient_id": f"P{p:03d}",
                    "image_path": str((folder or Path("/images")) / f"P{p:03d}_{r}.png"),
                    "roi_x": 10 + r,
                    "roi_y": 20 + r,
                    "label": "malignant" if p % malignant_every == 0 else "benign",
                    "finding": "calcification",
                    "study_date": f"{start_year + p % 10}-0{1 + r}-15",
                }
            )
    return pd.DataFrame(rows)

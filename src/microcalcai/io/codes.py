"""Coded concepts for mammography views and laterality (DICOM PS3.16, CID 4014 and CID 244).

Both the current SNOMED CT codes (scheme "SCT") and the legacy SNOMED-RT codes (scheme "SRT")
are recognised on reading, because archives hold files written under either; the writer uses SCT.
"""

from __future__ import annotations

# view -> (SCT code, legacy SRT code, code meaning)
VIEW_CODES: dict[str, tuple[str, str, str]] = {
    "CC": ("399162004", "R-10242", "cranio-caudal"),
    "MLO": ("399368009", "R-10226", "medio-lateral oblique"),
    "ML": ("399260004", "R-10224", "medio-lateral"),
    "LM": ("399352003", "R-10228", "latero-medial"),
    "LMO": ("399099002", "R-10230", "latero-medial oblique"),
    "XCCL": ("399192003", "R-1024A", "cranio-caudal exaggerated laterally"),
    "XCCM": ("399101009", "R-1024B", "cranio-caudal exaggerated medially"),
}

# laterality -> (SCT code, legacy SRT code, code meaning)
LATERALITY_CODES: dict[str, tuple[str, str, str]] = {
    "R": ("24028007", "G-A100", "right"),
    "L": ("7771000", "G-A101", "left"),
    "B": ("51440002", "G-A102", "right and left"),
}


def _lookup(
    table: dict[str, tuple[str, str, str]], code_value: str | None, meaning: str | None
) -> str | None:
    value = (code_value or "").strip().upper()
    text = (meaning or "").strip().lower()
    for key, (sct, srt, _name) in table.items():
        if value and value in (sct.upper(), srt.upper()):
            return key
    for key, (_sct, _srt, name) in table.items():
        if text and text == name:
            return key
    return None


def view_from_code(code_value: str | None, meaning: str | None) -> str | None:
    """The short view name ("CC", "MLO", ...) for a coded view, or None when unknown."""
    return _lookup(VIEW_CODES, code_value, meaning)


def laterality_from_code(code_value: str | None, meaning: str | None) -> str | None:
    """ "L", "R" or "B" for a coded laterality, or None when unknown."""
    return _lookup(LATERALITY_CODES, code_value, meaning)

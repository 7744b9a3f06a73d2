"""Write a standard DICOM Digital Mammography (MG) or DX image from a numpy array.

Used by the phantom generator and by the tests, which need real DICOM files in every variant a
reader meets in the field: both presentation intents, both spacing tags, windows with each VOI
LUT function, VOI LUT sequences, rescale, MONOCHROME1, and the compressed transfer syntaxes.
pydicom 2.4 builds the data set and encodes RLE; JPEG 2000 is encoded with pylibjpeg-openjpeg;
JPEG-LS and JPEG lossless need `imagecodecs` (installed with the test requirements).
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessP14,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from microcalcai.atomic import atomic_write_bytes
from microcalcai.errors import InputError, NotAvailableError
from microcalcai.io.codes import LATERALITY_CODES, VIEW_CODES

# SOP classes (PS3.4 B.5): Digital Mammography and Digital X-Ray, per presentation intent.
MG_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.2")
MG_FOR_PROCESSING = UID("1.2.840.10008.5.1.4.1.1.1.2.1")
DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
DX_FOR_PROCESSING = UID("1.2.840.10008.5.1.4.1.1.1.1.1")
_SOP_CLASSES = {
    ("MG", "FOR PRESENTATION"): MG_FOR_PRESENTATION,
    ("MG", "FOR PROCESSING"): MG_FOR_PROCESSING,
    ("DX", "FOR PRESENTATION"): DX_FOR_PRESENTATION,
    ("DX", "FOR PROCESSING"): DX_FOR_PROCESSING,
}

# Short names accepted for `transfer_syntax` (a UID string is accepted too).
TRANSFER_SYNTAXES: dict[str, UID] = {
    "implicit-little": ImplicitVRLittleEndian,
    "explicit-little": ExplicitVRLittleEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-lossless": JPEGLosslessSV1,  # process 14, selection value 1 (the common one)
    "jpeg-lossless-p14": JPEGLosslessP14,
    "jpeg-ls": JPEGLSLossless,
    "jpeg-ls-near": JPEGLSNearLossless,
    "jpeg2000-lossless": JPEG2000Lossless,
    "jpeg2000": JPEG2000,
}
_NATIVE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}

# Marks a keyword in `extra` whose element is to be removed from the data set.
DELETE = None


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _transfer_syntax_uid(transfer_syntax: str) -> UID:
    key = str(transfer_syntax).strip().lower()
    if key in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[key]
    text = str(transfer_syntax).strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)+", text):
        uid = UID(text)
        try:
            if uid.is_valid and uid.is_transfer_syntax:
                return uid
        except ValueError:  # pydicom cannot classify private UIDs
            pass
    raise InputError(
        f"transfer_syntax {transfer_syntax!r} is not known; use one of {sorted(TRANSFER_SYNTAXES)} "
        "or a transfer syntax UID"
    )


def _check_pixels(pixels: np.ndarray, bits_stored: int | None) -> tuple[np.ndarray, int, int, int]:
    """Returns (C-contiguous array, bits allocated, bits stored, pixel representation)."""
    arr = np.asarray(pixels)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise InputError(f"pixels must be a non-empty 2D array (rows, columns); got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16, np.int16):
        raise InputError(f"pixels must be uint8, uint16 or int16; got {arr.dtype} (convert with .astype)")
    allocated = 8 if arr.dtype == np.uint8 else 16
    signed = int(arr.dtype == np.int16)
    stored = allocated if bits_stored is None else int(bits_stored)
    if not 1 <= stored <= allocated:
        raise InputError(f"bits_stored={stored} must be between 1 and {allocated} for {arr.dtype} pixels")
    lo, hi = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise InputError(
            f"pixel values {int(arr.min())}..{int(arr.max())} do not fit bits_stored={stored} "
            f"({lo}..{hi}); raise bits_stored or rescale the pixels"
        )
    return np.ascontiguousarray(arr), allocated, stored, signed


def _encode_frame(arr: np.ndarray, syntax: UID, bits_stored: int, signed: int) -> bytes:
    """One compressed frame for the encapsulated syntaxes other than RLE."""
    if syntax in (JPEG2000Lossless, JPEG2000):
        import openjpeg

        if min(arr.shape) < 32:  # openjpeg's encoder always uses 6 wavelet resolutions
            raise InputError(
                f"JPEG 2000 is written here for images of at least 32 x 32 pixels; got {arr.shape}"
            )

        kwargs: dict[str, Any] = {
            "bits_stored": bits_stored,
            "photometric_interpretation": 2,
            "codec_format": 0,
        }
        if syntax == JPEG2000:
            kwargs["compression_ratios"] = [10.0]
        return openjpeg.encode(arr, **kwargs)
    try:
        import imagecodecs
    except ImportError as exc:
        raise NotAvailableError(
            f"writing {syntax.name} needs the `imagecodecs` package (pip install it; "
            "requirements/test.txt pins the tested version)"
        ) from exc
    if signed:
        raise InputError(f"{syntax.name} is written here for unsigned pixels only")
    if syntax in (JPEGLSLossless, JPEGLSNearLossless):
        # CharLS sizes its output for compressible data; noise-like test images need headroom.
        out = bytearray(arr.nbytes * 2 + 4096)
        level = 0 if syntax == JPEGLSLossless else 2
        return bytes(imagecodecs.jpegls_encode(arr, level=level, out=out))
    if syntax in (JPEGLosslessSV1, JPEGLosslessP14):
        # libjpeg-turbo's lossless mode (process 14); predictor 1 is what SV1 requires.
        return bytes(imagecodecs.jpeg8_encode(arr, lossless=True, predictor=1, bitspersample=bits_stored))
    raise NotAvailableError(f"writing transfer syntax {syntax} ({syntax.name}) is not supported")


def build_mg_dataset(
    pixels: np.ndarray,
    *,
    spacing_mm: Sequence[float] | None = None,
    spacing_tag: str | Sequence[str] = "PixelSpacing",
    laterality: str | None = None,
    view: str | None = None,
    patient_id: str = "ANON",
    patient_name: str | None = None,
    study_id: str = "1",
    study_date: str | _dt.date | None = None,
    accession_number: str = "",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    series_number: int = 1,
    instance_number: int = 1,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    presentation_intent: str = "FOR PRESENTATION",
    modality: str = "MG",
    window: Sequence[float] | Sequence[Sequence[float]] | None = None,
    voi_function: str | None = None,
    voi_lut: Mapping[str, Any] | None = None,
    rescale: Sequence[float] | None = None,
    chest_wall: str | None = None,
    view_encoding: str = "both",
    transfer_syntax: str = "explicit-little",
    extra: Mapping[str, Any] | None = None,
) -> FileDataset:
    """Build (but do not write) the data set `write_mg_dicom` writes; see there for the options."""
    arr, allocated, stored, signed = _check_pixels(pixels, bits_stored)
    syntax = _transfer_syntax_uid(transfer_syntax)
    modality = modality.upper()
    intent = presentation_intent.upper()
    if (modality, intent) not in _SOP_CLASSES:
        raise InputError(
            f"modality {modality!r} with presentation intent {intent!r} is not supported; "
            "use MG or DX with FOR PRESENTATION or FOR PROCESSING"
        )
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"photometric {photometric!r} must be MONOCHROME1 or MONOCHROME2")
    if laterality is not None and laterality.upper() not in ("L", "R", "B"):
        raise InputError(f"laterality {laterality!r} must be 'L', 'R' or 'B'")
    if view_encoding not in ("both", "tag", "code", "none"):
        raise InputError(f"view_encoding {view_encoding!r} must be 'both', 'tag', 'code' or 'none'")

    sop_class = _SOP_CLASSES[(modality, intent)]
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # set to the real syntax after encoding
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]

    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    now = _dt.datetime.now()
    if isinstance(study_date, _dt.date):
        study_date = study_date.strftime("%Y%m%d")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date or now.strftime("%Y%m%d")
    ds.ContentDate = ds.StudyDate
    ds.StudyTime = now.strftime("%H%M%S")
    ds.ContentTime = ds.StudyTime
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    ds.Manufacturer = "MicrocalcAI"
    ds.ReferringPhysicianName = ""
    ds.PatientName = patient_name if patient_name is not None else patient_id
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyID = study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.PresentationIntentType = intent
    ds.BurnedInAnnotation = "NO"

    if laterality:
        ds.ImageLaterality = laterality.upper()
        if laterality.upper() in LATERALITY_CODES:
            sct, _srt, meaning = LATERALITY_CODES[laterality.upper()]
            region = _code_item("76752008", "SCT", "Breast")
            region.AnatomicRegionModifierSequence = DicomSequence([_code_item(sct, "SCT", meaning)])
            ds.AnatomicRegionSequence = DicomSequence([region])
    if view:
        key = view.upper()
        if view_encoding in ("both", "tag"):
            ds.ViewPosition = key
        if view_encoding in ("both", "code"):
            if key not in VIEW_CODES:
                raise InputError(
                    f"view {view!r} has no code in CID 4014 here; use one of {sorted(VIEW_CODES)}"
                )
            sct, _srt, meaning = VIEW_CODES[key]
            item = _code_item(sct, "SCT", meaning)
            item.ViewModifierCodeSequence = DicomSequence([])
            ds.ViewCodeSequence = DicomSequence([item])
    if chest_wall is not None:
        # PatientOrientation (PS3.3 C.8.11.1.1.1): first value = direction of the rows (toward
        # increasing column), which points anterior when the chest wall is at column 0.
        if chest_wall not in ("left", "right"):
            raise InputError(f"chest_wall {chest_wall!r} must be 'left' or 'right'")
        row_dir = "A" if chest_wall == "left" else "P"
        side = "R" if (laterality or "L").upper() == "L" else "L"
        col_dir = ("F" + side) if (view or "").upper() in ("MLO", "LMO") else side
        ds.PatientOrientation = [row_dir, col_dir]

    if spacing_mm is not None:
        spacing = [float(spacing_mm[0]), float(spacing_mm[1])]
        if min(spacing) <= 0:
            raise InputError(f"spacing_mm {spacing_mm} must be positive")
        tags = [spacing_tag] if isinstance(spacing_tag, str) else list(spacing_tag)
        for tag in tags:
            if tag not in ("PixelSpacing", "ImagerPixelSpacing"):
                raise InputError(f"spacing_tag {tag!r} must be 'PixelSpacing' or 'ImagerPixelSpacing'")
            setattr(ds, tag, [f"{spacing[0]:.6g}", f"{spacing[1]:.6g}"])

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(n) for n in arr.shape)
    ds.BitsAllocated = allocated
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = signed
    ds.PixelIntensityRelationship = "LOG"
    # PS3.3 C.8.11.3.1.2: -1 = higher values mean less X-ray intensity (denser), as MONOCHROME2 shows.
    ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME1" else -1

    if rescale is not None:
        ds.RescaleSlope = f"{float(rescale[0]):.10g}"
        ds.RescaleIntercept = f"{float(rescale[1]):.10g}"
        ds.RescaleType = "US"
    if window is not None:
        pairs = [window] if np.ndim(window) == 1 else list(window)
        ds.WindowCenter = [f"{float(c):.10g}" for c, _w in pairs]
        ds.WindowWidth = [f"{float(w):.10g}" for _c, w in pairs]
    if voi_function is not None:
        ds.VOILUTFunction = voi_function.upper()
    if voi_lut is not None:
        data = np.asarray(voi_lut["data"], dtype=np.uint16)
        bits = int(voi_lut.get("bits", 16))
        item = Dataset()
        # LUT Descriptor (PS3.3 C.11.2.1.1): entries (0 means 65536), first mapped value, bits per entry.
        item.LUTDescriptor = [len(data) % 65536, int(voi_lut.get("first_mapped", 0)), bits]
        item["LUTDescriptor"].VR = "US"
        item.LUTExplanation = voi_lut.get("explanation", "VOI LUT")
        item.LUTData = data.tolist()
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = DicomSequence([item])

    if syntax == RLELossless:
        ds.PixelData = arr.tobytes()
        ds.compress(RLELossless, arr)
    elif syntax in _NATIVE:
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OB" if allocated == 8 else "OW"
    else:
        ds.PixelData = encapsulate([_encode_frame(arr, syntax, stored, signed)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        if syntax == JPEG2000:
            ds.LossyImageCompression = "01"
    meta.TransferSyntaxUID = syntax
    ds.is_implicit_VR = syntax == ImplicitVRLittleEndian
    ds.is_little_endian = True

    for keyword, value in (extra or {}).items():
        if value is DELETE:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def write_mg_dicom(path: str | os.PathLike, pixels: np.ndarray, **options: Any) -> Path:
    """Write `pixels` (uint8/uint16, or int16 with `rescale`) as a DICOM MG (or DX) file, atomically.

    Options (all keywords; see `build_mg_dataset`):
      spacing_mm=(row, col) or None; spacing_tag="PixelSpacing" | "ImagerPixelSpacing" or both
      as a tuple; laterality "L"/"R"; view "CC"/"MLO"/... written as View Position and as the View
      Code Sequence (view_encoding="both" | "tag" | "code" | "none"); patient_id, patient_name,
      study_id, study_date ("YYYYMMDD" or date), accession_number, study_uid/series_uid/sop_uid;
      bits_stored; photometric "MONOCHROME2" | "MONOCHROME1"; presentation_intent
      "FOR PRESENTATION" | "FOR PROCESSING" (which also picks the SOP class); modality "MG" | "DX";
      window=(centre, width) or a list of them; voi_function "LINEAR" | "LINEAR_EXACT" | "SIGMOID";
      voi_lut={"first_mapped": n, "bits": b, "data": array}; rescale=(slope, intercept);
      chest_wall "left" | "right" (writes Patient Orientation); transfer_syntax one of
      TRANSFER_SYNTAXES or a UID; extra={keyword: value} set last (value None deletes the element).
    """
    ds = build_mg_dataset(pixels, **options)
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=False)
    return atomic_write_bytes(path, buffer.getvalue())

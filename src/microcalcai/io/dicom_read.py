"""DICOM (MG, DX and digitised film) -> Mammogram.

Order of operations, as PS3.3 C.11 prescribes for grey images: stored values -> Modality LUT
(Rescale Slope/Intercept or Modality LUT Sequence) -> VOI LUT (window or VOI LUT Sequence) ->
Presentation LUT (MONOCHROME1 inverted last, so that higher always means denser).
Every check that could refuse the file runs on the header, before any pixel is decoded.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from microcalcai.errors import InputError
from microcalcai.io.codes import laterality_from_code, view_from_code
from microcalcai.io.image import DeferredPixels, Mammogram
from microcalcai.io.intensity import (
    VOI_FUNCTIONS,
    Transform,
    Window,
    apply_lut,
    apply_window,
    lut_table,
    percentile_sample_step,
    robust_range,
    scale_range,
)

# Refuse, before decoding, images whose header promises more than this many pixels per frame
# or more decoded bytes in all (a corrupt or hostile header must not exhaust memory).
# The largest mammography detectors are ~30 megapixels: a header claiming far more is corrupt (or
# hostile) and is refused before anything is decoded. Any reader of the library (command line,
# training) is held to this; the server holds uploads to its smaller memory budget
# (server.validation.max_upload_pixels). Override with MICROCALCAI_MAX_PIXELS.
CORRUPT_HEADER_PIXELS = int(os.environ.get("MICROCALCAI_MAX_PIXELS", 200_000_000))
CORRUPT_HEADER_BYTES = 4 * CORRUPT_HEADER_PIXELS

FOR_PROCESSING_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray Image Storage - For Processing
}
FOR_PROCESSING_MODES = ("auto", "window", "percentile")
KNOWN_VIEWS = ("CC", "MLO", "ML", "LM", "LMO", "XCCL", "XCCM", "FB", "SIO", "ISO", "AT", "RL", "RM")
# CBIS-DDSM and similar research sets put the laterality and view only in names such as
# "Calc-Training_P_00005_RIGHT_CC": used as a last resort, and the source says so.
_NAME_PATTERN = re.compile(r"(?:^|[_\W])(LEFT|RIGHT)_(CC|MLO|ML|LM)(?:$|[_\W])", re.IGNORECASE)


def _rescale(ds, path) -> tuple[float, float]:
    """Rescale Slope and Intercept, refused where they (or the stored range through them) are not
    finite in float32: NaN or infinity there would turn every pixel into NaN, which no crop,
    model or statistic downstream can use."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    bits = int(ds.get("BitsStored", 16) or 16)
    with np.errstate(over="ignore", invalid="ignore"):
        reach = np.float32(slope) * np.float32(2.0**bits) + np.float32(intercept)
    if not (np.isfinite(np.float32(slope)) and np.isfinite(np.float32(intercept)) and np.isfinite(reach)):
        raise InputError(
            f"{path}: {tag_name('RescaleSlope')} {slope:g} and {tag_name('RescaleIntercept')} "
            f"{intercept:g} do not map the stored values to finite numbers; the file's header is "
            "damaged: export the image again"
        )
    return slope, intercept


def tag_name(keyword: str) -> str:
    """'PixelSpacing' -> 'Pixel Spacing (0028,0030)' for messages."""
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{dictionary_description(tag)} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def as_list(value: Any) -> list:
    """A DICOM value as a list: multi-valued elements as they are, a single value wrapped, None empty."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def looks_like_dicom(head: bytes) -> bool:
    """A Part 10 file ("DICM" at 128), or a bare data set starting with a group 0002 or 0008 tag."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00"


def open_dicom(path: Path):
    """pydicom data set of `path`, or InputError saying why it cannot be read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        raise InputError(
            f"{path}: cannot open the file ({exc.strerror}); check the path and permissions"
        ) from exc
    force = not (len(head) >= 132 and head[128:132] == b"DICM")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(str(path), force=force)
    except InvalidDicomError as exc:
        raise InputError(
            f"{path}: not a DICOM file ({exc}); give a DICOM, PNG, TIFF, PGM or NRRD image"
        ) from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:
        raise InputError(
            f"{path}: truncated or corrupt DICOM header ({type(exc).__name__}: {exc}); "
            "copy the file again from its source or re-export it"
        ) from exc
    for warning in caught:
        text = str(warning.message)
        if "End of file reached" in text or "truncated" in text.lower():
            raise InputError(
                f"{path}: the file is truncated or corrupt ({text}); copy it again from its source"
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if force and "PixelData" not in ds and not ds.get("SOPClassUID") and len(ds) < 3:
        raise InputError(
            f"{path}: not a DICOM file (no DICOM preamble or data elements); "
            "give a DICOM, PNG, TIFF, PGM or NRRD image"
        )
    if "TransferSyntaxUID" not in ds.file_meta:
        # A bare data set without file meta: pydicom guessed the encoding while reading.
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
        )
    return ds


def _int_tag(
    ds, keyword: str, path: Path, *, required: bool = True, default: int | None = None
) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        if required:
            raise InputError(f"{path}: the tag {tag_name(keyword)} is missing; this is not a readable image")
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: the tag {tag_name(keyword)} has the invalid value {value!r}") from exc


def check_image_header(ds, path: Path, *, check_decoder: bool = True) -> dict[str, Any]:
    """Validate what decoding needs, before decoding; returns rows, columns, frames, bits etc.

    With check_decoder=False a compressed syntax that no installed decoder handles is not an
    error (inspect describes the header of such files).
    """
    if "PixelData" not in ds:
        extra = (
            " (it holds floating point pixels, which mammography does not use)"
            if ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds)
            else ""
        )
        raise InputError(
            f"{path}: no {tag_name('PixelData')}{extra}: this DICOM object is not an image "
            f"(SOP class {ds.get('SOPClassUID', 'unknown')!s}); give the image file of the series"
        )
    rows = _int_tag(ds, "Rows", path)
    cols = _int_tag(ds, "Columns", path)
    frames = _int_tag(ds, "NumberOfFrames", path, required=False, default=1) or 1
    allocated = _int_tag(ds, "BitsAllocated", path)
    stored = _int_tag(ds, "BitsStored", path, required=False, default=allocated)
    samples = _int_tag(ds, "SamplesPerPixel", path, required=False, default=1)
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise InputError(
            f"{path}: the header says {rows} rows x {cols} columns x {frames} frames; the file is corrupt"
        )
    if allocated not in (1, 8, 16, 32) or not 1 <= stored <= allocated:
        raise InputError(
            f"{path}: {tag_name('BitsAllocated')}={allocated} with {tag_name('BitsStored')}={stored} "
            "is not a valid grey image; the file is corrupt"
        )
    if samples != 1:
        raise InputError(
            f"{path}: {tag_name('SamplesPerPixel')}={samples} ({ds.get('PhotometricInterpretation')}): "
            "a colour image; mammograms are greyscale, give the original MG/DX image"
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(
            f"{path}: {tag_name('PhotometricInterpretation')} is {photometric!r}; "
            "only MONOCHROME1 and MONOCHROME2 images can be read"
        )
    pixels = rows * cols
    decoded = pixels * frames * max(allocated // 8, 1)
    if pixels > CORRUPT_HEADER_PIXELS or decoded > CORRUPT_HEADER_BYTES:
        raise InputError(
            f"{path}: the header claims {rows} x {cols} pixels x {frames} frames ({decoded / 2**30:.1f} GiB "
            f"decoded), beyond the limit of {CORRUPT_HEADER_PIXELS} pixels; the header is probably corrupt "
            "(raise MICROCALCAI_MAX_PIXELS only if the image is really that large)"
        )
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        compressed = syntax.is_compressed
    except ValueError:  # a UID pydicom does not know as a transfer syntax
        if check_decoder:
            raise InputError(
                f"{path}: the transfer syntax {syntax} is unknown to pydicom and cannot be decoded "
                "here; convert the file to an uncompressed syntax, e.g. with `gdcmconv --raw IN OUT`"
            ) from None
        compressed = True
    if not compressed:
        expected = (pixels * frames * allocated + 7) // 8
        length = len(ds.PixelData) if ds.PixelData is not None else 0
        if length < expected:
            raise InputError(
                f"{path}: {tag_name('PixelData')} has {length} bytes but {rows} x {cols} x {frames} pixels "
                f"of {allocated} bits need {expected}: the file is truncated; copy it again from its source"
            )
    elif check_decoder:
        _check_decodable(syntax, path)
    return {
        "rows": rows,
        "columns": cols,
        "frames": frames,
        "bits_allocated": allocated,
        "bits_stored": stored,
        "photometric": photometric,
    }


def _check_decodable(syntax, path: Path) -> None:
    import pydicom.config

    for handler in pydicom.config.pixel_data_handlers:
        if handler.supports_transfer_syntax(syntax) and handler.is_available():
            return
    raise InputError(
        f"{path}: the transfer syntax {syntax} ({syntax.name}) cannot be decoded here "
        "(no pydicom pixel handler supports it); convert the file to an uncompressed or "
        "RLE/JPEG lossless/JPEG-LS/JPEG 2000 syntax, e.g. with `gdcmconv --raw IN OUT` or `dcmdjpeg IN OUT`"
    )


def decode_frame(ds, path: Path, frame: int, frames: int) -> np.ndarray:
    if not 0 <= frame < frames:
        raise InputError(f"{path}: frame {frame} requested but the image has {frames} frame(s)")
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = ds.pixel_array
    except MemoryError as exc:
        raise InputError(
            f"{path}: not enough memory to decode {ds.Rows} x {ds.Columns} x {frames} pixels"
        ) from exc
    except Exception as exc:  # the decoders raise anything from ValueError to RuntimeError
        raise InputError(
            f"{path}: the pixel data ({syntax.name}) could not be decoded ({type(exc).__name__}: {exc}); "
            "the file is probably truncated or corrupt: copy it again from its source"
        ) from exc
    if frames > 1:
        arr = arr[frame].copy()  # a view would keep every frame alive with the image
    if arr.shape != (int(ds.Rows), int(ds.Columns)):
        raise InputError(
            f"{path}: decoded pixels have shape {arr.shape} but the header says "
            f"{ds.Rows} x {ds.Columns}; the file is corrupt"
        )
    return arr


def presentation_intent(ds) -> str:
    intent = str(ds.get("PresentationIntentType", "")).strip().upper()
    if intent in ("FOR PRESENTATION", "FOR PROCESSING"):
        return intent
    return (
        "FOR PROCESSING"
        if str(ds.get("SOPClassUID", "")) in FOR_PROCESSING_SOP_CLASSES
        else "FOR PRESENTATION"
    )


def spacing(ds, path: Path) -> tuple[tuple[float, float] | None, str | None]:
    """(row, column) spacing in mm and the tag it came from.

    Pixel Spacing (calibrated, usually to the breast support plane) is preferred; Imager Pixel
    Spacing (at the detector) next, used as stored, not divided by the Estimated Radiographic
    Magnification Factor (recorded in the metadata); digitised film falls back to Nominal
    Scanned Pixel Spacing.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        try:
            values = [float(v) for v in as_list(value)]
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: {tag_name(keyword)} has the invalid value {value!r}") from exc
        if len(values) == 1:
            values = values * 2
        if len(values) != 2 or min(values) <= 0 or not all(np.isfinite(values)):
            raise InputError(
                f"{path}: {tag_name(keyword)} = {value!r} is not two positive numbers; "
                "fix the tag or remove it"
            )
        return (values[0], values[1]), keyword
    return None, None


def _first_code(ds, keyword: str):
    seq = ds.get(keyword)
    return seq[0] if seq else None


def laterality(ds) -> tuple[str | None, str | None]:
    """('L'|'R'|None, the tag it came from)."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "")).strip().upper()
        if value in ("L", "R"):
            return value, keyword
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        item = _first_code(ds, group)
        anatomy = _first_code(item, "FrameAnatomySequence") if item is not None else None
        value = str(anatomy.get("FrameLaterality", "")).strip().upper() if anatomy is not None else ""
        if value in ("L", "R"):
            return value, f"{group}/FrameLaterality"
    for region_kw, modifier_kw in (
        ("AnatomicRegionSequence", "AnatomicRegionModifierSequence"),
        ("PrimaryAnatomicStructureSequence", "PrimaryAnatomicStructureModifierSequence"),
    ):
        for region in ds.get(region_kw) or []:
            for code in region.get(modifier_kw) or []:
                value = laterality_from_code(code.get("CodeValue"), code.get("CodeMeaning"))
                if value in ("L", "R"):
                    return value, f"{region_kw}/{modifier_kw}"
    match = _name_match(ds)
    if match:
        return match[0][0].upper(), f"{match[2]} (dataset naming, non-standard)"
    return None, None


def view(ds) -> tuple[str | None, str | None]:
    """('CC'|'MLO'|...|None, the tag it came from)."""
    value = str(ds.get("ViewPosition", "")).strip().upper()
    if value in KNOWN_VIEWS:
        return value, "ViewPosition"
    code = _first_code(ds, "ViewCodeSequence")
    if code is not None:
        value = view_from_code(code.get("CodeValue"), code.get("CodeMeaning"))
        if value:
            return value, "ViewCodeSequence"
    values = [str(v).strip().upper() for v in as_list(ds.get("PatientOrientation"))]
    if len(values) == 1 and values[0] in KNOWN_VIEWS:  # CBIS-DDSM writes the view here
        return values[0], "PatientOrientation (non-standard use)"
    match = _name_match(ds)
    if match:
        return match[1].upper(), f"{match[2]} (dataset naming, non-standard)"
    return None, None


def _name_match(ds) -> tuple[str, str, str] | None:
    for keyword in ("PatientID", "PatientName", "SeriesDescription"):
        found = _NAME_PATTERN.search(str(ds.get(keyword, "")))
        if found:
            return found.group(1), found.group(2), keyword
    return None


def chest_wall_from_orientation(ds) -> str | None:
    """'left' or 'right' from Patient Orientation (PS3.3 C.7.6.1.1.1), or None when it says nothing.

    Its first value is the patient direction of the rows (toward increasing column): anterior
    (toward the nipple) puts the chest wall at column 0, posterior puts it at the last column.
    """
    orientation = as_list(ds.get("PatientOrientation"))
    if len(orientation) != 2:
        return None
    row_direction = str(orientation[0]).upper()
    if row_direction.startswith("A"):
        return "left"
    if row_direction.startswith("P"):
        return "right"
    return None


def _windows(ds, path: Path) -> list[Window]:
    centers, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centers is None or widths is None or centers == "" or widths == "":
        return []
    centers, widths = as_list(centers), as_list(widths)
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        raise InputError(
            f"{path}: {tag_name('VOILUTFunction')} is {function!r}; "
            f"the standard defines {', '.join(VOI_FUNCTIONS)}"
        )
    windows = []
    for c, w in zip(centers, widths):  # noqa: B905 (extra centres or widths are ignored)
        c, w = float(c), float(w)
        if (function == "LINEAR" and w < 1) or w <= 0:
            raise InputError(
                f"{path}: {tag_name('WindowWidth')} = {w:g} is invalid for {function} "
                "(it must be >= 1 for LINEAR and > 0 otherwise); fix the tag or read with voi='none'"
            )
        windows.append(Window(c, w, function))
    return windows


def intensity_transform(
    ds,
    stored: np.ndarray,
    path: Path,
    *,
    for_processing: str = "auto",
    voi: str = "auto",
    window_index: int = 0,
) -> tuple[Transform, dict[str, Any]]:
    """The pointwise map of stored values to float32 0..1 higher = denser, and a record of it.

    Pointwise so that it can be tabled once over every stored value (intensity.StoredTable);
    `stored` is only read where the map depends on the image (percentiles, min..max).
    """
    if for_processing not in FOR_PROCESSING_MODES:
        raise InputError(f"for_processing={for_processing!r}: use one of {', '.join(FOR_PROCESSING_MODES)}")
    if voi not in ("auto", "window", "lut", "none"):
        raise InputError(f"voi={voi!r}: use one of auto, window, lut, none")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    intent = presentation_intent(ds)
    slope, intercept = _rescale(ds, path)
    record: dict[str, Any] = {"rescale": [slope, intercept] if (slope, intercept) != (1.0, 0.0) else None}
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    modality_lut = None
    if ds.get("ModalityLUTSequence"):
        modality_lut = lut_table(ds.ModalityLUTSequence[0], signed_input=signed)[:2]
        slope, intercept = 1.0, 0.0
        record["modality_lut"] = "ModalityLUTSequence"

    def modality(x: np.ndarray) -> np.ndarray:
        return x if modality_lut is None else apply_lut(x, *modality_lut)

    invert = photometric == "MONOCHROME1"
    windows = _windows(ds, path) if voi in ("auto", "window") else []
    has_lut = bool(ds.get("VOILUTSequence")) and voi in ("auto", "lut")
    if voi == "window" and not windows:
        raise InputError(f"{path}: voi='window' but the file has no {tag_name('WindowCenter')}/Width")
    if voi == "lut" and not has_lut:
        raise InputError(f"{path}: voi='lut' but the file has no {tag_name('VOILUTSequence')}")

    if (
        intent == "FOR PROCESSING"
        and for_processing != "window"
        and not (for_processing == "auto" and windows)
    ):
        return _for_processing(ds, stored, modality, slope, intercept, photometric, record)
    if has_lut:
        # pydicom prefers the VOI LUT Sequence when both are present; so do we (PS3.3 C.11.2
        # lets either be chosen). Its output is normalised by the LUT's declared bit depth.
        items = ds.VOILUTSequence
        if not 0 <= window_index < len(items):
            raise InputError(f"{path}: VOI LUT {window_index} requested but the file has {len(items)}")
        table, first, bits = lut_table(
            items[window_index], signed_input=signed or (slope, intercept) != (1.0, 0.0)
        )
        table = table * np.float32(1.0 / ((1 << bits) - 1))
        rescaled = modality_lut is None and (slope, intercept) != (1.0, 0.0)

        def voi_lut(x: np.ndarray) -> np.ndarray:
            values = x * np.float32(slope) + np.float32(intercept) if rescaled else modality(x)
            out = apply_lut(values, table, first)
            if invert:
                np.subtract(np.float32(1.0), out, out=out)
            return out

        record["voi"] = f"VOILUTSequence[{window_index}] ({bits}-bit)"
        return Transform(voi_lut), record
    if windows:
        if not 0 <= window_index < len(windows):
            raise InputError(
                f"{path}: window {window_index} requested but the file has {len(windows)} window(s)"
            )
        window = windows[window_index]
        record["voi"] = window.describe()
        return Transform(
            lambda x: apply_window(modality(x), window, slope=slope, intercept=intercept, invert=invert)
        ), record
    # No VOI: the full range the stored bits can hold, through the modality rescale (C.11.2:
    # without a VOI transformation the modality output is shown over its whole range).
    bits = int(ds.get("BitsStored", stored.dtype.itemsize * 8))
    lo, hi = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
    if modality_lut is None:
        record["voi"] = f"none (full {bits}-bit stored range)"
        if (
            (slope, intercept) == (1.0, 0.0)
            and not signed
            and not invert
            and bits == 8 * stored.dtype.itemsize
        ):
            # Digitised film's usual case: no value can leave the range, so one pass suffices.
            return Transform(lambda x: np.divide(x, np.float32(hi), dtype=np.float32), cheap=True), record
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        window = Window((lo + hi) / 2.0, hi - lo, "LINEAR_EXACT")
        return Transform(
            lambda x: apply_window(x, window, slope=slope, intercept=intercept, invert=invert)
        ), record
    values = modality(stored)
    lo, hi = float(np.min(values)), float(np.max(values))
    record["voi"] = "none (min..max after the modality LUT)"
    return Transform(lambda x: scale_range(modality(x), lo, hi, invert=invert)), record


def _for_processing(
    ds, stored, modality, slope, intercept, photometric, record
) -> tuple[Transform, dict[str, Any]]:
    """The documented normalisation of For Processing (raw detector) images.

    1. Modality rescale. 2. If Pixel Intensity Relationship is LIN (values proportional to
    X-ray intensity), take log(1 + v) so that values are proportional to attenuation, as in a
    presentation image. 3. Direction: Pixel Intensity Relationship Sign -1 means higher = less
    X-ray intensity = denser; +1 means the opposite and is inverted; without the sign,
    MONOCHROME1 is inverted. 4. The 0.5th..99.5th percentile range maps to 0..1 (clipped).
    Pixels equal to Pixel Padding Value (outside the detector's field) are left out of the
    percentiles and set to 0 (air).
    """
    relationship = str(ds.get("PixelIntensityRelationship", "")).strip().upper()

    def attenuation(x: np.ndarray) -> np.ndarray:
        out = modality(x).astype(np.float32)
        if (slope, intercept) != (1.0, 0.0):
            out *= np.float32(slope)
            out += np.float32(intercept)
        if relationship == "LIN":
            np.maximum(out, 0, out=out)
            np.log1p(out, out=out)
        return out

    sign = ds.get("PixelIntensityRelationshipSign")
    invert = int(sign) == 1 if sign not in (None, "") else photometric == "MONOCHROME1"
    padding = ds.get("PixelPaddingValue")
    padding = None if padding in (None, "") else int(padding)
    step = percentile_sample_step(stored.shape)
    sample = stored[::step, ::step]
    lo, hi = robust_range(attenuation(sample), valid=None if padding is None else sample != padding)
    record["voi"] = (
        f"for-processing: {'log, ' if relationship == 'LIN' else ''}"
        f"percentiles 0.5..99.5 ({lo:g}..{hi:g}){', inverted' if invert else ''}"
        f"{', padding excluded' if padding is not None else ''}"
    )

    def normalise(x: np.ndarray) -> np.ndarray:
        pixels = scale_range(attenuation(x), lo, hi, invert=invert)
        if padding is not None:
            pixels[x == padding] = 0.0
        return pixels

    return Transform(normalise), record


def read_dicom(
    path: Path, *, for_processing: str = "auto", voi: str = "auto", window_index: int = 0, frame: int = 0
) -> Mammogram:
    ds = open_dicom(path)
    header = check_image_header(ds, path)
    stored = decode_frame(ds, path, frame, header["frames"])
    transform, record = intensity_transform(
        ds, stored, path, for_processing=for_processing, voi=voi, window_index=window_index
    )
    # Windowed when first needed, and then only what is needed: a crop windows only its pixels.
    pixels = DeferredPixels(stored, transform)
    spacing_mm, spacing_source = spacing(ds, path)
    lat, lat_source = laterality(ds)
    vw, view_source = view(ds)
    metadata = header_metadata(ds, header)
    metadata.update(record)
    metadata.update(
        {
            "laterality_source": lat_source,
            "view_source": view_source,
            "chest_wall_from_header": chest_wall_from_orientation(ds),
        }
    )
    return Mammogram(
        pixels=pixels,
        spacing_mm=spacing_mm,
        spacing_source=spacing_source,
        laterality=lat,
        view=vw,
        source_path=path,
        metadata=metadata,
    )


def header_metadata(ds, header: dict[str, Any]) -> dict[str, Any]:
    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        return None if value is None or str(value) == "" else str(value)

    magnification = ds.get("EstimatedRadiographicMagnificationFactor")
    return {
        "format": "dicom",
        "modality": text("Modality"),
        "rows": header["rows"],
        "columns": header["columns"],
        "frames": header["frames"],
        "bits_allocated": header["bits_allocated"],
        "bits_stored": header["bits_stored"],
        "photometric": header["photometric"],
        "presentation_intent": presentation_intent(ds),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "sop_class_uid": text("SOPClassUID"),
        "sop_instance_uid": text("SOPInstanceUID"),
        "study_instance_uid": text("StudyInstanceUID"),
        "series_instance_uid": text("SeriesInstanceUID"),
        "patient_id": text("PatientID"),
        "study_id": text("StudyID"),
        "study_date": text("StudyDate"),
        "magnification_factor": float(magnification) if magnification not in (None, "") else None,
    }

"""The saliency map as a fractional DICOM Segmentation (PROBABILITY) over the source mammogram.

Why a Segmentation: OHIF and 3D Slicer (Quantitative Reporting / dcmqi) load SEG objects and
show them over the image they reference; a Parametric Map needs a Frame of Reference, which
digitised film and many projection mammograms lack (the CBIS-DDSM files have none); a Secondary
Capture is only a second picture beside the mammogram. With no Frame of Reference, highdicom
places a SEG on its single source frame pixel for pixel, so the map is resampled onto the
source's stored grid (zero outside the ROI) and stored compressed (JPEG-LS lossless).
"""

from __future__ import annotations

import copy

import numpy as np

from microcalcai import __version__
from microcalcai.dicom_out.device import (
    DEMONSTRATION_PARAMETER,
    MANUFACTURER,
    MODEL_NAME,
    device_uid,
    series_description,
)

MAX_FRACTION = 255


def map_on_source(saliency: np.ndarray, crop, shape: tuple[int, int]) -> np.ndarray:
    """The map resampled onto the source's stored pixels by the crop (RoiCrop.paste), 0 outside."""
    return np.nan_to_num(np.clip(crop.paste(saliency, shape), 0.0, 1.0), nan=0.0)


def saliency_segmentation(
    source,
    saliency: np.ndarray,
    crop,
    *,
    model: str,
    model_version: str,
    method: str,
    target: str,
    demonstration: bool = False,
):
    """A highdicom Segmentation holding the map (0..1 as 0..255 fractions) on `source`.

    `crop` is the RoiCrop the map was computed on (roi.crop_roi): it places the map on the source.
    `demonstration`: the model was trained on synthetic mammograms (series and algorithm say so).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import JPEGLSLossless, generate_uid

    canvas = map_on_source(saliency, crop, (source.Rows, source.Columns))
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model,
        version=str(model_version),
        family=codes.cid7162.ArtificialIntelligence,
        parameters={
            "saliency": method,
            "target": target,
            **(dict([DEMONSTRATION_PARAMETER.split("=", 1)]) if demonstration else {}),
        },
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=f"{method} saliency ({target})"[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.CalcificationCluster,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[_as_projection(source)],
        pixel_array=canvas[None],
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=MAX_FRACTION,
        segment_descriptions=[segment],
        series_instance_uid=generate_uid(),
        series_number=9702,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=__version__,
        device_serial_number=device_uid()[-16:],
        series_description=series_description("saliency", demonstration),
        transfer_syntax_uid=JPEGLSLossless,
        omit_empty_frames=False,
    )
    # General Image (PS3.3 C.7.6.1): without plane positions the image needs Patient Orientation
    # (Type 2C); the source's is copied when it is valid, else left empty.
    seg.PatientOrientation = _orientation(source)
    if "FrameOfReferenceUID" in source and "FrameOfReferenceUID" not in seg:
        # The map shares its source's frame of reference (hidden from highdicom only, above).
        seg.FrameOfReferenceUID = source.FrameOfReferenceUID
        seg.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "")
    return seg


def _as_projection(source):
    """The header highdicom is given: a projection image placed on its one frame pixel for pixel.

    A mammogram has no Image Position (Patient), so a Frame of Reference would send highdicom
    looking for plane positions it cannot have; and highdicom 0.22 writes a Pixel Measures item
    without Slice Thickness for a source that has Pixel Spacing but no Frame of Reference, then
    refuses to read its own file back. Both are dropped from the copy it sees: the SEG lies on
    its source pixel for pixel (Derivation Image Sequence), the spacing stays in the source, and
    the source's Frame of Reference UID is set on the SEG afterwards.
    """
    header = copy.copy(source)
    if "ImagePositionPatient" not in header:
        for keyword in ("FrameOfReferenceUID", "PositionReferenceIndicator"):
            if keyword in header:
                delattr(header, keyword)
    if "FrameOfReferenceUID" not in header and "SliceThickness" not in header and "PixelSpacing" in header:
        del header.PixelSpacing
    return header


def _orientation(source) -> list[str] | str:
    value = getattr(source, "PatientOrientation", None)
    values = [] if value is None else ([value] if isinstance(value, str) else list(value))
    ok = len(values) == 2 and all(v and set(str(v)) <= set("LRAPHF") for v in values)
    return [str(v) for v in values] if ok else ""

"""A copy of a DICOM mammogram that carries its pixels and geometry but nothing about the patient.

The server reads the copy exactly as it reads the original (same stored pixels, same modality
LUT, VOI LUT or window, MONOCHROME1 inversion, spacing, laterality and view), so a study gives the
same answer whichever way it reaches the server, while names, ids, dates, institutions and the
original UIDs stay on this machine.

An allow-list, not a block-list: pydicom ships no de-identification profile, and keeping only the
attributes the server reads cannot leak a private or unforeseen tag the way removing known ones
can. UIDs are replaced by ones derived from the originals (the same file always gives the same
copy, so its datastore id is stable), which cannot be turned back into the originals.
"""

from typing import Optional

from .errors import LogicError

# What the server reads to decode and display the image (microcalcai.io.dicom_read) and to place
# an ROI in millimetres; nothing here identifies a person.
KEPT_KEYWORDS = (
    # Image Pixel module
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    # Modality LUT, VOI LUT, presentation
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
    "PresentationLUTShape",
    "PresentationIntentType",
    "PixelIntensityRelationship",
    "PixelIntensityRelationshipSign",
    "BurnedInAnnotation",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    # Geometry and the view
    "PixelSpacing",
    "ImagerPixelSpacing",
    "NominalScannedPixelSpacing",
    "PixelSpacingCalibrationType",
    "EstimatedRadiographicMagnificationFactor",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PatientOrientation",
    "ImageLaterality",
    "Laterality",
    "ViewPosition",
    "ViewCodeSequence",
    "BodyPartExamined",
    "Modality",
    "SOPClassUID",
    "ImageType",
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
)
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# The server's DICOMweb datastore names an image by its series UID; the de-identified copy keeps
# a derived one, so the original is read here (the server may already hold that study).
DERIVED_UID_SALT = "MicrocalcAI de-identified copy"


def is_dicom(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM"


def series_uid(path: str) -> Optional[str]:
    """The file's Series Instance UID (read without the pixels), or None."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except Exception:  # pydicom raises many types for damaged files; the upload says why later
        return None
    value = ds.get("SeriesInstanceUID")
    return str(value) if value else None


def derived_uid(original: str) -> str:
    """A new UID (2.25 form, PS3.5 B.2) that the same original always maps to: a name-based UUID
    (pydicom's `generate_uid` ignores its entropy sources for a 2.25 UID)."""
    import uuid

    return "2.25.{}".format(uuid.uuid5(uuid.NAMESPACE_OID, DERIVED_UID_SALT + "/" + original).int)


def write_deidentified(path: str, target: str) -> str:
    """Write the de-identified copy of the DICOM file `path` to `target`; returns `target`."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset

    try:
        original = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises many types for damaged files
        raise LogicError(
            f"Cannot read '{path}' as DICOM ({error}): it cannot be sent to the server."
        ) from None
    if "PixelData" not in original and "FloatPixelData" not in original:
        raise LogicError(f"'{path}' holds no image (no Pixel Data): choose the mammogram's image file.")
    copy = Dataset()
    for keyword in KEPT_KEYWORDS:
        if keyword in original:
            copy[keyword] = original[keyword]
    for keyword in UID_KEYWORDS:
        if keyword in original:
            setattr(copy, keyword, derived_uid(str(original.get(keyword))))
    copy.PatientIdentityRemoved = "YES"
    copy.DeidentificationMethod = "MicrocalcAI allow-list: pixels, display and geometry only"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = original.get("SOPClassUID") or original.file_meta.get(
        "MediaStorageSOPClassUID", "1.2.840.10008.5.1.4.1.1.1.2"
    )
    meta.MediaStorageSOPInstanceUID = copy.get("SOPInstanceUID") or derived_uid(path)
    meta.TransferSyntaxUID = original.file_meta.TransferSyntaxUID
    copy.file_meta = meta
    _set_encoding(copy, meta.TransferSyntaxUID)
    copy.preamble = b"\0" * 128
    _save(copy, target)
    return target


def _set_encoding(ds, syntax) -> None:
    # pydicom 2 needs these two flags to write; pydicom 3 derives them from the transfer syntax.
    ds.is_little_endian = not syntax == "1.2.840.10008.1.2.2"
    ds.is_implicit_VR = syntax == "1.2.840.10008.1.2"


def _save(ds, target: str) -> None:
    try:
        ds.save_as(target, enforce_file_format=True)  # pydicom >= 3
    except TypeError:
        ds.save_as(target, write_like_original=False)  # pydicom 2

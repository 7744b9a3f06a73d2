"""Helpers shared by the Slicer module's tests (real MRML nodes from slicer-core)."""

import numpy as np


def make_volume(scene, pixels, spacing=(1.0, 1.0), origin=(0.0, 0.0, 0.0), directions=None, name="image"):
    """A 2D scalar volume node with the given geometry; `directions` is 3x3 (columns: I, J, K)."""
    from slicer.util import updateVolumeFromArray

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    updateVolumeFromArray(node, np.asarray(pixels))
    node.SetSpacing(spacing[0], spacing[1], 1.0)
    node.SetOrigin(*origin)
    if directions is not None:
        node.SetIJKToRASDirections([list(row) for row in np.asarray(directions, dtype=float)])
    return node


def rotation_z(degrees):
    angle = np.radians(degrees)
    return np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])


# Geometries a mammogram volume meets in practice: plain pixels; DICOM's LPS flip of both
# in-plane axes with non-unit spacing and an origin; a single flipped axis (left-handed);
# an arbitrary in-plane rotation with anisotropic spacing.
GEOMETRIES = {
    "identity": dict(spacing=(1.0, 1.0), origin=(0.0, 0.0, 0.0), directions=np.eye(3)),
    "lps-flip": dict(
        spacing=(0.07, 0.07), origin=(-31.5, 120.25, 4.0), directions=np.diag([-1.0, -1.0, 1.0])
    ),
    "one-flipped-axis": dict(
        spacing=(0.1, 0.05), origin=(12.0, -7.5, 0.0), directions=np.diag([1.0, -1.0, 1.0])
    ),
    "rotated": dict(spacing=(0.2, 0.1), origin=(5.0, 6.0, -2.0), directions=rotation_z(30.0)),
}


# A patient header the de-identified copy must not carry (checked field by field and as bytes).
PATIENT = {
    "PatientName": "Doe^Jane",
    "PatientID": "PAT-4711-X",
    "PatientBirthDate": "19610214",
    "AccessionNumber": "ACC-99812",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "StudyDate": "20240305",
    "OtherPatientIDs": "OTHER-ID-31",
}


def write_identified_mammogram(path, seed: int = 11):
    """A MONOCHROME1 mammogram whose display depends on its header (rescale, a non-linear VOI
    LUT Sequence, 0.085 mm spacing), with a full patient header; returns its path."""
    from microcalcai.io.dicom_write import write_mg_dicom

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:300, 0:260]
    tissue = 1800 + 900 * np.exp(-((xx - 150) ** 2 + (yy - 140) ** 2) / 9000.0)
    pixels = tissue + rng.normal(0, 60, tissue.shape)
    for cx, cy in [(120, 130), (128, 137), (135, 126), (124, 142)]:
        pixels[(xx - cx) ** 2 + (yy - cy) ** 2 <= 4] -= 700  # MONOCHROME1: dense is dark
    lut = (np.sqrt(np.linspace(0, 1, 4096)) * 65535).astype(np.uint16)
    return write_mg_dicom(
        path,
        np.clip(pixels, 0, 4095).astype(np.uint16),
        bits_stored=12,
        photometric="MONOCHROME1",
        voi_lut={"first_mapped": 0, "bits": 16, "data": lut},
        rescale=(1.0, 0.0),
        spacing_mm=(0.085, 0.085),
        laterality="L",
        view="CC",
        patient_id=PATIENT["PatientID"],
        patient_name=PATIENT["PatientName"],
        study_date=PATIENT["StudyDate"],
        accession_number=PATIENT["AccessionNumber"],
        extra={
            k: PATIENT[k]
            for k in ("PatientBirthDate", "InstitutionName", "ReferringPhysicianName", "OtherPatientIDs")
        },
    )


def dicom_module_volume(scene, path):
    """A volume as Slicer's DICOM module leaves it: read by Slicer's reader, no storage node, no
    file name anywhere on it, only the DICOM.instanceUIDs attribute."""
    import pydicom
    from microcalcai_logic.volumes import SOURCE_ATTRIBUTE, load_volume

    volume = load_volume(scene, str(path))
    storage = volume.GetStorageNode()
    volume.SetAndObserveStorageNodeID(None)
    if storage is not None:
        scene.RemoveNode(storage)
    volume.RemoveAttribute(SOURCE_ATTRIBUTE)
    volume.SetName("1: MG L CC")
    uid = str(pydicom.dcmread(str(path), stop_before_pixels=True).SOPInstanceUID)
    volume.SetAttribute("DICOM.instanceUIDs", uid)
    return volume


def folder_instance_lookup(*paths):
    """Instance UID -> file for the given DICOM files: what Slicer's DICOM database answers
    (`fileForInstance`), for tests that run without the application."""
    import pydicom

    table = {str(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID): str(p) for p in paths}
    return table.get

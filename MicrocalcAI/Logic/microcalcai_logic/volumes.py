"""Mammograms as MRML scalar volume nodes: loading files, and remembering where they came from.

A volume that came from the server's datastore carries its image id as a node attribute, so
classification and annotation refer to the server's own copy instead of uploading pixels.
"""

import os
from typing import Callable, Optional

from .errors import LogicError

IMAGE_ID_ATTRIBUTE = "MicrocalcAI.ImageId"
SERVER_ATTRIBUTE = "MicrocalcAI.Server"
ROLE_ATTRIBUTE = "MicrocalcAI.Role"
SOURCE_ATTRIBUTE = "MicrocalcAI.SourceFile"
# Set by Slicer's DICOM module (DICOMScalarVolumePlugin): the SOP Instance UID of each slice.
# Its volumes have no storage node; the file is found through the DICOM database.
DICOM_INSTANCES_ATTRIBUTE = "DICOM.instanceUIDs"
VTK_READABLE = (".png", ".pgm", ".pnm")
SINGLE_FILE = 4  # vtkSlicerVolumesLogic loading option (LabelMap=1, CenterImage=2, SingleFile=4)
GREY_COLOR_NODE_ID = "vtkMRMLColorTableNodeGrey"
SUPPORTED_SUFFIXES = (
    ".dcm",
    ".dicom",
    ".png",
    ".pgm",
    ".nrrd",
    ".nhdr",
    ".nii",
    ".nii.gz",
    ".mha",
    ".tif",
    ".tiff",
)


def load_volume(scene, path: str, name: Optional[str] = None):
    """Read a 2D image file (DICOM, PNG, PGM, NRRD, ...) into a new scalar volume node.

    Uses Slicer's own volume reader (ITK/GDCM), the same in the Slicer application, in
    slicer-core and in trame-slicer, so the IJK grid is the file's stored pixel grid.
    """
    if not os.path.isfile(path):
        raise LogicError(f"Cannot open '{path}': the file does not exist.")
    node_name = name or _node_name(path)
    node = _read_with_slicer(scene, path, node_name)
    if (node is None or node.GetImageData() is None) and path.lower().endswith(VTK_READABLE):
        node = _load_with_vtk_reader(scene, path, node_name)
    if node is None or node.GetImageData() is None:
        raise LogicError(
            f"Cannot read '{os.path.basename(path)}' as an image: use a DICOM, PNG, PGM or NRRD mammogram."
        )
    node.SetAttribute(SOURCE_ATTRIBUTE, os.path.abspath(path))
    ensure_grey_display(node)
    return node


def _read_with_slicer(scene, path: str, name: str):
    """Slicer's own reader: `slicer.util.loadVolume` inside the application (its IO manager and
    the Volumes module's logic, wired to the application logic); elsewhere (slicer-core,
    trame-slicer have no IO manager) a volumes logic of our own on the given scene."""
    import slicer

    app = getattr(slicer, "app", None)
    if app is not None and hasattr(app, "ioManager") and scene is getattr(slicer, "mrmlScene", None):
        try:
            # Single file: without it the reader gathers every similar file of the folder into a series.
            return slicer.util.loadVolume(path, {"name": name, "singleFile": True, "show": False})
        except RuntimeError:  # loadVolume raises when the reader fails; the caller says why
            return None
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    return logic.AddArchetypeScalarVolume(path, name, SINGLE_FILE, None)


def ensure_grey_display(volume_node):
    """Give the volume a display node with a grey colour table, and return that display node.

    Slicer's volume reader leaves the colour table unset when it runs without the application's
    colour logic (slicer-core, trame-slicer), and a slice view then draws the image black.
    """
    display = volume_node.GetDisplayNode()
    if display is None:
        volume_node.CreateDefaultDisplayNodes()
        display = volume_node.GetDisplayNode()
    if display is None:
        raise LogicError(f"'{volume_node.GetName()}' cannot be displayed (no display node).")
    if not display.GetColorNodeID():
        display.SetAndObserveColorNodeID(GREY_COLOR_NODE_ID)
    return display


def _load_with_vtk_reader(scene, path: str, name: str):
    """PNG/PGM where Slicer's ITK readers lack those formats (slicer-core, trame-slicer).

    VTK's readers put the file's last row first; flip it back so J is the stored row, and give
    the volume the orientation Slicer's own reader gives a 2D image (LPS, so -1, -1 in RAS).
    """
    import numpy as np
    import vtk
    from slicer.util import updateVolumeFromArray
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkPNGReader() if path.lower().endswith(".png") else vtk.vtkPNMReader()
    if not reader.CanReadFile(path):
        return None
    reader.SetFileName(path)
    reader.Update()
    image = reader.GetOutput()
    cols, rows, _ = image.GetDimensions()
    scalars = image.GetPointData().GetScalars() if image is not None else None
    if scalars is None or cols * rows == 0:
        return None
    pixels = vtk_to_numpy(scalars).reshape(rows, cols, -1)
    # A colour export of a grey image: its mean of R, G, B; grey (+ alpha): the grey channel.
    grey = pixels[:, :, :3].mean(axis=2).astype(pixels.dtype) if pixels.shape[2] >= 3 else pixels[:, :, 0]
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    updateVolumeFromArray(node, np.ascontiguousarray(grey[::-1]))
    node.SetIJKToRASDirections([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    node.CreateDefaultDisplayNodes()
    return node


def _node_name(path: str) -> str:
    base = os.path.basename(path)
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] or base
    return base


def server_image_id(volume_node, server_url: Optional[str] = None) -> Optional[str]:
    """The datastore image id of a volume loaded from `server_url` (None for a local image)."""
    if volume_node is None:
        return None
    image_id = volume_node.GetAttribute(IMAGE_ID_ATTRIBUTE)
    if not image_id:
        return None
    if server_url is not None and volume_node.GetAttribute(SERVER_ATTRIBUTE) not in (None, server_url):
        return None
    return image_id


def mark_from_server(volume_node, image_id: str, server_url: str) -> None:
    volume_node.SetAttribute(IMAGE_ID_ATTRIBUTE, image_id)
    volume_node.SetAttribute(SERVER_ATTRIBUTE, server_url)


def dicom_instance_uids(volume_node) -> list:
    """The SOP Instance UIDs Slicer's DICOM module recorded for a volume (empty otherwise)."""
    if volume_node is None:
        return []
    return [uid for uid in (volume_node.GetAttribute(DICOM_INSTANCES_ATTRIBUTE) or "").split() if uid]


def slicer_dicom_database_lookup(instance_uid: str) -> Optional[str]:
    """The file of a DICOM instance in Slicer's DICOM database (None outside the application or
    when the database does not hold it)."""
    try:
        import slicer
    except ImportError:
        return None
    database = getattr(slicer, "dicomDatabase", None)
    if database is None or not database.isOpen:
        return None
    return database.fileForInstance(instance_uid) or None


def source_file(
    volume_node, instance_lookup: Optional[Callable[[str], Optional[str]]] = None
) -> Optional[str]:
    """The file a volume was read from, when it still exists on disk: its storage node's file,
    the file `load_volume` recorded, or (a volume of Slicer's DICOM module) its one instance's
    file found with `instance_lookup` (default: Slicer's DICOM database)."""
    if volume_node is None:
        return None
    storage = volume_node.GetStorageNode()
    for path in (
        storage.GetFileName() if storage is not None else None,
        volume_node.GetAttribute(SOURCE_ATTRIBUTE),
    ):
        if path and os.path.isfile(path):
            return path
    uids = dicom_instance_uids(volume_node)
    if len(uids) == 1:
        path = (instance_lookup or slicer_dicom_database_lookup)(uids[0])
        if path and os.path.isfile(path):
            return path
    return None


def find_role(scene, class_name: str, role: str):
    """The scene's node of this class that carries this role attribute, or None."""
    for index in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(index, class_name)
        if node.GetAttribute(ROLE_ATTRIBUTE) == role:
            return node
    return None


def singleton(scene, class_name: str, role: str, name: str):
    """The scene's one node with this role, created on first use: repeated runs update it."""
    node = find_role(scene, class_name, role)
    if node is None:
        node = scene.AddNewNodeByClass(class_name, name)
        node.SetAttribute(ROLE_ATTRIBUTE, role)
    return node

"""What leaves this machine for an image the server does not hold, and how it gets there once.

Never the original file: a DICOM goes as its de-identified copy (deidentify.py: the same pixels,
display mapping and geometry, no patient), a PNG or PGM as it is (those formats carry no patient
header), anything else (NRRD, NIfTI, a volume that exists only in memory) as its stored pixels in
a plain 2D NRRD. The copy is added to the server's datastore once (MONAI Label's
`PUT /datastore/image`), under an id made of its digest only (a file or node name can hold a
patient's name or id); classification and labels then refer to that id.

Split in two for the front ends' worker thread: `prepare_upload` reads the scene (main thread),
`send_upload` talks to the server (any thread).
"""

import hashlib
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .client import ServerClient
from .deidentify import is_dicom, series_uid, write_deidentified
from .errors import LogicError, ServerError
from .volumes import dicom_instance_uids, source_file

SENT_AS_IS = (".png", ".pgm")
ID_PREFIX = "local"


@dataclass
class PreparedUpload:
    kind: str  # "dicom" | "raster" | "nrrd"
    folder: str  # this upload's own temporary folder
    source: Optional[str] = None  # the file it is made from (dicom, raster)
    path: Optional[str] = None  # the file that is sent, once written (de-identified)
    image_id: Optional[str] = None  # the datastore id it gets: the digest of what is sent
    series_uid: Optional[str] = None  # the original's, to ask whether the server holds the study


def sent_without_view(volume_node) -> bool:
    """Whether this volume would be sent without a DICOM header (a PNG or PGM as it is, or its
    pixels as NRRD): then the server cannot read the view's laterality and projection, which a
    whole-image (BAC) model needs. A volume of Slicer's DICOM module counts as DICOM."""
    if dicom_instance_uids(volume_node):
        return False
    path = source_file(volume_node)
    return path is None or not is_dicom(path)


def write_nrrd(volume_node, folder: str) -> str:
    """The volume's pixels, in their stored grid, as a 2D NRRD the server can read."""
    import nrrd
    from slicer.util import arrayFromVolume

    pixels = np.array(arrayFromVolume(volume_node))[0]
    path = os.path.join(folder, "image.nrrd")
    # index_order "C": the array is (rows, cols) and NRRD's first axis becomes x (columns).
    nrrd.write(path, np.ascontiguousarray(pixels), index_order="C")
    return path


def prepare_upload(
    volume_node, folder: str, instance_lookup: Optional[Callable[[str], Optional[str]]] = None
) -> PreparedUpload:
    """Decide what would be sent for this volume (reads the scene: GUI thread). Only a volume
    without a file has its pixels written here; a file's copy is made by `write_upload`, on the
    worker, so a large mammogram does not hold up the GUI."""
    os.makedirs(folder, exist_ok=True)
    path = source_file(volume_node, instance_lookup)
    if path is None and dicom_instance_uids(volume_node):
        uids = dicom_instance_uids(volume_node)
        raise LogicError(
            "'{}' came from Slicer's DICOM database, but its file ({}) cannot be found there: "
            "import the study again in the DICOM module, or load the DICOM file with "
            "Add Data, and classify again.".format(
                volume_node.GetName(), uids[0] if len(uids) == 1 else f"{len(uids)} instances"
            )
        )
    if path is not None and is_dicom(path):
        return PreparedUpload(kind="dicom", folder=folder, source=path)
    if path is not None and path.lower().endswith(SENT_AS_IS):
        return PreparedUpload(kind="raster", folder=folder, source=path)
    return PreparedUpload(kind="nrrd", folder=folder, path=write_nrrd(volume_node, folder))


def write_upload(prepared: PreparedUpload) -> PreparedUpload:
    """Write the file that is sent (any thread: no scene access) and name it by its digest."""
    if prepared.path is None and prepared.kind == "dicom":
        prepared.path = write_deidentified(prepared.source, os.path.join(prepared.folder, "image.dcm"))
        prepared.series_uid = series_uid(prepared.source)
    elif prepared.path is None:
        prepared.path = os.path.join(prepared.folder, "image" + os.path.splitext(prepared.source)[1].lower())
        shutil.copyfile(prepared.source, prepared.path)
    if prepared.image_id is None:
        prepared.image_id = _digest_id(prepared.path)
    return prepared


def _digest_id(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{ID_PREFIX}-{digest.hexdigest()[:16]}"


def is_uploaded_copy(image_id: Optional[str]) -> bool:
    """Whether a datastore id names a de-identified copy this module sent (not an original)."""
    return bool(image_id) and image_id.startswith(ID_PREFIX + "-")


def held_by_server(client: ServerClient, prepared: PreparedUpload) -> Optional[str]:
    """The server's id for this study when it already holds it (a DICOMweb datastore names an
    image by its series UID; so does a local one whose file is named so), else None."""
    for candidate in (prepared.series_uid, prepared.image_id):
        if not candidate:
            continue
        try:
            # MONAI Label answers an empty record (200) for an id its datastore does not hold.
            if client.image_info(candidate):
                return candidate
        except ServerError as error:
            if error.status not in (400, 404, 422):
                raise
    return None


def send_upload(client: ServerClient, prepared: PreparedUpload, progress=None) -> str:
    """The datastore id of the prepared image: the one the server already has, or a new one
    (any thread: no scene access). `progress(fraction)` follows the upload."""
    write_upload(prepared)
    held = held_by_server(client, prepared)
    if held is not None:
        return held
    return client.upload_image(prepared.image_id, prepared.path, progress=progress)

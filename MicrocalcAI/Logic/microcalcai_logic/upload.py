"""Pixels for the server when it does not hold the image: the file a volume was loaded from
(the server then reads it exactly as it reads its own studies), or, for a volume that exists
only in memory, its pixels as a 2D NRRD."""

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from .client import ServerClient
from .volumes import mark_from_server, server_image_id, source_file

UPLOADABLE_SUFFIXES = (".dcm", ".dicom", ".png", ".pgm", ".nrrd")


def _is_dicom(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM"


def write_nrrd(volume_node, folder: str) -> str:
    """The volume's pixels, in their stored grid, as a 2D NRRD the server can read."""
    import nrrd
    from slicer.util import arrayFromVolume

    pixels = np.array(arrayFromVolume(volume_node))[0]
    path = os.path.join(folder, "image.nrrd")
    # index_order "C": the array is (rows, cols) and NRRD's first axis becomes x (columns).
    nrrd.write(path, np.ascontiguousarray(pixels), index_order="C")
    return path


@contextlib.contextmanager
def upload_file(volume_node) -> Iterator[str]:
    """A path to upload for this volume, valid inside the `with` block."""
    path = source_file(volume_node)
    if path is not None and (path.lower().endswith(UPLOADABLE_SUFFIXES) or _is_dicom(path)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="microcalcai-") as folder:
        yield write_nrrd(volume_node, folder)


def publish(client: ServerClient, volume_node) -> str:
    """Put a local image into the server's datastore (once) so labels can be stored for it.

    The id is the node's name plus a digest of the file's bytes: the same file always gets the
    same id, two different files never share one.
    """
    existing = server_image_id(volume_node, client.url)
    if existing:
        return existing
    with upload_file(volume_node) as path:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in volume_node.GetName()) or "image"
        image_id = f"{stem[:48]}-{digest.hexdigest()[:12]}"
        image_id = client.upload_image(image_id, path)
    mark_from_server(volume_node, image_id, client.url)
    return image_id

"""Opening an image of the server's datastore as a volume node (Next sample uses it)."""

import os

from .client import ServerClient
from .errors import LogicError
from .volumes import ROLE_ATTRIBUTE, find_role, load_volume, mark_from_server

SAMPLE_ROLE = "sample"


def open_image(client: ServerClient, scene, image_id: str, cache_folder: str):
    """Download and load a datastore image, replacing the previously opened one, so a long
    annotation session does not fill memory with mammograms."""
    path = client.download_image(image_id, os.path.join(cache_folder, _safe(image_id)))
    return load_downloaded(client.url, scene, image_id, path)


def load_downloaded(server_url: str, scene, image_id: str, path: str):
    """The scene half of `open_image` (the download may run on a worker thread)."""
    previous = find_role(scene, "vtkMRMLScalarVolumeNode", SAMPLE_ROLE)
    volume = load_volume(scene, path, name=image_id)
    if previous is not None:
        scene.RemoveNode(previous)
    volume.SetAttribute(ROLE_ATTRIBUTE, SAMPLE_ROLE)
    mark_from_server(volume, image_id, server_url)
    return volume


def _safe(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
    if not cleaned.strip("."):
        raise LogicError(f"The server proposed an image id that is not usable as a name: {text!r}.")
    return cleaned

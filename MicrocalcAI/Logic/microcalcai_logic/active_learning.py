"""Next sample: ask the server's active-learning strategy for the most useful unlabeled ROI,
load its image and put the ROI box over it."""

import os
from dataclasses import dataclass
from typing import Optional

from .client import ServerClient
from .errors import LogicError
from .geometry import PixelRoi, place_roi_node
from .volumes import find_role, load_volume, mark_from_server, singleton

SAMPLE_ROLE = "sample"
ROI_ROLE = "roi"


@dataclass(frozen=True)
class NextSample:
    image_id: str
    roi: PixelRoi
    strategy: str
    score: Optional[float]
    path: str


def request_next_sample(
    client: ServerClient,
    strategy: str,
    method: Optional[str] = None,
    model: Optional[str] = None,
    client_id: str = "",
) -> Optional[dict]:
    """The server's answer, or None when every candidate ROI is labeled."""
    body = {}
    if method:
        body["method"] = method
    if model and model != "ensemble":
        body["model"] = model
    if client_id:
        body["client_id"] = client_id
    answer = client.next_sample(strategy, body)
    return answer if answer and answer.get("id") else None


def load_next_sample(client: ServerClient, scene, answer: dict, cache_folder: str, roi_node=None):
    """Download and load the proposed image (replacing the previous sample's volume, so a long
    annotation session does not fill memory with mammograms) and place the ROI box on it."""
    image_id = str(answer["id"])
    roi = PixelRoi.from_params(answer.get("roi") or {})
    path = client.download_image(image_id, os.path.join(cache_folder, _safe(image_id)))
    previous = find_role(scene, "vtkMRMLScalarVolumeNode", SAMPLE_ROLE)
    volume = load_volume(scene, path, name=image_id)
    if previous is not None:
        scene.RemoveNode(previous)
    volume.SetAttribute("MicrocalcAI.Role", SAMPLE_ROLE)
    mark_from_server(volume, image_id, client.url)
    if roi_node is None:
        roi_node = singleton(scene, "vtkMRMLMarkupsROINode", ROI_ROLE, "MicrocalcAI ROI")
    place_roi_node(roi_node, volume, roi)
    score = answer.get("score")
    sample = NextSample(
        image_id=image_id,
        roi=roi,
        strategy=str(answer.get("strategy", "")),
        score=float(score) if score is not None else None,
        path=path,
    )
    return sample, volume, roi_node


def _safe(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
    if not cleaned.strip("."):
        raise LogicError(f"The server proposed an image id that is not usable as a name: {text!r}.")
    return cleaned

"""Next sample: ask the server's active-learning strategy for the most useful unlabeled ROI,
load its image and put the ROI box over it."""

from dataclasses import dataclass
from typing import Optional

from .client import ServerClient
from .datastore import load_downloaded
from .geometry import PixelRoi, place_roi_node
from .volumes import singleton, source_file

ROI_ROLE = "roi"


@dataclass(frozen=True)
class NextSample:
    image_id: str
    roi: PixelRoi
    strategy: str
    score: Optional[float]
    path: str
    stage: str = ""  # the strategy `auto` asked on its behalf: uncertain or random

    @property
    def proposer(self) -> str:
        """The strategy with the stage it was in, as a person reads it (the web page's wording):
        "auto (uncertain stage)"."""
        return f"{self.strategy} ({self.stage} stage)" if self.stage else self.strategy


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


def _strategy_name(value) -> str:
    # MONAI Label answers the strategy as its own record, {name: {"ts": ..., "client_id": ...}}.
    if isinstance(value, dict):
        return ", ".join(str(key) for key in value)
    return "" if value is None else str(value)


def load_next_sample(client: ServerClient, scene, answer: dict, path: str, roi_node=None):
    """Load the proposed image (downloaded to `path`) and place the ROI box on it."""
    image_id = str(answer["id"])
    roi = PixelRoi.from_params(answer.get("roi") or {})
    volume = load_downloaded(client.url, scene, image_id, path)
    if roi_node is None:
        roi_node = singleton(scene, "vtkMRMLMarkupsROINode", ROI_ROLE, "MicrocalcAI ROI")
    place_roi_node(roi_node, volume, roi)
    score = answer.get("score")
    sample = NextSample(
        image_id=image_id,
        roi=roi,
        strategy=_strategy_name(answer.get("strategy")),
        score=float(score) if score is not None else None,
        path=source_file(volume) or "",
        stage=str(answer.get("stage") or ""),
    )
    return sample, volume, roi_node

"""Classification labels for the current ROI: benign or malignant, with optional BI-RADS
calcification descriptors, saved to the server's datastore (tag `final`, which training reads)."""

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from .client import ServerClient
from .contract import DISTRIBUTIONS, LABELS, MORPHOLOGIES
from .errors import LogicError
from .geometry import PixelRoi


def display_name(term: str) -> str:
    """'fine_linear_branching' -> 'Fine linear branching' for menus."""
    return term.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Annotation:
    label: str
    morphology: Optional[str] = None
    distribution: Optional[str] = None
    annotator: str = ""
    comment: str = ""

    def validated(self) -> "Annotation":
        if self.label not in LABELS:
            raise LogicError(f"The label must be benign or malignant (got '{self.label}').")
        if self.morphology and self.morphology not in MORPHOLOGIES:
            raise LogicError(
                "Unknown BI-RADS morphology '{}': choose one of {}.".format(
                    self.morphology, ", ".join(MORPHOLOGIES)
                )
            )
        if self.distribution and self.distribution not in DISTRIBUTIONS:
            raise LogicError(
                "Unknown BI-RADS distribution '{}': choose one of {}.".format(
                    self.distribution, ", ".join(DISTRIBUTIONS)
                )
            )
        return self

    def document(self, roi: PixelRoi) -> dict[str, Any]:
        body = {
            "roi": roi.as_params(),
            "label": self.label,
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for key in ("morphology", "distribution", "annotator", "comment"):
            value = getattr(self, key)
            if value:
                body[key] = value
        return body


def save_annotation(
    client: ServerClient, image_id: Optional[str], roi: Optional[PixelRoi], annotation: Annotation
) -> list[dict[str, Any]]:
    """Save and return every annotation the server now holds for this image."""
    if roi is None:
        raise LogicError("Place an ROI on the calcifications (and classify it) before labelling it.")
    if not image_id:  # the Logic publishes local images first; this guards direct callers
        raise LogicError(
            "This image is not in the server's datastore, so a label cannot be stored for it: "
            "open it from the server (or with Next sample) to annotate it."
        )
    answer = client.save_label(image_id, annotation.validated().document(roi))
    return list(answer.get("annotations") or [])

"""Save to PACS: a classification stored as DICOM (SR and saliency Segmentation) in the archive
the server reads its images from (docs/dicom-out.md).

The objects cite their source by Study, Series and SOP Instance UID, so they belong in the
source's own study. That is only possible when the server holds the original: an image of its
datastore (a studies folder, or a DICOMweb archive whose study it is). A local image this module
sent as a de-identified copy has new UIDs and no place in the original study's archive: results
for it would reference the copy, so Save to PACS refuses it instead of writing such objects.
"""

from dataclasses import dataclass, field
from typing import Optional

from .classify import Classification
from .upload import is_uploaded_copy
from .volumes import server_image_id


@dataclass
class PacsSave:
    """What Save to PACS stored (`stored`), where, and the one line the front ends show."""

    stored: bool
    where: str  # "folder" (beside the study, on the server's disk), "stow-rs" (DICOMweb), or ""
    objects: list = field(default_factory=list)  # per object: modality, study/series/SOP instance UIDs
    message: str = ""
    classification: Optional[Classification] = None

    def sop_instance_uids(self) -> list:
        return [str(o.get("sop_instance_uid")) for o in self.objects]


def refusal(volume_node, server_url: str) -> str:
    """Why results of this volume cannot go to its archive ('' when they can)."""
    image_id = server_image_id(volume_node, server_url)
    name = volume_node.GetName()
    if image_id is None:
        return (
            f"'{name}' is not an image of the server's archive: Save to PACS writes into the study "
            "the server holds. Open the study from the server (its image list or Next sample); a "
            "local DICOM whose original study the server's archive holds is recognised once you "
            "Classify it."
        )
    if is_uploaded_copy(image_id):
        return (
            f"'{name}' reached the server as a de-identified copy (new UIDs, no patient): results "
            "saved for it would reference the copy, not the original study, so they cannot go to "
            "that study's archive. Open the original study from the server (its image list or Next "
            "sample) to save results to PACS."
        )
    return ""


def describe(result: Classification) -> PacsSave:
    """The server's `dicom_out` (or its warning) as a PacsSave with its status line."""
    stored = result.dicom_out or {}
    objects = [dict(o) for o in stored.get("objects") or []]
    if not objects:
        why = (
            result.dicom_out_warning
            or "the server did not say why (is it a MicrocalcAI server of this version?)"
        )
        prefix = "no DICOM result was stored: "  # the server's own wording of its warning
        why = (why[len(prefix) :] if why.startswith(prefix) else why).rstrip(". ")
        return PacsSave(
            stored=False,
            where="",
            message=f"Nothing was saved to PACS: {why}. The classification is shown.",
            classification=result,
        )
    where = str(stored.get("stored") or "")
    kinds = ", ".join("{} {}".format(o.get("modality", "?"), o.get("sop_instance_uid", "?")) for o in objects)
    study = objects[0].get("study_uid", "?")
    if where == "folder":
        folder = _folder(objects[0].get("path"))
        place = f"written beside the study {study} on the server, in its studies folder's {folder}"
    else:
        place = f"sent to the DICOMweb archive, into study {study}"
    return PacsSave(
        stored=True,
        where=where,
        objects=objects,
        message=f"Saved to PACS: {kinds}; {place}.",
        classification=result,
    )


def _folder(path) -> str:
    import os

    return os.path.dirname(str(path)) if path else "its dicom-out folder"

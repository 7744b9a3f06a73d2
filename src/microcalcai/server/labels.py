"""Classification labels: one JSON document per image holding one annotation per ROI.

An annotation is what a reader decided about one ROI: benign or malignant, optionally the BI-RADS
(5th edition) calcification morphology and distribution, who decided and when. MONAI Label's
label API stores one label file per image and tag, so the annotations of an image are merged into
that one document: saving the same ROI again replaces its annotation, other ROIs are kept.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from microcalcai_logic.contract import DISTRIBUTIONS, LABELS, MORPHOLOGIES, PixelRoi, term_key

from microcalcai.server.errors import RequestError
from microcalcai.server.validation import parse_roi

FIELDS = ("roi", "label", "morphology", "distribution", "birads", "annotator", "time", "comment")


def _term(value, allowed: tuple[str, ...], field: str):
    if value in (None, ""):
        return None
    key = term_key(value)
    if key not in allowed:
        raise RequestError(
            f"{field} {value!r} is not a BI-RADS term this server knows; use one of {', '.join(allowed)}"
        )
    return key


def parse_annotation(fields: dict, *, client_id: str | None = None) -> dict:
    """Validate one annotation and fill its defaults (annotator, time)."""
    unknown = sorted(set(fields) - set(FIELDS) - {"client_id"})
    if unknown:
        raise RequestError(f"label has unknown field(s) {unknown}; allowed: {', '.join(FIELDS)}")
    if "roi" not in fields:
        raise RequestError(
            'label.roi is required: {"x": column, "y": row, "size": pixels} of the annotated ROI'
        )
    label = fields.get("label")
    if label not in LABELS:
        raise RequestError(f"label.label must be 'benign' or 'malignant', got {label!r}")
    annotation = {
        "roi": parse_roi(fields["roi"], where="label.roi").as_params(),
        "label": label,
        "morphology": _term(fields.get("morphology"), MORPHOLOGIES, "label.morphology"),
        "distribution": _term(fields.get("distribution"), DISTRIBUTIONS, "label.distribution"),
        "annotator": str(fields.get("annotator") or client_id or "anonymous"),
        "time": str(fields.get("time") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
    }
    for optional in ("birads", "comment"):
        if fields.get(optional) not in (None, ""):
            annotation[optional] = str(fields[optional])
    return annotation


def read_label_upload(path: Path, name: str | None = None) -> dict:
    """The annotation in an uploaded label file (JSON); an empty file means "all in params".
    `name` is the client's name for the file (messages never show the server's)."""
    data = path.read_bytes()
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestError(
            f"the label file {name or path.name!r} is not JSON; a classification label is a JSON object like "
            '{"roi": {"x": 120, "y": 80, "size": 256}, "label": "malignant"} (docs/server-api.md)',
            status=415,
        ) from None
    if not isinstance(value, dict):
        raise RequestError("the label file must hold one JSON object (one annotation)")
    return value


def annotation_fields(label_file: Path, params: dict, name: str | None = None) -> dict:
    """The fields of the annotation a save request carries: the label file's, then params'."""
    fields = read_label_upload(Path(label_file), name)
    fields.update({k: v for k, v in (params or {}).items() if k in FIELDS})
    return fields


def roi_key(annotation: dict) -> tuple:
    roi = annotation["roi"]
    return PixelRoi(float(roi["x"]), float(roi["y"]), int(roi["size"])).key


def merge(document: dict | None, image_id: str, annotation: dict) -> dict:
    """The image's document with `annotation` added, replacing one for the same ROI."""
    annotations = [] if not document else list(document.get("annotations", []))
    key = roi_key(annotation)
    annotations = [a for a in annotations if roi_key(a) != key] + [annotation]
    return {"image": image_id, "format": 1, "annotations": annotations}


def without_roi(document: dict, image_id: str, key: tuple) -> dict:
    """The document without the annotation of ROI `key` (404 when it has none)."""
    from microcalcai.server.errors import NotFound

    annotations = list((document or {}).get("annotations", []))
    kept = [a for a in annotations if roi_key(a) != key]
    if len(kept) == len(annotations):
        raise NotFound(
            f"image {image_id!r} has no annotation at ROI x={key[0]:g}, y={key[1]:g}, size={key[2]}; "
            "GET /datastore/label?label=ID&tag=final lists its annotations"
        )
    return {"image": image_id, "format": 1, "annotations": kept}


def read_document(path: Path) -> dict | None:
    try:
        value = json.loads(Path(path).read_text())
    except (FileNotFoundError, IsADirectoryError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("annotations"), list) else None

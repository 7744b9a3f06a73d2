"""Whole-image classification (breast arterial calcification, BAC): one view, or the four views
of an exam, asked of a whole-image model on the server, read into typed values.

No ROI: the model reads the whole mammogram. The server answers per view (P(BAC), the view's
laterality and projection, optionally a Grad-CAM++ map over the full image) and per exam (the
exam's score and verdict from its views, and which of the four views the study lacks).
Network and parsing only, no scene access: runs on a front end's worker thread; the scene half
is exam_results.py.
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .classify import read_nrrd_map
from .client import ModelInfo, ServerClient, ServerInfo
from .errors import LogicError, ServerError

WHOLE_IMAGE_TASK = "whole_image"
DEFAULT_MAP_METHOD = "gradcam++"  # the study's explanation (Mobini et al. 2024)
VERDICT_WORDS = ("BAC present", "no BAC")
DEMONSTRATION_WORDS = ". Demonstration model (trained on synthetic mammograms): not for real images."


@dataclass(frozen=True)
class MapGeometry:
    """Where a map lies on its view, in the view's stored pixels (x = column, y = row): map pixel
    (i, j) covers source pixel (x0 + i*sx, y0 + j*sy). Read from the NRRD's own header."""

    shape: tuple  # rows, cols
    origin_xy: tuple
    step_xy: tuple
    method: str = ""


@dataclass
class ViewResult:
    """One view's answer: its probability of BAC and, when asked, its map."""

    image_id: str
    view: str  # "L CC", "R MLO", ... ("" when the server does not know)
    probability: float
    threshold: Optional[float]
    decision: str  # the server's label for this view at the threshold, or ""
    model: str = ""
    version: str = ""
    image: dict = field(default_factory=dict)  # rows, cols, spacing_mm as the server read them
    saliency: Optional[np.ndarray] = None  # (rows, cols) float32 0..1
    geometry: Optional[MapGeometry] = None
    demonstration: bool = False  # the model was trained on synthetic mammograms (server's /info)

    @property
    def summary(self) -> str:
        """The line a person reads after Classify view."""
        return "{}: P(BAC) = {:.3f}, threshold {} -> {}".format(
            self.view or self.image_id,
            self.probability,
            "n/a" if self.threshold is None else f"{self.threshold:.3f}",
            self.decision or "no decision",
        ) + (DEMONSTRATION_WORDS if self.demonstration else "")


@dataclass
class ExamResult:
    """An exam's answer: the verdict from its views' scores, and each view's own."""

    model: str
    version: str
    exam_id: str
    probability: float  # the exam's score (the aggregation of its views)
    threshold: Optional[float]
    positive: Optional[bool]  # BAC in the exam (None without a threshold)
    aggregation: str
    views: list  # ViewResult, in the server's order: L CC, L MLO, R CC, R MLO
    missing: list = field(default_factory=list)  # views the study lacks ("L MLO", ...)
    patient_id: str = ""
    study_date: str = ""
    demonstration: bool = False  # the model was trained on synthetic mammograms (server's /info)

    @property
    def title(self) -> str:
        """'of PH0003, 2019-04-02' (the study UID when the header names no patient)."""
        named = ", ".join(p for p in (self.patient_id, self.study_date) if p)
        return "of " + (named or self.exam_id or "this image")

    @property
    def verdict(self) -> str:
        """The sentence a person reads: the exam's verdict, its score and the rule behind it."""
        if self.positive is None:
            call = "no verdict (the model has no threshold)"
        else:
            call = VERDICT_WORDS[0] if self.positive else VERDICT_WORDS[1]
        return "Exam {}: {} (P(BAC) = {:.3f}{}; {} of {} views)".format(
            self.title,
            call,
            self.probability,
            "" if self.threshold is None else f", threshold {self.threshold:.3f}",
            self.aggregation or "aggregate",
            len(self.views),
        ) + (DEMONSTRATION_WORDS if self.demonstration else "")

    def view_result(self, key: str) -> Optional[ViewResult]:
        """A view by its image id or its name ("L CC")."""
        for view in self.views:
            if key in (view.image_id, view.view):
                return view
        return None


def is_whole_image(model: Optional[ModelInfo]) -> bool:
    return model is not None and model.task == WHOLE_IMAGE_TASK


def whole_image_models(info: Optional[ServerInfo]) -> list:
    return [name for name in (info.model_names() if info else []) if is_whole_image(info.models[name])]


def check_whole_image_model(info: Optional[ServerInfo], model: str) -> None:
    """A clear error unless `model` is hosted and reads whole images."""
    if not model:
        raise LogicError("Choose a whole-image model (connect to the server first).")
    if info is None:
        raise LogicError("Connect to a MicrocalcAI server first.")
    if model not in info.models:
        raise LogicError(
            "The server does not host a model called '{}': choose one of {}.".format(
                model, ", ".join(info.model_names()) or "(none)"
            )
        )
    if not is_whole_image(info.models[model]):
        others = whole_image_models(info)
        raise LogicError(
            "'{}' classifies ROIs, not whole images: for an exam choose a whole-image model ({}).".format(
                model, ", ".join(others) if others else "this server hosts none"
            )
        )


def map_method(model: ModelInfo, wanted: Optional[str]) -> Optional[str]:
    """The map method asked for when the model offers it, else the model's own default."""
    if not wanted:
        return None
    if not model.saliency_methods or wanted in model.saliency_methods:
        return wanted
    return model.default_saliency or model.saliency_methods[0]


def request_view(
    client: ServerClient,
    info: Optional[ServerInfo],
    image_id: str,
    model: str,
    saliency: Optional[str] = DEFAULT_MAP_METHOD,
) -> ViewResult:
    """Ask a whole-image `model` about one datastore image (no ROI), with its map when
    `saliency` names a method."""
    check_whole_image_model(info, model)
    saliency = map_method(info.models[model], saliency)
    params = {"saliency": saliency if saliency else False}
    answer, nrrd_bytes = client.infer(model, params, image_id=image_id, output="all" if saliency else "json")
    result = parse_view(answer, image_id, model)
    result.demonstration = info.models[model].demonstration
    if nrrd_bytes is not None:
        result.saliency, result.geometry = read_map(nrrd_bytes, answer.get("saliency"))
    return result


def request_exam(
    client: ServerClient,
    info: Optional[ServerInfo],
    image_id: str,
    model: str,
    saliency: Optional[str] = DEFAULT_MAP_METHOD,
    progress=None,
) -> ExamResult:
    """The exam (study) `image_id` belongs to, as `model` scores it: the server's exam answer
    (verdict, per-view scores, missing views), then each view's map with a one-view request, as
    the server offers them (an exam answer carries no file). An incomplete study is refused with
    the views it lacks. `progress(message, fraction)` is called before each view's map; it may
    raise to stop."""
    check_whole_image_model(info, model)
    answer, _ = client.infer(model, {"exam": True}, image_id=image_id, output="json")
    exam = parse_exam(answer, model, info)
    if exam.missing:
        raise LogicError(missing_views_message(exam, exam.missing, [v.view for v in exam.views]))
    if saliency:
        for index, view in enumerate(exam.views):
            if progress is not None:
                progress(f"Map of {view.view or view.image_id}", index / max(len(exam.views), 1))
            mapped = request_view(client, info, view.image_id, model, saliency)
            view.saliency, view.geometry = mapped.saliency, mapped.geometry
    return exam


def _view_name(entry) -> str:
    """'L CC' from the server's view fields ({"name": "LCC", "laterality": "L", ...}, or "LCC")."""
    if isinstance(entry, dict):
        side = str(entry.get("laterality") or "").upper()
        projection = str(entry.get("view_position") or "").upper()
        if side and projection:
            return f"{side} {projection}"
        entry = entry.get("name") or ""
    text = str(entry or "").upper().strip()
    if " " not in text and len(text) > 1 and text[0] in "LR":
        text = text[0] + " " + text[1:]
    return text


def _server_fields_missing(error, what: str) -> ServerError:
    return ServerError(
        f"The server's {what} lacks {error}: is the server a MicrocalcAI server of the same version as "
        "this module?"
    )


def _number(fields, key: str, what: str, required: bool = True) -> Optional[float]:
    """fields[key] as a float; a clear ServerError naming the field and what the server sent
    when it is missing (and required) or not a number."""
    if not isinstance(fields, dict) or (required and key not in fields):
        raise _server_fields_missing(repr(key), what)
    value = fields.get(key)
    if value is None and not required:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ServerError(
            f"The server's {what} has an invalid '{key}': it sent {value!r} where a number belongs. Is "
            "the server a MicrocalcAI server of the same version as this module?"
        ) from None


def parse_view(answer: dict, image_id: str = "", requested: str = "") -> ViewResult:
    """A one-view answer, or one entry of an exam answer's `views` (docs/server-api.md)."""
    probability = _number(answer, "probability", "whole-image answer")
    threshold = _number(answer, "threshold", "whole-image answer", required=False)
    image = answer.get("image")
    if isinstance(image, dict):  # a one-view answer: the image's id and size under `image`
        image_id = str(image.get("id") or image_id)
        view = answer.get("view") or {}
    else:  # an exam's view entry: the id is `image`, the view's fields are the entry's own
        image_id = str(image or image_id)
        image = {k: answer[k] for k in ("rows", "cols", "spacing_mm") if k in answer}
        view = answer
    return ViewResult(
        image_id=image_id,
        view=_view_name(view),
        probability=probability,
        threshold=threshold,
        decision=str(answer.get("label") or ""),
        model=str(answer.get("model") or requested),
        version=str(answer.get("version") or ""),
        image=dict(image),
    )


def parse_exam(answer: dict, requested: str = "", info: Optional[ServerInfo] = None) -> ExamResult:
    """The exam answer: its verdict, each view's score (in the server's order: LCC, LMLO, RCC,
    RMLO) and the standard views the study lacks."""
    exam = answer.get("exam")
    if not isinstance(exam, dict):
        raise _server_fields_missing("'exam'", "exam answer")
    probability = _number(exam, "probability", "exam answer")
    threshold = _number(exam, "threshold", "exam answer", required=False)
    if not isinstance(answer.get("views"), list):
        raise _server_fields_missing("'views'", "exam answer")
    entries = answer["views"]
    model = str(answer.get("model") or requested)
    # each view entry says the threshold its label was taken at; /info's is for an older server's
    # entries, which carried only the label
    view_threshold = info.models[model].threshold if info is not None and model in info.models else None
    views = []
    for entry in entries:
        view = parse_view(entry, requested=model)
        if view.threshold is None:
            view.threshold = view_threshold
        view.version = view.version or str(answer.get("version") or "")
        views.append(view)
    positive = exam.get("decision")
    if not isinstance(positive, bool):
        positive = None if threshold is None else probability >= threshold
    return ExamResult(
        model=model,
        version=str(answer.get("version") or ""),
        exam_id=str(exam.get("study_uid") or ""),
        probability=probability,
        threshold=threshold,
        positive=positive,
        aggregation=str(exam.get("aggregation") or ""),
        views=views,
        missing=[_view_name(m) for m in (exam.get("missing_views") or answer.get("missing_views") or [])],
        patient_id=str(exam.get("patient_id") or ""),
        study_date=str(exam.get("study_date") or ""),
        demonstration=bool(info is not None and model in info.models and info.models[model].demonstration),
    )


def missing_views_message(exam: "ExamResult", missing: list, present: list) -> str:
    return (
        "The exam {} is incomplete: it lacks {} (it has {}). An exam verdict needs all four views "
        "(L/R x CC/MLO): add the missing views to the server's studies, or classify the views one "
        "by one (Classify view).".format(exam.title, ", ".join(missing), ", ".join(present) or "no view")
    )


def read_map(nrrd_bytes: bytes, stated: Optional[dict] = None):
    """The map as a (rows, cols) float32 array and its geometry, taken from the NRRD header
    (`space origin`, `space directions`, in the view's stored pixels); where the JSON answer
    states a geometry too, the two must agree."""
    header, data = read_nrrd_map(nrrd_bytes, "map")
    if data.ndim != 2:
        raise ServerError(f"The server's map is not a 2D image (its shape is {data.shape}).")
    origin = np.asarray(header.get("space origin", [0.0, 0.0]), dtype=float).ravel()[:2]
    directions = np.asarray(header.get("space directions", np.eye(2)), dtype=float)
    if directions.shape[0] < 2 or directions.shape[1] < 2:
        raise ServerError("The server's map has no usable 'space directions' in its header.")
    if abs(directions[0, 1]) > 1e-9 or abs(directions[1, 0]) > 1e-9:
        raise ServerError("The server's map is rotated against its view: only axis-aligned maps are placed.")
    geometry = MapGeometry(
        shape=(int(data.shape[0]), int(data.shape[1])),
        origin_xy=(float(origin[0]), float(origin[1])),
        step_xy=(float(directions[0, 0]), float(directions[1, 1])),
        method=str(header.get("microcalcai_method") or (stated or {}).get("method") or ""),
    )
    if stated:
        said = stated.get("origin_xy"), stated.get("step_xy"), stated.get("shape")
        if said[0] is not None and not np.allclose(said[0], geometry.origin_xy, atol=1e-6):
            raise ServerError("The server's map header and its answer disagree on where the map lies.")
        if said[1] is not None and not np.allclose(said[1], geometry.step_xy, atol=1e-6):
            raise ServerError("The server's map header and its answer disagree on the map's pixel size.")
        if said[2] is not None and tuple(int(n) for n in said[2]) != geometry.shape:
            raise ServerError(
                "The server's map is {} pixels but its answer says {}.".format(
                    "x".join(map(str, geometry.shape)), "x".join(map(str, said[2]))
                )
            )
    return data, geometry

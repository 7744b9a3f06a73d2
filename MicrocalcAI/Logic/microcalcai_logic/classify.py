"""Classify one ROI of one mammogram on the server, and read the answer into typed values.

Which pixels the server reads: always a datastore image, by its id (the server reads its own
copy, with the VOI LUT and photometry it trains with). A local image is first added to the
datastore, de-identified, once (upload.py).
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .certainty import Certainty, certainty
from .client import ServerClient, ServerInfo
from .contract import LABELS, decision_label
from .errors import LogicError, ServerError
from .geometry import PixelRoi


@dataclass(frozen=True)
class ModelResult:
    """One row of the results table: one model, or the ensemble."""

    model: str
    version: str
    probability: float
    threshold: Optional[float]
    is_ensemble: bool = False
    # trained on synthetic mammograms only: every place that shows the row says so
    demonstration: bool = False

    @property
    def decision(self) -> Optional[str]:
        if self.threshold is None:
            return None
        return decision_label(self.probability >= self.threshold)


@dataclass(frozen=True)
class SaliencyGeometry:
    method: str
    target: str
    shape: tuple[int, int]  # rows, cols
    origin_xy: tuple[float, float]
    step_xy: tuple[float, float]


@dataclass
class Classification:
    model: str
    version: str
    probability: float
    threshold: Optional[float]
    decision: str
    roi: PixelRoi
    rows: list[ModelResult]
    image: dict[str, object] = field(default_factory=dict)
    image_id: Optional[str] = None
    saliency_geometry: Optional[SaliencyGeometry] = None
    saliency: Optional[np.ndarray] = None  # (rows, cols) float32 0..1
    latencies: dict[str, float] = field(default_factory=dict)
    # With `dicom_out`: what the server stored as DICOM (its `dicom_out`), or why nothing was.
    dicom_out: Optional[dict[str, object]] = None
    dicom_out_warning: str = ""
    # how sure the models are: members' agreement and the model's calibration (certainty.py)
    certainty: Optional[Certainty] = None


def check_model(info: Optional[ServerInfo], model: str) -> None:
    if not model:
        raise LogicError("Choose a model (connect to the server first).")
    if info is not None and model not in info.models:
        raise LogicError(
            "The server does not host a model called '{}': choose one of {}.".format(
                model, ", ".join(info.model_names()) or "(none)"
            )
        )


def request_classification(
    client: ServerClient,
    info: Optional[ServerInfo],
    image_id: str,
    roi: PixelRoi,
    model: str,
    saliency: Optional[str] = "gradcam",
    target: str = "malignant",
    dicom_out: bool = False,
) -> Classification:
    """Ask `model` (a hosted model or 'ensemble') about an ROI of a datastore image, and parse
    the answer. Network only, no scene access: runs on a front end's worker thread. With
    `dicom_out` the server also stores the result as DICOM where the image came from."""
    check_model(info, model)
    params = {"roi": roi.as_params(), "saliency": saliency if saliency else False, "saliency_target": target}
    if dicom_out:
        params["dicom_out"] = True
    output = "all" if saliency else "json"
    answer, nrrd_bytes = client.infer(model, params, image_id=image_id, output=output)
    result = parse_answer(answer, info, model)
    result.image_id = image_id
    if nrrd_bytes is not None and result.saliency_geometry is not None:
        result.saliency = read_saliency(nrrd_bytes, result.saliency_geometry)
    return result


def parse_answer(answer: dict[str, object], info: Optional[ServerInfo], requested: str) -> Classification:
    try:
        model = str(answer.get("model") or requested)
        probability = float(answer["probability"])
        threshold = answer.get("threshold")
        threshold = float(threshold) if threshold is not None else None
        roi = PixelRoi.from_params(answer.get("roi") or {})
        members = dict(answer.get("members") or {})
        member_versions = dict(answer.get("member_versions") or {})
    except (KeyError, TypeError, ValueError) as error:
        raise ServerError(
            f"The server's answer to infer lacks {error}: is the server a MicrocalcAI server of the "
            "same version as this module?"
        ) from None
    version = str(answer.get("version", ""))
    is_ensemble = model == "ensemble" or len(members) > 1
    rows = []
    if is_ensemble:
        for name in sorted(members):
            member_info = info.models.get(name) if info is not None else None
            rows.append(
                ModelResult(
                    model=name,
                    version=str(member_versions.get(name) or (member_info.version if member_info else "")),
                    probability=float(members[name]),
                    threshold=member_info.threshold if member_info else None,
                    demonstration=bool(member_info and member_info.demonstration),
                )
            )
    rows.append(
        ModelResult(
            model=model,
            version=version,
            probability=probability,
            threshold=threshold,
            is_ensemble=is_ensemble,
            demonstration=_is_demonstration(info, model, rows),
        )
    )
    decision = answer.get("label")
    if decision not in LABELS:
        decision = rows[-1].decision or ""
    return Classification(
        model=model,
        version=version,
        probability=probability,
        threshold=threshold,
        decision=str(decision),
        roi=roi,
        rows=rows,
        image=dict(answer.get("image") or {}),
        saliency_geometry=_saliency_geometry(answer.get("saliency"), roi),
        latencies={k: float(v) for k, v in dict(answer.get("latencies") or {}).items()},
        dicom_out=dict(answer["dicom_out"]) if isinstance(answer.get("dicom_out"), dict) else None,
        dicom_out_warning=str(answer.get("dicom_out_warning") or ""),
        certainty=certainty(
            {row.model: row.probability for row in rows if not row.is_ensemble} if is_ensemble else {},
            threshold,
            info.models[model].val_metrics if info is not None and model in info.models else None,
        ),
    )


def _is_demonstration(info: Optional[ServerInfo], model: str, members: list[ModelResult]) -> bool:
    """The server marks its models; an ensemble with a demonstration member is one too."""
    shown = info.models.get(model) if info is not None else None
    return bool(shown and shown.demonstration) or any(row.demonstration for row in members)


def _saliency_geometry(entry, roi: PixelRoi) -> Optional[SaliencyGeometry]:
    if not entry:
        return None
    shape = entry.get("shape") or [roi.size, roi.size]
    origin = entry.get("origin_xy") or roi.origin_xy()
    step = entry.get("step_xy") or [1.0, 1.0]
    return SaliencyGeometry(
        method=str(entry.get("method", "")),
        target=str(entry.get("target", "")),
        shape=(int(shape[0]), int(shape[1])),
        origin_xy=(float(origin[0]), float(origin[1])),
        step_xy=(float(step[0]), float(step[1])),
    )


def read_nrrd_map(nrrd_bytes: bytes, what: str):
    """(header, (rows, cols) float32 array) of a 2D map the server sent as NRRD."""
    import io

    import nrrd

    handle = io.BytesIO(nrrd_bytes)
    try:
        header = nrrd.read_header(handle)
        data = nrrd.read_data(header, handle, index_order="C")
    except Exception as error:  # pynrrd raises several types for a damaged file
        raise ServerError(f"The server's {what} could not be read as NRRD ({error}).") from None
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 3 and 1 in data.shape:
        data = data.reshape([n for n in data.shape if n != 1])
    return header, data


def read_saliency(nrrd_bytes: bytes, geometry: SaliencyGeometry) -> np.ndarray:
    """The map as a (rows, cols) float32 array, checked against the geometry the JSON states."""
    _, data = read_nrrd_map(nrrd_bytes, "saliency map")
    if data.shape != tuple(geometry.shape):
        raise ServerError(
            "The server's saliency map is {} pixels but its answer says {}.".format(
                "x".join(map(str, data.shape)), "x".join(map(str, geometry.shape))
            )
        )
    return data

"""A classification as a DICOM SR: TID 1500 Measurement Report over the source mammogram.

One measurement group (TID 1410) per model and one for the ensemble, all referencing the same
ROI (SCOORD POLYLINE on the source SOP instance): probability of cancer and the threshold as
numeric measurements, identified by the model (TID 4019: name, version, weights checksum,
threshold), and the decision as a qualitative evaluation. The software is the device observer.
TID 1500 is what OHIF's measurement tracking and 3D Slicer's Quantitative Reporting read
(docs/dicom-out.md says why it is used rather than the Mammography CAD SR).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
from microcalcai_logic.contract import PixelRoi, decision_label

from microcalcai import __version__
from microcalcai.dicom_out import codes
from microcalcai.dicom_out.device import (
    DEMONSTRATION_PARAMETER,
    MANUFACTURER,
    device_observer,
    series_description,
)


@dataclass
class ModelResult:
    """What one model (or the ensemble) said about the ROI."""

    name: str
    version: str
    probability: float
    threshold: float
    weights_sha256: str = ""
    parameters: dict = field(default_factory=dict)  # anything else worth keeping (combine, members)
    demonstration: bool = False  # trained on synthetic mammograms only (the model card says so)

    @property
    def decision(self) -> str:
        return decision_label(self.probability >= self.threshold)


def roi_polygon(roi: PixelRoi) -> np.ndarray:
    """Closed rectangle in DICOM image coordinates: (0, 0) is the top-left corner of the
    top-left pixel (PS3.3 C.18.6.1.1), so pixel centres sit at +0.5."""
    cx, cy = roi.x + 0.5, roi.y + 0.5
    half_w, half_h = roi.size / 2.0, (roi.height or roi.size) / 2.0
    corners = [(cx - half_w, cy - half_h), (cx + half_w, cy - half_h), (cx + half_w, cy + half_h)]
    corners.append((cx - half_w, cy + half_h))
    return np.array(corners + corners[:1], dtype=np.float32)


def roi_region(source, roi: PixelRoi):
    import highdicom as hd

    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=roi_polygon(roi),
        source_image=hd.sr.SourceImageForRegion.from_source_image(source),
    )


def _group(source, roi: PixelRoi, result: ModelResult, *, ensemble: bool):
    import highdicom as hd
    from pydicom.uid import generate_uid

    # TEXT items (UT): the checksum is kept whole.
    parameters = [f"weights_sha256={result.weights_sha256}"] if result.weights_sha256 else []
    parameters += [f"{k}={v}" for k, v in sorted(result.parameters.items())]
    parameters += [DEMONSTRATION_PARAMETER] if result.demonstration else []
    algorithm = hd.sr.AlgorithmIdentification(
        name=result.name, version=str(result.version), parameters=parameters or None
    )
    kind = "ensemble" if ensemble else "model"
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(),
            identifier=f"ROI {roi.x:g},{roi.y:g} size {roi.size:g}: {kind} {result.name}",
        ),
        referenced_region=roi_region(source, roi),
        finding_type=codes.FINDING,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(
                name=codes.PROBABILITY,
                value=float(result.probability),
                unit=codes.NO_UNITS,
                algorithm_id=algorithm,
            ),
            hd.sr.Measurement(
                name=codes.THRESHOLD,
                value=float(result.threshold),
                unit=codes.NO_UNITS,
                algorithm_id=algorithm,
            ),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=codes.DECISION, value=codes.CLASSES[result.decision])
        ],
    )


def classification_sr(source, roi: PixelRoi, models: list[ModelResult], ensemble: ModelResult | None = None):
    """The SR of one classified ROI on `source` (a header from `read_source`)."""
    import highdicom as hd

    groups = [_group(source, roi, m, ensemble=False) for m in models]
    if ensemble is not None:
        groups.append(_group(source, roi, ensemble, ensemble=True))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device_observer()),
        procedure_reported=codes.PROCEDURE,
        imaging_measurements=groups,
    )
    demonstration = any(m.demonstration for m in [*models, *([ensemble] if ensemble else [])])
    return sr_document(
        source, report, series_description("classification", demonstration), series_number=9701
    )


def sr_document(source, report, description: str, *, series_number: int, when: _dt.datetime | None = None):
    """The report as a Comprehensive 3D SR in the source's study (patient and study copied from it).

    Comprehensive 3D is the SR class highdicom writes TID 1500 into and OHIF reads. Each document
    is its own new series; it is COMPLETE but neither final nor verified (PRELIMINARY,
    UNVERIFIED): signing a result off is a reader's act in the archive, not the software's.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    sr = hd.sr.Comprehensive3DSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=description,
        software_versions=__version__,
    )
    if when is not None:  # the document's content time is when its observation was made
        sr.ContentDate, sr.ContentTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    return sr


def results_for(predictor, probability: float, members: dict, *, version: str | None = None):
    """ModelResults of a ModelPredictor or EnsemblePredictor's answer for one ROI.

    Returns (per-model results, ensemble result or None). An ensemble's checksum is the SHA-256
    of its members' weight checksums in member order, so it changes when any member changes.
    """
    import hashlib

    def member_result(member) -> ModelResult:
        value = members.get(member.name, probability)
        return ModelResult(
            name=member.name,
            version=str(member.card.version),
            probability=float(np.asarray(value).reshape(-1)[0]),
            threshold=float(member.threshold),
            weights_sha256=member.card.weights_sha256,
            parameters={"arch": member.card.arch},
            demonstration=bool(member.card.demonstration),
        )

    per_model = [member_result(m) for m in predictor.members]
    if len(per_model) == 1 and predictor.members[0] is predictor:
        if version is not None:
            per_model[0].version = str(version)
        return per_model, None
    digest = hashlib.sha256("".join(m.weights_sha256 for m in per_model).encode()).hexdigest()
    ensemble = ModelResult(
        name=predictor.name,
        version=str(version if version is not None else predictor.card.version),
        probability=float(probability),
        threshold=float(predictor.threshold),
        weights_sha256=digest,
        parameters={"combine": predictor.combine, "members": ",".join(m.name for m in per_model)},
        # an ensemble with a demonstration member is one too (as /info says)
        demonstration=any(m.demonstration for m in per_model),
    )
    return per_model, ensemble

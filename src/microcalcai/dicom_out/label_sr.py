"""An annotator's label as a DICOM SR: TID 1500 with the annotator as person observer.

One document per annotation (the label of one ROI): the ROI as SCOORD on the source, the class
as the impression (benign / malignant), BI-RADS morphology and distribution as coded
qualitative evaluations, and the time of the annotation as the document's content date/time.
"""

from __future__ import annotations

import datetime as _dt

from microcalcai_logic.contract import PixelRoi

from microcalcai.dicom_out import codes
from microcalcai.dicom_out.device import person_observer, series_description
from microcalcai.dicom_out.sr import roi_region, sr_document
from microcalcai.errors import InputError


def annotation_time(text: str | None) -> _dt.datetime:
    if not text:
        return _dt.datetime.now(_dt.timezone.utc)
    try:
        return _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"label time {text!r} is not an ISO 8601 date-time (e.g. 2026-12-03T07:15:00Z)"
        ) from None


def label_sr(source, annotation: dict):
    """The SR of one annotation (the dict the label API stores, server/labels.py)."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    label = annotation.get("label")
    if label not in codes.CLASSES:
        raise InputError(f"label must be 'benign' or 'malignant', got {label!r}")
    box = annotation["roi"]
    roi = PixelRoi(float(box["x"]), float(box["y"]), float(box["size"]))
    evaluations = [hd.sr.QualitativeEvaluation(name=codes.DECISION, value=codes.CLASSES[label])]
    for field, concept, table in (
        ("morphology", codes.MORPHOLOGY, codes.MORPHOLOGIES),
        ("distribution", codes.DISTRIBUTION, codes.DISTRIBUTIONS),
    ):
        term = annotation.get(field)
        if term in (None, ""):
            continue
        if term not in table:
            raise InputError(f"label {field} {term!r} has no DICOM code here; use one of {', '.join(table)}")
        evaluations.append(hd.sr.QualitativeEvaluation(name=concept, value=table[term]))
    annotator = str(annotation.get("annotator") or "anonymous")
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"ROI {roi.x:g},{roi.y:g} size {roi.size:g}: label by {annotator}"
        ),
        referenced_region=roi_region(source, roi),
        finding_type=codes.FINDING,
        qualitative_evaluations=evaluations,
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person_observer(annotator)),
        procedure_reported=codes.PROCEDURE,
        imaging_measurements=[group],
    )
    when = annotation_time(annotation.get("time")).astimezone(_dt.timezone.utc)
    return sr_document(source, report, series_description("label"), series_number=9703, when=when)

"""Read a result SR back into plain values with highdicom (tests, docs and clients use it)."""

from __future__ import annotations

from microcalcai.dicom_out import codes
from microcalcai.dicom_out.device import DEMONSTRATION_PARAMETER


def _texts(items, meaning: str) -> list[str]:
    return [
        str(item.TextValue)
        for item in items
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning == meaning
    ]


def _observer(content) -> dict:
    out = {}
    for item in content.ContentSequence:
        if item.RelationshipType != "HAS OBS CONTEXT":
            continue
        meaning = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "CODE" and meaning == "Observer Type":
            out["type"] = str(item.ConceptCodeSequence[0].CodeMeaning).lower()
        elif item.ValueType == "UIDREF":
            out["uid"] = str(item.UID)
        elif item.ValueType == "PNAME":
            out["name"] = str(item.PersonName)
        elif item.ValueType == "TEXT" and meaning == "Device Observer Name":
            out["name"] = str(item.TextValue)
    return out


def read_report(path_or_dataset) -> dict:
    """Observer, referenced image and one dict per measurement group of a result SR."""
    import highdicom as hd
    import pydicom

    dataset = path_or_dataset
    if not isinstance(dataset, pydicom.Dataset):
        dataset = pydicom.dcmread(path_or_dataset)
    document = hd.sr.Comprehensive3DSR.from_dataset(dataset)
    groups = []
    for group in document.content.get_planar_roi_measurement_groups():
        region = group.roi
        reference = region.ContentSequence[0].ReferencedSOPSequence[0]
        entry = {
            "tracking_identifier": group.tracking_identifier,
            "polygon": [[float(x), float(y)] for x, y in region.value],
            "referenced_sop_instance_uid": str(reference.ReferencedSOPInstanceUID),
            "algorithm_name": (_texts(group[0].ContentSequence, "Algorithm Name") or [None])[0],
            "algorithm_version": (_texts(group[0].ContentSequence, "Algorithm Version") or [None])[0],
            "algorithm_parameters": _texts(group[0].ContentSequence, "Algorithm Parameters"),
        }
        entry["demonstration"] = DEMONSTRATION_PARAMETER in entry["algorithm_parameters"]
        for measurement in group.get_measurements():
            if measurement.name == codes.PROBABILITY:
                entry["probability"] = float(measurement.value)
            elif measurement.name == codes.THRESHOLD:
                entry["threshold"] = float(measurement.value)
        for evaluation in group.get_qualitative_evaluations():
            if evaluation.name == codes.DECISION:
                entry["decision"] = codes.term_for(evaluation.value, codes.CLASSES)
            elif evaluation.name == codes.MORPHOLOGY:
                entry["morphology"] = codes.term_for(evaluation.value, codes.MORPHOLOGIES)
            elif evaluation.name == codes.DISTRIBUTION:
                entry["distribution"] = codes.term_for(evaluation.value, codes.DISTRIBUTIONS)
        groups.append(entry)
    return {
        "sop_instance_uid": str(dataset.SOPInstanceUID),
        "study_uid": str(dataset.StudyInstanceUID),
        "series_description": str(dataset.get("SeriesDescription", "")),
        "content_datetime": f"{dataset.ContentDate}{dataset.ContentTime}",
        "observer": _observer(dataset),
        "groups": groups,
    }

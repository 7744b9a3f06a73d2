"""`params.dicom_out`: a classification (and its saliency map) stored as DICOM where the image came from.

A local studies folder gets the files in `<studies>/dicom-out/<image id>/` (a sub-folder, which
the datastore does not list as images); a DICOMweb datastore gets them by STOW-RS, in the
source's study. Writing is best effort: the classification answers either way, and a failure
is reported in the answer's `dicom_out_warning` (docs/server-api.md, docs/dicom-out.md).
"""

from __future__ import annotations

import logging

from microcalcai.errors import MicrocalcError

LOG = logging.getLogger(__name__)
FOLDER = "dicom-out"


def wants_dicom_out(request: dict) -> bool:
    return request.get("dicom_out") in (True, "true", "1", 1)


def store_results(request: dict, answer: dict, served, saliency=None, crop=None, method=None, target=None):
    """Build and store the SR (and SEG); sets `dicom_out` or `dicom_out_warning` in `answer`."""
    try:
        answer["dicom_out"] = _store(request, answer, served, saliency, crop, method, target)
    except MicrocalcError as exc:
        answer["dicom_out_warning"] = f"no DICOM result was stored: {exc}"
    except Exception as exc:  # a classification must not fail for its archive copy
        LOG.exception("storing the DICOM results of %s failed", answer.get("image", {}).get("id"))
        answer["dicom_out_warning"] = f"no DICOM result was stored: {type(exc).__name__}: {exc}"


def _store(request, answer, served, saliency, crop, method, target) -> dict:
    from pathlib import Path

    from microcalcai.dicom_out import read_source, store
    from microcalcai.dicom_out.saliency import saliency_segmentation
    from microcalcai.dicom_out.sr import Roi, classification_sr, results_for

    source = request["source"]
    if request.get("uploaded"):
        raise MicrocalcError("results are stored for datastore images only, not for uploads")
    header = read_source(source.path)
    per_model, ensemble = results_for(
        served.predictor, answer["probability"], answer["members"], version=served.version
    )
    roi = answer["roi"]
    datasets = [classification_sr(header, Roi(roi["x"], roi["y"], roi["size"]), per_model, ensemble)]
    if saliency is not None:
        datasets.append(
            saliency_segmentation(
                header,
                saliency,
                crop,
                model=served.name,
                model_version=served.version,
                method=method,
                target=target,
            )
        )
    datastore = request["datastore"]
    folder = datastore.studies_folder() if hasattr(datastore, "studies_folder") else None
    if folder is not None:
        paths = store.write_files(datasets, Path(folder) / FOLDER / source.image_id)
        return {
            "stored": "folder",
            "objects": [store.describe(d, p) for d, p in zip(datasets, paths, strict=True)],
        }
    return {"stored": "stow-rs", "objects": store.stow(datastore._client, datasets)}


def stow_label(datastore, image_id: str, annotation: dict) -> dict:
    """A label saved for a DICOMweb study, sent back to it as a label SR (STOW-RS).

    Best effort like the classification's: the label is already stored in the server's cache,
    so a failure is logged and returned as `{"warning": ...}` instead of failing the save.
    """
    from microcalcai.dicom_out import read_source, store
    from microcalcai.dicom_out.label_sr import label_sr
    from microcalcai.server.images import datastore_image_path

    try:
        header = read_source(datastore_image_path(datastore, image_id))
        return store.stow(datastore._client, [label_sr(header, annotation)])[0]
    except Exception as exc:  # the label itself is saved; only its archive copy is missing
        LOG.warning("label of %s not sent back as DICOM SR: %s", image_id, exc)
        return {"warning": f"the label was saved, but not sent back as DICOM SR: {exc}"}

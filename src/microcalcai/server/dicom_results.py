"""`params.dicom_out`: a classification (and its saliency map) stored as DICOM where the image came from.

A local studies folder gets the files in `<studies>/dicom-out/<image id>/` (a sub-folder, which
the datastore does not list as images); a DICOMweb datastore gets them by STOW-RS, in the
source's study. Writing is best effort: the classification answers either way, and a failure
is reported in the answer's `dicom_out_warning` (docs/server-api.md, docs/dicom-out.md).
"""

from __future__ import annotations

import logging

from microcalcai.errors import MicrocalcError
from microcalcai.server.public_text import scrub

LOG = logging.getLogger(__name__)
FOLDER = "dicom-out"


def wants_dicom_out(request: dict) -> bool:
    return request.get("dicom_out") in (True, "true", "1", 1)


def store_results(request: dict, answer: dict, served, saliency=None, crop=None, method=None, target=None):
    """Build and store the SR (and SEG); sets `dicom_out` or `dicom_out_warning` in `answer`."""
    try:
        answer["dicom_out"] = _store(request, answer, served, saliency, crop, method, target)
    except MicrocalcError as exc:
        answer["dicom_out_warning"] = f"no DICOM result was stored: {scrub(exc)}"
    except Exception as exc:  # a classification must not fail for its archive copy
        LOG.exception("storing the DICOM results of %s failed", answer.get("image", {}).get("id"))
        answer["dicom_out_warning"] = f"no DICOM result was stored: {type(exc).__name__}: {scrub(exc)}"


def _store(request, answer, served, saliency, crop, method, target) -> dict:
    from pathlib import Path

    from microcalcai_logic.contract import PixelRoi

    from microcalcai.dicom_out import read_source, store
    from microcalcai.dicom_out.results import roi_datasets

    source = request["source"]
    if request.get("uploaded"):
        raise MicrocalcError("results are stored for datastore images only, not for uploads")
    roi = answer["roi"]
    datasets = roi_datasets(
        read_source(source.path),
        PixelRoi(roi["x"], roi["y"], roi["size"]),
        served.predictor,
        answer["probability"],
        answer["members"],
        saliency,
        name=served.name,
        version=served.version,
        crop=crop,
        method=method,
        target=target,
    )
    datastore = request["datastore"]
    folder = datastore.studies_folder() if hasattr(datastore, "studies_folder") else None
    if folder is not None:
        paths = store.write_files(datasets, Path(folder) / FOLDER / source.image_id)
        return {
            "stored": "folder",
            "objects": [
                store.describe(d, _in_studies(p, folder)) for d, p in zip(datasets, paths, strict=True)
            ],
        }
    return {"stored": "stow-rs", "objects": store.stow(datastore._client, datasets)}


def store_label(datastore, image_id: str, annotation: dict) -> dict:
    """A saved label as a label SR, where the image came from (folder or STOW-RS).

    Best effort like the classification's: the label itself is already stored, so a failure is
    logged and returned as `{"warning": ...}` instead of failing the save.
    """
    from pathlib import Path

    from microcalcai.dicom_out import read_source, store
    from microcalcai.dicom_out.label_sr import label_sr
    from microcalcai.server.images import datastore_image_path

    try:
        dataset = label_sr(read_source(datastore_image_path(datastore, image_id)), annotation)
        folder = datastore.studies_folder()
        if folder is None:
            return {"stored": "stow-rs", **store.stow(datastore._client, [dataset])[0]}
        (path,) = store.write_files([dataset], Path(folder) / FOLDER / image_id)
        return {"stored": "folder", **store.describe(dataset, _in_studies(path, folder))}
    except Exception as exc:  # the label is saved; only its DICOM copy is missing
        LOG.warning("label of %s not stored as DICOM SR: %s", image_id, exc)
        return {"warning": f"the label was saved, but not stored as DICOM SR: {scrub(exc)}"}


def _in_studies(path, folder) -> str:
    """Where a result lies, relative to the studies folder: enough to find it there, and no
    answer tells a client how the server's disk is laid out."""
    from pathlib import Path

    return Path(path).relative_to(folder).as_posix()


def save_label_with_sr(datastore, save, image_id, label_filename, tag, info, label_id, always: bool):
    """`save` the label, then its label SR: always for a DICOMweb study, with params.dicom_out
    for a local one. `datastore.last_label_sr` says what was stored (the label API answers it)."""
    saved = save(image_id, label_filename, tag, info, label_id)
    datastore.last_label_sr = None
    if tag == "final" and (always or wants_dicom_out(info or {})):
        datastore.last_label_sr = store_label(datastore, image_id, datastore.last_saved["annotations"][-1])
    return saved

"""MONAI Label datastores whose labels are classification annotations (labels.py).

`save_label` receives the uploaded label file (a JSON annotation) and the request's params,
validates them, merges the annotation into the image's document and writes it atomically under
the datastore's own file lock, then records it in MONAI Label's datastore index, so the label
API, `/datastore/` listings and training all see it, and it survives a restart.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from filelock import FileLock
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import DataModel, LocalDatastore

from microcalcai.atomic import atomic_write_text
from microcalcai.server import labels
from microcalcai.server.errors import NotFound
from microcalcai.server.validation import check_image_id

LOG = logging.getLogger(__name__)
LABEL_EXT = ".json"


class ClassificationLabels:
    """Mixin over LocalDatastore: classification labels as merged JSON documents."""

    def save_label(self, image_id, label_filename, label_tag, label_info, label_id=""):
        check_image_id(image_id)
        obj = self._datastore.objects.get(image_id)
        if obj is None and image_id not in self.list_images():
            raise NotFound(f"unknown image id {image_id!r}; GET /datastore/?output=all lists the images")
        info = dict(label_info or {})
        fields = labels.read_label_upload(Path(label_filename))
        fields.update({k: v for k, v in info.items() if k in labels.FIELDS})
        annotation = labels.parse_annotation(fields, client_id=info.get("client_id"))

        label_dir = Path(self._datastore.label_path(label_tag))
        name = f"{image_id}{LABEL_EXT}"
        with FileLock(self._lock_file):
            label_dir.mkdir(parents=True, exist_ok=True)
            document = labels.merge(labels.read_document(label_dir / name), image_id, annotation)
            atomic_write_text(label_dir / name, json.dumps(document, indent=2) + "\n")
            obj = self._image_object(image_id)
            obj.labels[label_tag] = DataModel(
                info={
                    "ts": int(time.time()),
                    "name": name,
                    "annotations": len(document["annotations"]),
                    "annotator": annotation["annotator"],
                },
                ext=LABEL_EXT,
            )
            self._update_datastore_file(lock=False)
        self.last_saved = document
        LOG.info("label for %s (%s): %s", image_id, label_tag, annotation)
        return image_id

    def _image_object(self, image_id):
        return self._datastore.objects[image_id]

    def annotations(self, image_id: str, tag: str = "final") -> list[dict]:
        document = labels.read_document(Path(self._datastore.label_path(tag)) / f"{image_id}{LABEL_EXT}")
        return [] if document is None else document["annotations"]

    def all_annotations(self, tag: str = "final") -> dict[str, list[dict]]:
        folder = Path(self._datastore.label_path(tag))
        out = {}
        if folder.is_dir():
            for path in sorted(folder.glob(f"*{LABEL_EXT}")):
                document = labels.read_document(path)
                if document and document["annotations"]:
                    out[path.name[: -len(LABEL_EXT)]] = document["annotations"]
        return out


class StudiesDatastore(ClassificationLabels, LocalDatastore):
    """A local studies folder (DICOM, PNG, PGM, NRRD files side by side)."""

    def save_label(self, image_id, label_filename, label_tag, label_info, label_id=""):
        from microcalcai.server.dicom_results import save_label_with_sr  # docs/dicom-out.md

        save = super().save_label
        args = (image_id, label_filename, label_tag, label_info, label_id)
        return save_label_with_sr(self, save, *args, False)

    def studies_folder(self) -> Path:
        return Path(self._datastore_path)


class DicomWebStudies(ClassificationLabels, DICOMWebDatastore):
    """A DICOMweb server; images are cached as DICOM series folders, labels kept in the cache.

    MONAI Label's DICOMweb store turns final labels into DICOM SEG objects, which describe
    segmentations; a classification has no SEG form, so labels stay in the local cache index
    and each final label is also sent back to the server as a label SR (dicom_results.py).
    """

    def save_label(self, image_id, label_filename, label_tag, label_info, label_id=""):
        from microcalcai.server.dicom_results import save_label_with_sr  # docs/dicom-out.md

        save = super().save_label
        args = (image_id, label_filename, label_tag, label_info, label_id)
        return save_label_with_sr(self, save, *args, True)

    def _image_object(self, image_id):
        from monailabel.datastore.local import ImageLabelModel

        obj = self._datastore.objects.get(image_id)
        if obj is None:
            obj = ImageLabelModel(image=DataModel(info={"ts": int(time.time()), "name": image_id}, ext=""))
            self._datastore.objects[image_id] = obj
        return obj

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        path = os.path.join(self._datastore.label_path(label_tag), f"{label_id}{LABEL_EXT}")
        return os.path.realpath(path) if os.path.exists(path) else ""

    def get_labeled_images(self, label_tag=None, labels=None):
        return sorted(self.all_annotations(label_tag or "final"))

    def get_unlabeled_images(self, label_tag=None, labels=None):
        done = set(self.get_labeled_images(label_tag))
        return [i for i in self.list_images() if i not in done]

    def studies_folder(self) -> None:
        return None

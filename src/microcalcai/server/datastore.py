"""MONAI Label datastores whose labels are classification annotations (labels.py).

`save_label` receives the uploaded label file (a JSON annotation) and the request's params,
validates them, merges the annotation into the image's document and writes it atomically under
the datastore's own file lock, then records it in MONAI Label's datastore index, so the label
API, `/datastore/` listings and training all see it, and it survives a restart.

The label documents are the truth; MONAI Label's index (`datastore_v2.json`) is a cache of
them. MONAI Label rewrites that index in place, so a kill in the middle of a write left it
empty and the next start failed; here it is written atomically, an unreadable index is set
aside and rebuilt at start, and the rebuild lists the JSON label documents (MONAI Label's own
reconcile looks for label files with the image extensions only, and found none of ours).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from filelock import FileLock
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import DataModel, LocalDatastore, LocalDatastoreModel

from microcalcai.atomic import atomic_write_text
from microcalcai.server import labels
from microcalcai.server.errors import NotFound
from microcalcai.server.validation import check_image_id

LOG = logging.getLogger(__name__)
LABEL_EXT = ".json"
SAMPLED_BY = "sampled_by"  # image info: {strategy: {"ts", "client_id"}} of its last proposals

UNREADABLE_SUFFIX = ".unreadable"  # where an index that cannot be parsed is set aside
STALE_TEMP_S = 3600  # temporary files of an interrupted atomic write older than this are removed


class ClassificationLabels:
    """Mixin over LocalDatastore: classification labels as merged JSON documents."""

    # What the save in progress wrote (its document, its label SR), for the same request's answer.
    # Label saves run in worker threads at once, so each thread keeps its own: a shared attribute
    # let one request answer, or store as DICOM SR, the annotation another had just saved.
    @property
    def _this_thread(self) -> threading.local:
        return self.__dict__.setdefault("_thread_saves", threading.local())

    @property
    def last_saved(self) -> dict | None:
        return getattr(self._this_thread, "document", None)

    @last_saved.setter
    def last_saved(self, document: dict | None) -> None:
        self._this_thread.document = document

    @property
    def last_label_sr(self) -> dict | None:
        return getattr(self._this_thread, "label_sr", None)

    @last_label_sr.setter
    def last_label_sr(self, stored: dict | None) -> None:
        self._this_thread.label_sr = stored

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

    # MONAI Label's remove_label deleted the file without the lock and left the index listing the
    # label (as completed) until a restart; a label removed here leaves the index in the same step.
    def remove_label(self, label_id, label_tag):
        check_image_id(label_id, what="label id")
        path = self._label_file(label_id, label_tag)
        with FileLock(self._lock_file):
            if not path.is_file():
                raise NotFound(
                    f"image {label_id!r} has no {label_tag!r} label; "
                    "GET /datastore/?output=all lists the labels"
                )
            path.unlink()
            self._forget_label(label_id, label_tag)
        LOG.info("label for %s (%s) removed", label_id, label_tag)

    def remove_annotation(self, image_id, label_tag, key) -> dict:
        """The document without the annotation of ROI `key`; a document left empty is removed
        with its index entry (an image without annotations is not labelled)."""
        path = self._label_file(image_id, label_tag)
        with FileLock(self._lock_file):  # the lock save_label takes: no annotation is lost
            document = labels.without_roi(labels.read_document(path), image_id, key)
            if document["annotations"]:
                atomic_write_text(path, json.dumps(document, indent=2) + "\n")
                entry = self._label_entry(image_id, label_tag)
                if entry is not None:
                    entry.info["annotations"] = len(document["annotations"])
                    self._update_datastore_file(lock=False)
            else:
                path.unlink()
                self._forget_label(image_id, label_tag)
        return document

    def _label_file(self, image_id, label_tag) -> Path:
        """Where an image's label document of `label_tag` lies."""
        return Path(self._datastore.label_path(label_tag)) / f"{image_id}{LABEL_EXT}"

    def _label_entry(self, image_id, label_tag):
        obj = self._datastore.objects.get(image_id)
        return None if obj is None else obj.labels.get(label_tag)

    def _forget_label(self, image_id, label_tag) -> None:
        """Drop the label from the index (the caller holds the lock)."""
        obj = self._datastore.objects.get(image_id)
        if obj is not None and obj.labels.pop(label_tag, None) is not None:
            self._update_datastore_file(lock=False)

    # MONAI Label's /activelearning route records each proposal in the image's info under
    # "strategy" and then merges that info into the answer, so from an image's second proposal on
    # the answer's "strategy" (the strategy's name, a string) became that record. The record is
    # kept under SAMPLED_BY instead, and merged there as the route would have.
    def update_image_info(self, image_id, info):
        info = dict(info)
        record = info.pop("strategy", None)
        if isinstance(record, dict):
            earlier = self.get_image_info(image_id).get(SAMPLED_BY) or {}
            info[SAMPLED_BY] = {**earlier, **record}
        if info:
            super().update_image_info(image_id, info)

    def get_image_info(self, image_id):
        info = super().get_image_info(image_id)
        if isinstance(info, dict) and isinstance(info.get("strategy"), dict):  # recorded before the fix
            info = dict(info)
            info[SAMPLED_BY] = {**info.pop("strategy"), **(info.get(SAMPLED_BY) or {})}
        return info

    # -- MONAI Label's index, kept crash-safe -------------------------------------------------
    def _update_datastore_file(self, lock=True):
        """MONAI Label's writer, made atomic (temporary file, fsync, rename)."""

        def write():
            self._ignore_event_config = True  # the file watcher must not reload our own write
            text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
            atomic_write_text(self._datastore_config_path, text)
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()

    def _init_from_datastore_file(self, throw_exception=False):
        """Load the index; one that cannot be parsed (left by an older, non-atomic writer or a
        damaged disk) is set aside and the index rebuilt from the files, instead of failing."""
        try:
            super()._init_from_datastore_file(throw_exception=True)
        except ValueError as exc:
            path = Path(self._datastore_config_path)
            aside = path.with_name(path.name + UNREADABLE_SUFFIX)
            with FileLock(self._lock_file):
                if path.exists():
                    os.replace(path, aside)
            LOG.warning(
                "the datastore index %s could not be read (%s); set aside as %s and rebuilt from the "
                "image and label files",
                path.name,
                str(exc).splitlines()[0][:200],
                aside.name,
            )
            self._datastore = LocalDatastoreModel(
                name=self._datastore.name,
                description=self._datastore.description,
                images_dir=self._datastore.images_dir,
                labels_dir=self._datastore.labels_dir,
            )
            self._datastore.base_path = self._datastore_path
            self._config_ts = 0

    def _reconcile_datastore(self):
        self._remove_stale_temporaries()
        return super()._reconcile_datastore()

    def _add_non_existing_labels(self, tag) -> int:
        """Index the label documents of `tag` that the index does not list (MONAI Label's own
        pass matches label files by the image extensions, so it never sees a JSON document)."""
        added = super()._add_non_existing_labels(tag)
        for path in sorted(Path(self._datastore.label_path(tag)).glob(f"*{LABEL_EXT}")):
            image_id = path.name[: -len(LABEL_EXT)]
            obj = self._datastore.objects.get(image_id)
            if obj is None or tag in obj.labels:
                continue
            document = labels.read_document(path)
            if document is None:
                LOG.warning("label file %s/%s is not a label document; not indexed", tag, path.name)
                continue
            obj.labels[tag] = DataModel(
                info={
                    "ts": int(path.stat().st_mtime),
                    "name": path.name,
                    "annotations": len(document["annotations"]),
                },
                ext=LABEL_EXT,
            )
            LOG.info("indexed label document %s/%s", tag, path.name)
            added += 1
        return added

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of atomic writes that a kill interrupted (`.<name>.<random>.tmp`).
        Only old ones: another process (a training) may be writing a fresh one right now."""
        root = Path(self._datastore_path)
        folders = [root, Path(self._datastore.label_path(None))]
        folders += [p for p in folders[1].iterdir() if p.is_dir()] if folders[1].is_dir() else []
        now = time.time()
        for folder in folders:
            for path in folder.glob(".*.tmp"):
                try:
                    if now - path.stat().st_mtime > STALE_TEMP_S:
                        path.unlink()
                        LOG.info("removed %s, left by an interrupted write", path.name)
                except OSError:
                    pass

    def annotations(self, image_id: str, tag: str = "final") -> list[dict]:
        document = labels.read_document(self._label_file(image_id, tag))
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

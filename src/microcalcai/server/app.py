"""The MONAI Label app: hosted classifiers, labels, active learning and training.

MONAI Label loads this class from the `main.py` that `workspace.prepare_app` writes into the
workspace's app folder. The app's configuration (`--conf workspace DIR`) says where the hosted
models live; nothing is written inside the installed package.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from microcalcai_logic.contract import LABELS
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.strategy import Strategy

from microcalcai import __version__
from microcalcai.server.datastore import DicomWebStudies, StudiesDatastore
from microcalcai.server.errors import NotFound, RequestError
from microcalcai.server.hosted import ENSEMBLE, ModelStore, ServedModels
from microcalcai.server.images import ImageCache, ScreenedDatastore, UnreadableImage
from microcalcai.server.infer import ClassifyTask, load_source
from microcalcai.server.leases import LeaseBook, lease_seconds_setting
from microcalcai.server.pool import CandidatePool
from microcalcai.server.strategies import (
    DEFAULT_STRATEGY,
    CandidateCache,
    First,
    MostUncertain,
    RandomRoi,
    Staged,
    Typical,
)
from microcalcai.server.uploads import ImageUploads
from microcalcai.server.views import StudyIndex
from microcalcai.server.whole_image import WholeImageTask, exam_request
from microcalcai.server.workspace import rebuild_stale_ensemble

LOG = logging.getLogger(__name__)


class UploadableStudies(ImageUploads, StudiesDatastore):
    """The local studies folder, taking only checked images through PUT /datastore/image."""


class MicrocalcApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict):
        workspace = conf.get("workspace") or os.environ.get("MICROCALCAI_WORKSPACE")
        if not workspace:
            raise RequestError("the app needs --conf workspace DIR (the folder holding models/)")
        self.workspace = Path(workspace)
        self.store = ModelStore(self.workspace / "models")
        rebuild_stale_ensemble(self.workspace)  # a kill in the middle of a training's publish
        self.served = ServedModels(self.store)
        self.cache = ImageCache()
        self.studies_index = StudyIndex()  # study, laterality and view of stored images (exams)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="MicrocalcAI",
            description="Benign vs malignant microcalcification ROIs: per-model and ensemble probabilities "
            "with saliency maps, classification labels, active learning and fine-tuning",
            version=__version__,
            labels=list(LABELS),
        )
        # Active learning sees the studies through a screen that leaves out unreadable files.
        self.screened = ScreenedDatastore(self._datastore, self.cache)
        self.pool = CandidatePool(self.screened, self.cache, self.workspace / "tissue-cache")
        self._strategies = self.init_strategies() if settings.MONAI_LABEL_TASKS_STRATEGY else {}

    # -- MONAI Label hooks -------------------------------------------------------------------
    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            return self.init_remote_datastore()
        return UploadableStudies(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_remote_datastore(self):
        from monailabel.datastore.dicom import DICOMwebClientX

        self.studies = self.studies.rstrip("/").strip()
        client = DICOMwebClientX(
            url=self.studies,
            qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
            wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
            stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
        )
        # No dcmqi download: classification labels are never converted to DICOM SEG.
        return DicomWebStudies(
            client=client,
            search_filter=settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER,
            cache_path=str(self.workspace / "dicomweb-cache"),
            fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
            convert_to_nifti=False,
        )

    def init_infers(self):
        return {
            name: (
                WholeImageTask(name, self.served, self.cache, self.studies_index)
                if self.store.task(name) == "whole_image"
                else ClassifyTask(name, self.served, self.cache)
            )
            for name in self.store.names()
        }

    def init_trainers(self):
        from microcalcai.server.train_task import FineTuneTask

        return {name: FineTuneTask(name, self) for name in self.store.roi_model_names()}

    def init_strategies(self) -> dict[str, Strategy]:
        if not hasattr(self, "pool"):  # called by the base class before the pool exists
            return {}
        self.leases = LeaseBook(lease_seconds_setting(self.conf))  # shared: a lease holds for all
        shared = CandidateCache()  # crops and features, for every strategy that uses the models
        uncertain = MostUncertain(self.pool, self.leases, self.served, self.cache, shared)
        at_random = RandomRoi(self.pool, self.leases)
        return {  # the default first: /info lists them in this order
            "auto": Staged(self.pool, self.leases, uncertain, at_random),
            "random": at_random,
            "uncertain": uncertain,
            "typical": Typical(self.pool, self.leases, self.served, self.cache, shared),
            "first": First(self.pool, self.leases),
        }

    def init_scoring_methods(self):
        return {}

    def infer(self, request, datastore=None, *, output=None, upload_path: str | None = None, upload_name=""):
        """Checks the image a request names, then runs the model's task (no label is saved).

        MONAI Label's `infer(request, datastore)` takes one dict that merges the client's params;
        what the client must not decide (the query's `output`, whether `image` is the request's own
        upload) comes from our infer route (routes.py) as keyword arguments, which no params reach.
        """
        model = request.get("model")
        task = self._infers.get(model)
        if task is None:
            raise NotFound(f"unknown model {model!r}; the models are {sorted(self._infers)} (GET /info/)")
        request = dict(request)
        request["output"] = output
        request["uploaded"] = _is_upload(request.get("image"), upload_path)
        if request["uploaded"]:
            request["upload_name"] = f"upload {upload_name or 'file'!r}"
        request["datastore"] = datastore or self._datastore  # where params.dicom_out stores results
        study = exam_request(request)
        if study is not None:
            return self._exam(task, request, study)
        request["source"] = load_source(
            request, datastore or self._datastore, self.cache, uploaded=request["uploaded"]
        )
        result_file, answer = task(request)
        return {"label": result_file, "tag": "original", "file": result_file, "params": answer}

    def _exam(self, task, request: dict, study: str) -> dict:
        """An exam (params.exam / params.study): whole-image models only, datastore images only."""
        if not isinstance(task, WholeImageTask):
            whole = self.store.whole_image_names()
            raise RequestError(
                f"model {request['model']!r} classifies ROIs and cannot read an exam; exams are read by "
                f"whole-image models ({', '.join(whole) if whole else 'none hosted here'})"
            )
        if request["uploaded"]:
            raise RequestError(
                "an exam is read from the datastore's images: add its views with PUT /datastore/image "
                "and send image=ID, or classify the uploaded view without params.exam"
            )
        if study == "image":
            if not request.get("image"):
                raise RequestError("params.exam needs image=ID (one view of the exam) or params.study")
            request["source"] = load_source(request, request["datastore"], self.cache, uploaded=False)
        result_file, answer = task.exam(request, study)
        return {"label": result_file, "tag": "original", "file": result_file, "params": answer}

    def next_sample(self, request):
        strategy = request.get("strategy") or DEFAULT_STRATEGY
        if strategy not in self._strategies:
            raise NotFound(f"unknown strategy {strategy!r}; choose one of {sorted(self._strategies)}")
        check_sample_params(request)
        # An image that fails to decode while the strategy reads it is remembered as bad by the
        # cache and left out by the screen: the next try does without it.
        for attempt in range(3):
            try:
                answer = super().next_sample(request)
                break
            except UnreadableImage as exc:
                LOG.warning("active learning: %s; trying again without that image", exc)
                self.screened.refresh()
                if attempt == 2:
                    raise
        answer.pop("path", None)  # the file on the server; clients use the id
        return answer

    def on_save_label(self, image_id, label_id):
        # This request's own save (the document of the tag it saved to) and its DICOM SR
        # (docs/dicom-out.md), as the datastore kept them for this thread.
        stored = getattr(self._datastore, "last_label_sr", None)
        saved = getattr(self._datastore, "last_saved", None)
        if saved is None or saved.get("image") != image_id:
            saved = {"annotations": self._datastore.annotations(image_id)}
        answer = {"annotations": saved["annotations"]}
        return {**answer, "dicom_out": stored} if stored else answer

    def info(self):
        meta = super().info()
        # Which workspace this server runs on, without telling clients the server's folders.
        from microcalcai.server.launch import workspace_id

        meta["workspace_id"] = workspace_id(self.workspace)
        return meta


def _is_upload(image, upload_path: str | None) -> bool:
    """True when `image` is still the request's own upload the infer route saved (routes.py);
    the client's params may have named another image.

    Anything else is a datastore id and is checked as one: a client cannot name a server path.
    """
    return isinstance(image, str) and bool(image) and image == upload_path


_SAMPLE_INTS = {"seed": (0, 2**32 - 1), "max_candidates": (1, 100000), "mc_samples": (2, 100)}


def check_sample_params(request: dict) -> None:
    """Types and ranges of active learning's params, before any strategy runs."""
    for key, (low, high) in _SAMPLE_INTS.items():
        value = request.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise RequestError(f"params.{key} must be a whole number from {low} to {high}, got {shown}")
    for key in ("method", "model", "client_id"):
        value = request.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 128):
            raise RequestError(f"params.{key} must be text (at most 128 characters)")


__all__ = ["MicrocalcApp", "ENSEMBLE"]

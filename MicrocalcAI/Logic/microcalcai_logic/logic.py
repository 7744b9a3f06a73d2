"""The one object both front ends drive (the Slicer widget and the web page).

It holds the session's state (scene, server, settings, consent, current image, ROI, last result,
the training followed) and turns each user action into calls of the small modules next to it.
Front ends only collect inputs, call one method, and show the returned value or the
`LogicError`'s message.

Every action that talks to the server comes in three steps: `prepare_*` reads the scene and
checks the inputs (GUI thread), the job's network half runs anywhere (`TaskRunner`'s worker
thread in the Slicer panel), `finish_*` writes the scene (GUI thread). `submit_*` chains them
through `self.tasks`; the plain methods (`classify`, `annotate`, ...) run them in a row for
scripts, tests and the web page.
"""

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import exam_results, results
from .active_learning import NextSample, load_next_sample, request_next_sample
from .annotate import Annotation, save_annotation
from .classify import Classification, check_model, request_classification
from .client import ServerClient, ServerInfo
from .errors import LogicError
from .exam import (
    DEFAULT_MAP_METHOD,
    ExamResult,
    ViewResult,
    check_whole_image_model,
    is_whole_image,
    request_exam,
    request_view,
    whole_image_models,
)
from .geometry import PixelRoi, image_size, roi_from_markups, roi_from_point
from .pacs import PacsSave, describe, refusal
from .settings import JsonFileStore, LogicSettings, load_settings, save_settings
from .tasks import Task, TaskRunner
from .training import (
    TrainingMonitor,
    TrainProgress,
    running_training,
    start_training,
    stop_training,
    training_progress,
)
from .upload import PreparedUpload, prepare_upload, send_upload, sent_without_view
from .volumes import find_role, mark_from_server, server_image_id

# The server refuses a whole view without laterality and projection (docs/server-api.md), a PNG or
# NRRD carries none, and the module has no control to state them: refused here, in words.
LOCAL_VIEW_REFUSAL = (
    "Classify view needs the view's laterality and projection (L/R, CC/MLO) from a DICOM header, and "
    "this image has none: open the view as DICOM, or from the server."
)


class ConsentRequired(LogicError):
    """The action would send an image of this machine to the server, and the user has not said
    yet whether that is allowed. Front ends ask (`consent_question`), then call
    `set_upload_consent` and repeat the action."""


@dataclass
class Control:
    enabled: bool
    reason: str = ""  # why it is disabled: the status line shows it


@dataclass
class Controls:
    """Which of the panel's buttons can be pressed now, and why not."""

    connect: Control
    classify: Control
    annotate: Control
    next_sample: Control
    train: Control
    stop_training: Control
    saliency: Control
    cancel: Control
    save_pacs: Control
    # whole-image model (BAC): the exam of the selected view, or that view alone
    exam: Control = field(default_factory=lambda: Control(False))
    classify_view: Control = field(default_factory=lambda: Control(False))

    def first_reason(self) -> str:
        for name in ("classify", "next_sample", "train"):
            control = getattr(self, name)
            if not control.enabled and control.reason:
                return control.reason
        return ""


@dataclass
class ClassifyJob:
    volume_node: Any
    roi: PixelRoi
    model: str
    saliency: Optional[str]
    server_url: str
    image_id: Optional[str]  # the datastore id the server already knows, or None
    upload: Optional[PreparedUpload] = None  # what is sent when it does not
    result: Optional[Classification] = None
    dicom_out: bool = False  # Save to PACS: the server also stores the result as DICOM


@dataclass
class ExamJob:
    """Exam (BAC) or Classify view: a whole-image model reads the selected view, or the four
    views of its exam."""

    volume_node: Any
    model: str
    saliency: Optional[str]
    server_url: str
    image_id: Optional[str]
    whole_exam: bool
    known: dict  # datastore id -> volume of the scene already holding that image
    upload: Optional[PreparedUpload] = None  # Classify view of a local image: sent first
    folder: str = ""  # where views not in the scene are downloaded
    result: Any = None  # ExamResult (exam) or ViewResult (one view)
    downloads: dict = field(default_factory=dict)  # datastore id -> downloaded file


@dataclass
class AnnotateJob:
    volume_node: Any
    roi: PixelRoi
    annotation: Annotation
    server_url: str
    image_id: Optional[str]
    upload: Optional[PreparedUpload] = None
    saved: list = field(default_factory=list)


class MicrocalcAILogic:
    def __init__(
        self,
        scene,
        settings: Optional[LogicSettings] = None,
        remember: bool = True,
        cache_folder: Optional[str] = None,
        client_factory=ServerClient,
        settings_store=None,
        temp_folder: Optional[str] = None,
        instance_lookup: Optional[Callable[[str], Optional[str]]] = None,
    ):
        """`settings_store`: where settings are remembered (Qt's settings interface; inside
        Slicer `slicer.app.userSettings()`), used when `remember`; default a JSON file.
        `temp_folder`: this session's files (Slicer: under `slicer.app.temporaryPath`).
        `instance_lookup`: instance UID -> file, for volumes of Slicer's DICOM module (default:
        Slicer's DICOM database)."""
        self.scene = scene
        self.remember = remember
        self.settings_store = (
            (settings_store if settings_store is not None else JsonFileStore()) if remember else None
        )
        self.settings = (
            settings
            if settings is not None
            else (load_settings(self.settings_store) if remember else LogicSettings())
        )
        self.temp_folder = temp_folder or os.path.join(tempfile.gettempdir(), "microcalcai")
        self.cache_folder = cache_folder or os.path.join(self.temp_folder, "samples")
        self.instance_lookup = instance_lookup
        self._client_factory = client_factory
        self.client: Optional[ServerClient] = None
        self.info: Optional[ServerInfo] = None
        self.volume = None
        self.roi: Optional[PixelRoi] = None
        self.last: Optional[Classification] = None
        self.last_pacs: Optional[PacsSave] = None  # what the last Save to PACS stored
        self.exam: Optional[ExamResult] = None  # the last exam (BAC) read, its views in the scene
        self.tasks = TaskRunner()  # the user's actions, one at a time
        self.polls = TaskRunner()  # training progress, beside them
        self.monitor: Optional[TrainingMonitor] = None
        self.missing_requirements: list = []  # set by the front end; Connect and the rest wait for them
        self._declined: set = set()  # servers refused this session (asked again next session)

    # -- server ----------------------------------------------------------------------------
    def connect(self, url: Optional[str] = None) -> ServerInfo:
        """Reach the server, read its models, and remember the address for next time."""
        return self.finish_connect(self.request_connect(url))

    def request_connect(self, url: Optional[str] = None):
        client = self._client_factory(url or self.settings.server_url)
        return client, client.info()

    def finish_connect(self, answer) -> ServerInfo:
        client, info = answer
        self.client, self.info = client, info
        self.settings.server_url = client.url
        self.settings.remember_server(client.url)
        if self.settings.model not in info.models and info.models:
            self.settings.model = info.model_names()[0]
        hosted = self.trainable_models()
        if self.settings.train_model not in hosted and hosted:
            self.settings.train_model = hosted[0]
        # A training started elsewhere (another annotator, the command line) is followed too.
        running = running_training(info.train_stats)
        self.monitor = TrainingMonitor(running) if running else None
        if running:
            self.settings.train_model = running
        self.save_settings()
        return info

    def submit_connect(self, url: Optional[str], on_done, on_error) -> Task:
        return self.tasks.submit(
            "Connecting",
            lambda task: self.request_connect(url),
            lambda a: on_done(self.finish_connect(a)),
            on_error,
        )

    def save_settings(self) -> None:
        if self.remember:
            save_settings(self.settings, self.settings_store)

    def require_client(self) -> ServerClient:
        if self.client is None:
            raise LogicError("Connect to a MicrocalcAI server first.")
        return self.client

    def model_names(self) -> list:
        return self.info.model_names() if self.info is not None else []

    def trainable_models(self) -> list:
        """The models Train can fine-tune: hosted ROI models (an ensemble is rebuilt over its
        members; whole-image models are trained with `microcalcai train`, the server refuses)."""
        whole = set(whole_image_models(self.info))
        return [name for name in self.model_names() if name != "ensemble" and name not in whole]

    # -- consent: nothing of this machine reaches a server before the user has allowed it -----
    def upload_consent(self) -> Optional[bool]:
        """True: allowed (remembered); False: refused this session; None: not asked yet."""
        url = self.require_client().url
        if url in self.settings.upload_consent:
            return True
        return False if url in self._declined else None

    def set_upload_consent(self, allowed: bool) -> None:
        url = self.require_client().url
        if allowed:
            self._declined.discard(url)
            if url not in self.settings.upload_consent:
                self.settings.upload_consent = self.settings.upload_consent + [url]
        else:
            self.settings.upload_consent = [u for u in self.settings.upload_consent if u != url]
            self._declined.add(url)
        self.save_settings()

    def consent_question(self) -> str:
        return (
            "This image is not on the server yet. To classify or label it, a de-identified copy "
            "(pixels, display settings and geometry; no names, ids, dates or institution) is sent to "
            f"{self.require_client().url} and kept in its datastore. Allow sending images to this "
            "server? (Remembered; change it in the module's Server section.)"
        )

    def needs_upload(self, volume_node) -> bool:
        return volume_node is not None and server_image_id(volume_node, self.require_client().url) is None

    def _upload_for(self, volume_node) -> Optional[PreparedUpload]:
        """What would be sent for this volume (None when the server holds it); asks first."""
        if not self.needs_upload(volume_node):
            return None
        consent = self.upload_consent()
        if consent is None:
            raise ConsentRequired(self.consent_question())
        if consent is False:
            raise LogicError(
                f"Sending images to {self.client.url} is not allowed (you declined): open an image "
                "from the server (Next sample), or allow sending in the Server section."
            )
        folder = tempfile.mkdtemp(prefix="upload-", dir=_made(self.temp_folder))
        try:
            return prepare_upload(volume_node, folder, self.instance_lookup)
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _image_id(self, upload: Optional[PreparedUpload], image_id: Optional[str], task=None) -> str:
        """Network half: the datastore id, sending the prepared image when needed (once). On a
        worker, the upload reports its progress and stops mid-way when the user cancels."""
        if upload is None:
            return image_id

        def progress(fraction):
            task.check()
            task.report("Sending the de-identified image to the server (once)", fraction)

        try:
            return send_upload(self.require_client(), upload, progress if task is not None else None)
        finally:
            import shutil

            shutil.rmtree(upload.folder, ignore_errors=True)

    # -- which image, which ROI --------------------------------------------------------------
    def roi_for(
        self,
        volume_node,
        roi_node=None,
        point_ras: Optional[Sequence[float]] = None,
        size_mm: Optional[float] = None,
    ) -> PixelRoi:
        """The pixel ROI from an ROI box, or from a point and a size in millimetres."""
        if volume_node is None:
            raise LogicError("Select the mammogram to classify.")
        if roi_node is not None:
            return roi_from_markups(volume_node, roi_node)
        if point_ras is not None:
            return roi_from_point(volume_node, point_ras, size_mm or self.settings.roi_size_mm)
        raise LogicError("Place an ROI box or a point on the calcifications first.")

    @staticmethod
    def point_position(point_node) -> Optional[list]:
        """The first control point of a markups point list, in world RAS (None if unplaced)."""
        if point_node is None or point_node.GetNumberOfDefinedControlPoints() < 1:
            return None
        position = [0.0, 0.0, 0.0]
        point_node.GetNthControlPointPositionWorld(0, position)
        return position

    def check_shown(self, volume_node) -> None:
        """Refuse when the slice views show another image than the one selected: a label or a
        result must be for what the user sees."""
        if volume_node is None:
            raise LogicError("Select the mammogram first.")
        backgrounds = set()
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
            background = self.scene.GetNthNodeByClass(
                index, "vtkMRMLSliceCompositeNode"
            ).GetBackgroundVolumeID()
            if background:
                backgrounds.add(background)
        if backgrounds and volume_node.GetID() not in backgrounds:
            shown = self.scene.GetNodeByID(sorted(backgrounds)[0])
            raise LogicError(
                "The views show '{}' but the Mammogram selector is '{}': select the image you are "
                "looking at (or show the selected one) and try again.".format(
                    shown.GetName() if shown is not None else "another image", volume_node.GetName()
                )
            )

    def select_volume(self, volume_node) -> bool:
        """The user chose another image: the map and table of the previous one go (True when
        something was removed)."""
        removed = results.forget_results_of_other_images(self.scene, volume_node)
        if volume_node is not self.volume:
            self.volume, self.roi, self.last = volume_node, None, None
        return removed

    # -- classify --------------------------------------------------------------------------
    def prepare_classify(
        self,
        volume_node,
        roi_node=None,
        point_ras: Optional[Sequence[float]] = None,
        size_mm: Optional[float] = None,
        model: Optional[str] = None,
    ) -> ClassifyJob:
        client = self.require_client()
        model = model or self.settings.model
        check_model(self.info, model)
        roi = self.roi_for(volume_node, roi_node, point_ras, size_mm)
        image_size(volume_node)  # a clear error for an empty or 3D volume
        return self._job(client, volume_node, roi, model, upload=self._upload_for(volume_node))

    def _job(self, client, volume_node, roi, model: str, **fields) -> ClassifyJob:
        """The classification of `roi` on `volume_node` that Classify and Save to PACS both run."""
        return ClassifyJob(
            volume_node=volume_node,
            roi=roi,
            model=model,
            saliency=self._saliency_method(),
            server_url=client.url,
            image_id=server_image_id(volume_node, client.url),
            **fields,
        )

    def _saliency_method(self) -> Optional[str]:
        # The map is computed even while hidden, so turning it on later is instant.
        return self.settings.saliency_method if self.settings.saliency_method not in ("", "none") else None

    def run_classify(self, job: ClassifyJob, task: Optional[Task] = None) -> ClassifyJob:
        job.image_id = self._image_id(job.upload, job.image_id, task)
        if task is not None:
            task.check()
            task.report(f"Classifying with {job.model}")
        job.result = request_classification(
            self.require_client(),
            self.info,
            job.image_id,
            job.roi,
            job.model,
            saliency=job.saliency,
            dicom_out=job.dicom_out,
        )
        return job

    def finish_classify(self, job: ClassifyJob) -> Classification:
        """Show the table and the saliency overlay (updating, never adding, nodes)."""
        if job.upload is not None:
            mark_from_server(job.volume_node, job.image_id, job.server_url)
        result = job.result
        self.select_volume(job.volume_node)
        self.volume, self.roi, self.last = job.volume_node, result.roi, result
        results.update_results_table(self.scene, result, job.volume_node)
        node = results.update_saliency_node(self.scene, job.volume_node, result)
        results.show_in_slice_views(
            self.scene, job.volume_node, node, self.settings.saliency_opacity, self.settings.show_saliency
        )
        return result

    def classify(
        self, volume_node, roi_node=None, point_ras=None, size_mm=None, model=None
    ) -> Classification:
        return self.finish_classify(
            self.run_classify(self.prepare_classify(volume_node, roi_node, point_ras, size_mm, model))
        )

    def submit_classify(
        self, on_done, on_error, volume_node, roi_node=None, point_ras=None, size_mm=None, model=None
    ):
        job = self.prepare_classify(volume_node, roi_node, point_ras, size_mm, model)
        return self.tasks.submit(
            "Classifying",
            lambda task: self.run_classify(job, task),
            lambda j: on_done(self.finish_classify(j)),
            on_error,
        )

    # -- save to PACS ------------------------------------------------------------------------
    def prepare_save_to_pacs(
        self,
        volume_node,
        roi_node=None,
        point_ras: Optional[Sequence[float]] = None,
        size_mm: Optional[float] = None,
        model: Optional[str] = None,
    ) -> ClassifyJob:
        """Classify the ROI on screen of the selected image and have the server store the result
        (SR, and the saliency map as a Segmentation) in that image's own study. Only for an image
        of the server's archive: never uploads (pacs.py says why)."""
        client = self.require_client()
        model = model or self.settings.model
        check_model(self.info, model)
        if volume_node is None:
            raise LogicError("Select the mammogram whose result is to be saved to PACS.")
        self.check_shown(volume_node)
        if roi_node is None and point_ras is None:
            raise LogicError("Place the ROI box (or the point) on the calcifications whose result you save.")
        roi = self.roi_for(volume_node, roi_node, point_ras, size_mm)
        refused = refusal(volume_node, client.url)
        if refused:
            raise LogicError(refused)
        image_size(volume_node)
        return self._job(client, volume_node, roi, model, dicom_out=True)

    def finish_save_to_pacs(self, job: ClassifyJob) -> PacsSave:
        """Show the classification as Classify does, and record what was stored."""
        self.last_pacs = describe(self.finish_classify(job))
        return self.last_pacs

    def save_to_pacs(self, volume_node, roi_node=None, point_ras=None, size_mm=None, model=None) -> PacsSave:
        job = self.prepare_save_to_pacs(volume_node, roi_node, point_ras, size_mm, model)
        return self.finish_save_to_pacs(self.run_classify(job))

    def submit_save_to_pacs(
        self, on_done, on_error, volume_node, roi_node=None, point_ras=None, size_mm=None, model=None
    ) -> Task:
        job = self.prepare_save_to_pacs(volume_node, roi_node, point_ras, size_mm, model)
        return self.tasks.submit(
            "Saving to PACS",
            lambda task: self.run_classify(job, task),
            lambda j: on_done(self.finish_save_to_pacs(j)),
            on_error,
        )

    def results_table(self):
        return find_role(self.scene, "vtkMRMLTableNode", results.TABLE_ROLE)

    def saliency_node(self):
        return results.saliency_node(self.scene)

    def set_saliency_display(self, opacity: Optional[float] = None, visible: Optional[bool] = None) -> int:
        """Show or hide the map of the image shown; without a map nothing in the views changes."""
        if opacity is not None:
            self.settings.saliency_opacity = float(opacity)
        if visible is not None:
            self.settings.show_saliency = bool(visible)
        node = exam_results.map_node(self.scene, self.volume) or self.saliency_node()
        if node is None:
            return 0
        return results.show_in_slice_views(
            self.scene, None, node, self.settings.saliency_opacity, self.settings.show_saliency
        )

    # -- whole-image models (BAC): one view, or the four views of an exam ------------------
    def whole_image_models(self) -> list:
        return whole_image_models(self.info)

    def is_whole_image_model(self, model: Optional[str] = None) -> bool:
        model = model or self.settings.model
        return self.info is not None and is_whole_image(self.info.models.get(model))

    def prepare_exam(self, volume_node, model: Optional[str] = None, whole_exam: bool = True) -> ExamJob:
        """Exam (BAC): the exam of the selected view, which must be an image of the server (the
        server finds its exam's other views in its studies). Classify view (`whole_exam` False):
        that view alone, a local image sent first as Classify does."""
        client = self.require_client()
        model = model or self.settings.model
        check_whole_image_model(self.info, model)
        if volume_node is None:
            raise LogicError(
                "Select a view of the exam (an image of the server)."
                if whole_exam
                else "Select the view to classify."
            )
        image_size(volume_node)
        image_id = server_image_id(volume_node, client.url)
        if not whole_exam and image_id is None and sent_without_view(volume_node):
            raise LogicError(LOCAL_VIEW_REFUSAL)
        if whole_exam and image_id is None:
            raise LogicError(
                f"'{volume_node.GetName()}' is not an image of {client.url}: an exam's four views are read "
                "from the server's studies, so open a view of the exam from the server (or use Classify "
                "view for this image alone)."
            )
        known = {}
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = self.scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
            held = server_image_id(node, client.url)
            if held and node.GetAttribute("MicrocalcAI.Role") != results.EXAM_MAP_ROLE:
                known.setdefault(held, node)
        if image_id:
            known[image_id] = volume_node
        return ExamJob(
            volume_node=volume_node,
            model=model,
            saliency=self._map_method(),
            server_url=client.url,
            image_id=image_id,
            whole_exam=whole_exam,
            known=known,
            upload=None if whole_exam else self._upload_for(volume_node),
            folder=os.path.join(self.cache_folder, "exam"),
        )

    def _map_method(self) -> Optional[str]:
        # The study's explanation is Grad-CAM++; an explicit "none" turns maps off.
        return None if self.settings.saliency_method in ("", "none") else DEFAULT_MAP_METHOD

    def run_exam(self, job: ExamJob, task: Optional[Task] = None) -> ExamJob:
        """Network half: the answers, the maps, and the exam's views the scene lacks."""
        client = self.require_client()
        job.image_id = self._image_id(job.upload, job.image_id, task)

        def progress(message, fraction=None):
            if task is not None:
                task.check()
                task.report(message, fraction)

        if not job.whole_exam:
            progress(f"Classifying the whole view with {job.model}")
            job.result = request_view(client, self.info, job.image_id, job.model, job.saliency)
            return job
        progress(f"Reading the exam with {job.model}")
        exam = request_exam(client, self.info, job.image_id, job.model, job.saliency, progress=progress)
        for view in exam.views:
            if view.image_id in job.known or view.image_id in job.downloads:
                continue
            progress(f"Downloading {view.view or view.image_id}")
            job.downloads[view.image_id] = client.download_image(
                view.image_id, os.path.join(job.folder, _safe_name(view.image_id))
            )
        job.result = exam
        return job

    def finish_exam(self, job: ExamJob):
        """Scene half: each view as a volume with its map over it, the table, the selected view
        shown with its map. Returns the ExamResult (or the ViewResult of Classify view)."""
        if job.upload is not None:
            mark_from_server(job.volume_node, job.image_id, job.server_url)
        views = job.result.views if job.whole_exam else [job.result]
        volumes = []
        for view in views:
            volume = job.known.get(view.image_id)
            # by the node itself, not its ID: a removed node's ID can be given to a newer node
            if volume is None or not self.scene.IsNodePresent(volume):
                volume = exam_results.view_volume(self.scene, view.image_id, job.server_url)
            if volume is None and view.image_id not in job.downloads:
                # the scene held this view when the exam started (so it was not downloaded), and
                # the user removed it while the worker ran
                raise LogicError(
                    "The view {} was removed from the scene while the exam ran: run Exam (BAC) again.".format(
                        " ".join(p for p in (view.view, f"({view.image_id})") if p)
                    )
                )
            if volume is None:
                volume = exam_results.load_view(
                    self.scene, job.downloads[view.image_id], view.image_id, job.server_url, view.view
                )
            if view.view:
                volume.SetAttribute(exam_results.VIEW_ATTRIBUTE, view.view)
            exam_results.update_view_map(self.scene, volume, view)
            volumes.append(volume)
        if job.whole_exam:
            # an earlier exam's views and maps (another study's) would otherwise stay in memory,
            # full resolution, one set per exam read
            exam_results.forget_exam(self.scene, keep=volumes + [job.volume_node])
            self.exam = job.result
            exam_results.update_exam_table(self.scene, job.result)
        else:
            exam_results.update_view_table(self.scene, job.result)
        self.volume, self.roi, self.last = job.volume_node, None, None
        exam_results.show_view(
            self.scene, job.volume_node, self.settings.saliency_opacity, self.settings.show_saliency
        )
        return job.result

    def exam_of(self, volume_node, model: Optional[str] = None) -> ExamResult:
        """Exam (BAC) in a row (scripts, tests, the web page)."""
        return self.finish_exam(self.run_exam(self.prepare_exam(volume_node, model)))

    def classify_view(self, volume_node, model: Optional[str] = None) -> ViewResult:
        """One whole view with a whole-image model, in a row."""
        return self.finish_exam(self.run_exam(self.prepare_exam(volume_node, model, whole_exam=False)))

    def submit_exam(self, on_done, on_error, volume_node, model: Optional[str] = None) -> Task:
        job = self.prepare_exam(volume_node, model)
        return self.tasks.submit(
            "Reading the exam",
            lambda task: self.run_exam(job, task),
            lambda j: on_done(self.finish_exam(j)),
            on_error,
        )

    def submit_classify_view(self, on_done, on_error, volume_node, model: Optional[str] = None) -> Task:
        job = self.prepare_exam(volume_node, model, whole_exam=False)
        return self.tasks.submit(
            "Classifying the view",
            lambda task: self.run_exam(job, task),
            lambda j: on_done(self.finish_exam(j)),
            on_error,
        )

    def show_exam_view(self, key: str):
        """Show one view of the last exam (its image id or name, "L CC") with its map."""
        if self.exam is None:
            raise LogicError("Run Exam (BAC) first.")
        view = self.exam.view_result(key)
        if view is None:
            raise LogicError(
                "The exam {} has no view '{}': it has {}.".format(
                    self.exam.exam_id, key, ", ".join(v.view or v.image_id for v in self.exam.views)
                )
            )
        url = self.client.url if self.client else None
        volume = exam_results.view_volume(self.scene, view.image_id, url)
        if volume is None:
            raise LogicError(
                f"The view {view.view} ({view.image_id}) is no longer in the scene: run Exam (BAC) again."
            )
        self.volume, self.roi, self.last = volume, None, None
        settings = self.settings
        exam_results.show_view(self.scene, volume, settings.saliency_opacity, settings.show_saliency)
        return volume

    def exam_table(self):
        return exam_results.exam_table(self.scene)

    def exam_shown(self) -> Optional[str]:
        """The datastore id of the exam view the slice views show (None outside an exam)."""
        if self.exam is None or self.volume is None:
            return None
        image_id = server_image_id(self.volume)
        return image_id if self.exam.view_result(image_id or "") is not None else None

    # -- annotate --------------------------------------------------------------------------
    def prepare_annotate(
        self,
        label: str,
        volume_node,
        roi_node=None,
        point_ras: Optional[Sequence[float]] = None,
        size_mm: Optional[float] = None,
        morphology: Optional[str] = None,
        distribution: Optional[str] = None,
        comment: str = "",
        roi: Optional[PixelRoi] = None,
    ) -> AnnotateJob:
        """The label is for the image selected and the ROI on screen now (the box, the point, or
        an explicit pixel `roi`), never for an earlier Classify or Next sample."""
        client = self.require_client()
        annotation = Annotation(
            label=label,
            morphology=morphology or None,
            distribution=distribution or None,
            annotator=self.settings.annotator,
            comment=comment,
        ).validated()
        if volume_node is None:
            raise LogicError("Select the mammogram the label is for.")
        self.check_shown(volume_node)
        if roi is None:
            if roi_node is None and point_ras is None:
                raise LogicError("Place the ROI box (or the point) on the calcifications you are labelling.")
            roi = self.roi_for(volume_node, roi_node, point_ras, size_mm)
        return AnnotateJob(
            volume_node=volume_node,
            roi=roi,
            annotation=annotation,
            server_url=client.url,
            image_id=server_image_id(volume_node, client.url),
            upload=self._upload_for(volume_node),
        )

    def run_annotate(self, job: AnnotateJob, task: Optional[Task] = None) -> AnnotateJob:
        job.image_id = self._image_id(job.upload, job.image_id, task)
        if task is not None:
            task.check()
        job.saved = save_annotation(self.require_client(), job.image_id, job.roi, job.annotation)
        return job

    def finish_annotate(self, job: AnnotateJob) -> list:
        if job.upload is not None:
            mark_from_server(job.volume_node, job.image_id, job.server_url)
        self.volume, self.roi = job.volume_node, job.roi
        return job.saved

    def annotate(
        self, label: str, volume_node=None, roi_node=None, point_ras=None, size_mm=None, **details
    ) -> list:
        """Save a label for the ROI on screen of the selected image; returns every annotation
        the server now holds for that image."""
        job = self.prepare_annotate(label, volume_node, roi_node, point_ras, size_mm, **details)
        return self.finish_annotate(self.run_annotate(job))

    def submit_annotate(
        self, on_done, on_error, label, volume_node, roi_node=None, point_ras=None, size_mm=None, **details
    ):
        job = self.prepare_annotate(label, volume_node, roi_node, point_ras, size_mm, **details)
        return self.tasks.submit(
            "Saving the label",
            lambda task: self.run_annotate(job, task),
            lambda j: on_done(self.finish_annotate(j)),
            on_error,
        )

    # -- active learning -------------------------------------------------------------------
    def request_next(self, strategy: Optional[str] = None, task: Optional[Task] = None):
        """Network half of Next sample: the server's proposal and its image downloaded."""
        client = self.require_client()
        strategy = strategy or self.settings.strategy
        answer = request_next_sample(
            client,
            strategy,
            method=self.settings.scoring if strategy in ("uncertain", "auto") else None,
            model=self.settings.model,
            client_id=self.settings.annotator,
        )
        if answer is None:
            return None
        progress = None
        if task is not None:
            task.check()
            message = "Downloading {}".format(answer.get("id"))
            task.report(message)

            def progress(fraction):
                task.check()
                task.report(message, fraction)

        folder = os.path.join(self.cache_folder, _safe_name(answer["id"]))
        path = client.download_image(str(answer["id"]), folder, progress=progress)
        return answer, path

    def finish_next(self, fetched, roi_node=None) -> Optional[NextSample]:
        if fetched is None:
            return None
        answer, path = fetched
        sample, volume, _ = load_next_sample(self.require_client(), self.scene, answer, path, roi_node)
        self.select_volume(volume)
        self.volume, self.roi, self.last = volume, sample.roi, None
        results.show_in_slice_views(self.scene, volume, None, self.settings.saliency_opacity, False)
        return sample

    def next_sample(self, strategy: Optional[str] = None, roi_node=None) -> Optional[NextSample]:
        """Load the next unlabeled ROI (None when all are labeled); clears the last result."""
        return self.finish_next(self.request_next(strategy), roi_node)

    def submit_next_sample(self, on_done, on_error, strategy=None, roi_node=None) -> Task:
        return self.tasks.submit(
            "Finding the next sample",
            lambda task: self.request_next(strategy, task),
            lambda fetched: on_done(self.finish_next(fetched, roi_node)),
            on_error,
        )

    # -- training --------------------------------------------------------------------------
    def start_training(self, model: Optional[str] = None, **options) -> dict:
        model = model or self.settings.train_model
        options.setdefault("max_epochs", self.settings.train_epochs)
        answer = start_training(self.require_client(), model, options)
        self.monitor = TrainingMonitor(model, just_started=True)
        return answer

    def training_progress(self, model: Optional[str] = None) -> TrainProgress:
        return training_progress(self.require_client(), model or self.settings.train_model)

    def follow_training(self) -> Optional[TrainProgress]:
        """One poll of the training followed (None when none is): a failed poll keeps it."""
        if self.monitor is None:
            return None
        progress = self.monitor.poll(self.require_client())
        return progress

    def submit_start_training(self, on_done, on_error, model: Optional[str] = None, **options) -> Task:
        return self.tasks.submit(
            "Starting the training", lambda task: self.start_training(model, **options), on_done, on_error
        )

    def submit_stop_training(self, on_done, on_error) -> Task:
        return self.tasks.submit(
            "Stopping the training", lambda task: self.stop_training(), on_done, on_error
        )

    def submit_follow_training(self, on_done, on_error=None) -> Optional[Task]:
        """One poll of the training on its own worker (None when none is followed, or the previous
        poll is still out): the panel's timer calls it, and actions can run meanwhile."""
        if self.monitor is None or self.polls.busy:
            return None
        return self.polls.submit(
            "Following the training", lambda task: self.follow_training(), on_done, on_error
        )

    @property
    def training_running(self) -> bool:
        return self.monitor is not None and self.monitor.active

    def stop_training(self) -> dict:
        return stop_training(self.require_client())

    # -- what the panel allows now -----------------------------------------------------------
    def controls(self, volume_node=None, roi_node=None, point_ras=None, use_box: bool = True) -> Controls:
        busy = self.tasks.busy
        missing = (
            "Install the missing Python packages first ({}).".format(", ".join(self.missing_requirements))
            if self.missing_requirements
            else ""
        )
        connected = self.client is not None
        reason = missing or ("" if connected else "Connect to a MicrocalcAI server first.")
        if busy:
            reason = reason or f"Wait for '{self.tasks.current.label}' to finish, or cancel it."
        roi_reason = reason
        if not roi_reason:
            if volume_node is None:
                roi_reason = "Select or load a mammogram."
            elif use_box and (
                roi_node is None
                or roi_node.GetNumberOfDefinedControlPoints() < 1
                or min(roi_node.GetSize()[:2]) <= 0
            ):
                roi_reason = "Draw the ROI box over the calcifications."
            elif not use_box and point_ras is None:
                roi_reason = "Click a point on the calcifications."
        hosted = self.trainable_models()
        train_reason = reason or (
            "A training is running: wait for it or press Stop."
            if self.training_running
            else ("" if hosted else "The server hosts no model to train.")
        )
        pacs_reason = roi_reason or (refusal(volume_node, self.client.url) if volume_node is not None else "")
        saliency = self.saliency_node()
        shown = saliency is not None and saliency.GetAttribute(results.SOURCE_VOLUME_ATTRIBUTE) == (
            volume_node.GetID() if volume_node is not None else None
        )
        shown = shown or exam_results.map_node(self.scene, volume_node) is not None  # an exam view's map
        whole_image = self.is_whole_image_model()
        view_reason = reason or (
            "" if whole_image else "Choose a whole-image model (BAC) for Exam and Classify view."
        )
        if not view_reason and volume_node is None:
            view_reason = "Select a view of the exam."
        exam_reason = view_reason
        if not exam_reason and server_image_id(volume_node, self.client.url) is None:
            exam_reason = "Exam (BAC) reads the four views from the server: open a view of the exam from it."
            if sent_without_view(volume_node):
                view_reason = LOCAL_VIEW_REFUSAL
        classify_reason = roi_reason
        if whole_image and not reason:
            # before the ROI's own reason: no ROI makes an ROI classification of this model possible
            classify_reason = f"'{self.settings.model}' reads whole images: use Exam (BAC) or Classify view."
            pacs_reason = classify_reason
        return Controls(
            # Connect stays available while packages are missing: it is what installs them.
            connect=Control(not busy, reason if busy else missing),
            classify=Control(not classify_reason, classify_reason),
            annotate=Control(not roi_reason, roi_reason),
            next_sample=Control(not reason, reason),
            train=Control(not train_reason, train_reason),
            stop_training=Control(connected and self.training_running, ""),
            saliency=Control(
                shown, "" if shown else "Classify an ROI of this image to see its saliency map."
            ),
            cancel=Control(busy, ""),
            save_pacs=Control(not pacs_reason, pacs_reason),
            exam=Control(not exam_reason, exam_reason),
            classify_view=Control(not view_reason, view_reason),
        )


def _made(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    return folder


def _safe_name(text) -> str:
    from .datastore import _safe

    return _safe(str(text))

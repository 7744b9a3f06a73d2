"""What each control of the page does: collect the page's inputs, call the Logic, show its answer.

No decision is made here: ROIs, classification, overlays, labels, samples and training are the
Logic's (`microcalcai_logic`, shared with the Slicer module). A `LogicError` becomes the page's
error line in the Logic's own words; any other exception is logged with its traceback and shown
as one line, and the page stays usable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time

from microcalcai_logic import LogicError, viewer
from microcalcai_logic.errors import user_message
from microcalcai_logic.geometry import place_roi_node, vtk_to_numpy_matrix
from microcalcai_logic.results import SALIENCY_FLOOR, saliency_color_node

log = logging.getLogger("microcalcai.web")

TRAIN_POLL_S = 1.0


def colorbar_css(scene) -> str:
    """A CSS gradient drawn from the saliency colour table itself, so the bar is the overlay's."""
    node = saliency_color_node(scene)
    count = node.GetNumberOfColors()
    stops = []
    for step in range(11):
        index = round(step / 10 * (count - 1))
        rgba = [0.0, 0.0, 0.0, 0.0]
        node.GetColor(index, rgba)
        r, g, b = (round(255 * c) for c in rgba[:3])
        stops.append(f"rgba({r},{g},{b},{rgba[3]:.2f}) {step * 10}%")
    return "linear-gradient(to right, " + ", ".join(stops) + ")"


def _certainty_state(found) -> dict | None:
    """How sure the models are (the Logic's certainty.py), as the page shows it."""
    if found is None:
        return None
    return {
        "spread": found.spread,
        "split": found.split,
        "agreement": found.agreement,
        "reliability": found.reliability,
    }


def _box_handles(box_node, shown: bool) -> None:
    display = box_node.GetDisplayNode()
    if display is not None:
        display.SetHandlesInteractive(shown)


class PageController:
    def __init__(self, server, slicer_app, logic, work_folder: str | None = None):
        self.server = server
        self.state = server.state
        self.slicer = slicer_app
        self.logic = logic
        self.scene = slicer_app.scene
        # This process's files: uploads (kept while their image is shown: classification sends
        # the file) and the datastore images it downloaded. Removed when the process stops.
        self.work_folder = work_folder or tempfile.mkdtemp(prefix="microcalcai-web-")
        self.upload_folder = os.path.join(self.work_folder, "uploads")
        os.makedirs(self.upload_folder, exist_ok=True)
        self._observed = []  # (node, tag) of markups observers
        self._train_task = None
        self._geometry_tags = []
        self._last_use = time.monotonic()

    def touch(self):
        """Someone used the page now (an idle session's page stops: app.py)."""
        self._last_use = time.monotonic()

    def idle_s(self) -> float:
        return time.monotonic() - self._last_use

    # -- plumbing ------------------------------------------------------------------------------
    async def _act(self, busy: str, work):
        """Run one user action: busy line while it runs, its error (if any) in plain words."""
        self.touch()
        with self.state:
            self.state.busy = busy
            self.state.error = ""
            self.state.notice = ""
        await asyncio.sleep(0)  # let the page show the busy line before blocking calls
        try:
            with self.state:
                work()
        except LogicError as error:
            with self.state:
                self.state.error = str(error)
        except Exception as error:  # a bug: traceback to the log, one line on the page
            log.exception("%s failed", busy)
            with self.state:
                self.state.error = user_message(error)
        finally:
            with self.state:
                self.state.busy = ""
            self.render()

    def slice_views(self):
        return self.slicer.view_manager.get_slice_views()

    def render(self):
        for view in self.slice_views():
            view.schedule_render()

    # -- who labels ------------------------------------------------------------------------------
    def set_annotator(self):
        """The name typed in the page's first dialog: stored with every label of this session."""
        self.touch()
        name = " ".join(str(self.state.annotator_input or "").split())
        if not name:
            self.state.error = "Type your name: it is stored with every label you save."
            return
        if len(name) > 80:
            self.state.error = "A name of at most 80 characters, please (it is stored with every label)."
            return
        self.logic.settings.annotator = name
        self.state.update({"annotator": name, "ask_annotator": False, "error": ""})

    # -- server --------------------------------------------------------------------------------
    async def connect(self):
        await self._act("Connecting to the server", self._connect)

    def _connect(self):
        self.state.connected = False
        self.state.server_text = "Not connected"
        info = self.logic.connect(self.state.server_url)
        names = info.model_names()
        self.state.update(
            {
                "connected": True,
                "server_url": info.url,
                "server_text": "{} {} at {}: {} model(s)".format(
                    info.name or "MicrocalcAI", info.version, info.url, len(names)
                ),
                "models": names,
                "model": self.logic.settings.model if self.logic.settings.model in names else names[0],
                "hosted_models": self.logic.trainable_models(),
                "whole_image_models": self.logic.whole_image_models(),
                "demonstration_text": info.demonstration_notice(),
                "train_model": self.logic.settings.train_model or None,
                "strategies": list(info.strategies),
                "strategy": self.logic.settings.strategy
                if self.logic.settings.strategy in info.strategies
                else (info.strategies[0] if info.strategies else None),
            }
        )
        self._list_images()

    def _list_images(self):
        images = viewer.server_images(self.logic)
        self.state.images = [
            {"title": image.name + ("  (labeled)" if image.labeled else ""), "value": image.image_id}
            for image in images
        ]

    async def refresh_images(self):
        await self._act("Reading the server's images", self._list_images)

    # -- opening an image ----------------------------------------------------------------------
    async def open_datastore_image(self, image_id=None):
        image_id = image_id or self.state.image_choice
        if not image_id:
            return
        await self._act(
            f"Opening {image_id}", lambda: self._show_image(viewer.open_server_image(self.logic, image_id))
        )

    async def upload(self, files):
        """Files sent by the browser's file input: the first one becomes the image shown."""
        if not files:
            return

        def work():
            from trame_slicer.utils import write_client_files_to_dir

            if len(files) > 1:
                raise LogicError("Open one mammogram at a time (one DICOM, PNG or NRRD file).")
            folder = tempfile.mkdtemp(prefix="upload-", dir=self.upload_folder)
            try:
                path = write_client_files_to_dir(files, folder)[0]
                volume = viewer.open_image_file(self.logic, path)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._forget_uploads(keep=folder)
            self._show_image(volume)

        await self._act("Opening the uploaded file", work)

    def _forget_uploads(self, keep: str) -> None:
        # Classification uploads the file the image came from, so it lives as long as the image.
        for name in os.listdir(self.upload_folder):
            path = os.path.join(self.upload_folder, name)
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)

    def _show_image(self, volume, keep_box: bool = False, keep_exam: bool = False):
        """Show `volume` as the page's image; with `keep_exam` it is a view of the exam shown, whose
        results stay and whose map is laid over it."""
        import vtk

        self._stop_observing()
        viewer.prepare_display(volume)
        self.slicer.display_manager.show_volume_in_slice_background(volume)
        self.slicer.display_manager.show_volume_in_slice_foreground(None)
        for index in range(self.slicer.app_logic.GetSliceLogics().GetNumberOfItems()):
            self.slicer.app_logic.GetSliceLogics().GetItemAsObject(index).RotateSliceToLowestVolumeAxes(False)
        low, high = viewer.intensity_range(volume)
        display = volume.GetDisplayNode()
        image_id = viewer.shown_image_id(volume) or ""
        self.state.update(
            {
                "has_image": True,
                "image_name": volume.GetName(),
                "image_id": image_id,
                "image_text": "{} ({} x {} pixels{})".format(
                    volume.GetName(),
                    *volume.GetImageData().GetDimensions()[:2],
                    ", from the server" if image_id else ", uploaded",
                ),
                "intensity_min": low,
                "intensity_max": high,
                "preset": "Default",
                "window": display.GetWindow(),
                "level": display.GetLevel(),
                "results": [],
                "certainty": None,
                "colorbar": "",
                "result_text": "",
                "decision": "",
                "label_text": "",
                "pacs_text": "",
                "pacs_uids": [],
                "roi": None,
                "roi_text": "No ROI placed",
                "placing": "",
            }
        )
        if keep_exam:
            shown = self.logic.set_saliency_display(
                opacity=float(self.state.saliency_opacity), visible=bool(self.state.saliency_visible)
            )
            self.state.update({"exam_view": image_id, "colorbar": colorbar_css(self.scene) if shown else ""})
        else:
            self.state.update({"exam": None, "exam_views": [], "exam_view": None})
        # Left-drag on the image changes the window in Slicer's own way: keep the sliders in step.
        display.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_display_changed)
        if keep_box:
            self._observe(viewer.roi_box_node(self.scene))
            self.state.roi_mode = "box"
            self._update_roi()
        self.fit_view()

    def _on_display_changed(self, display, _event):
        with self.state:
            self.state.update({"window": display.GetWindow(), "level": display.GetLevel()})

    # -- brightness / contrast, zoom -----------------------------------------------------------
    def apply_preset(self, preset=None):
        if self.logic.volume is None:
            return
        try:
            window, level = viewer.apply_preset(self.logic.volume, preset or self.state.preset)
        except LogicError as error:
            self.state.error = str(error)
            return
        self.state.update({"window": window, "level": level})
        self.render()

    def window_level_changed(self, window, level, **_):
        self.touch()
        volume = self.logic.volume
        if volume is None or window is None or level is None:
            return
        display = volume.GetDisplayNode()
        if abs(display.GetWindow() - float(window)) < 1e-9 and abs(display.GetLevel() - float(level)) < 1e-9:
            return
        try:
            viewer.set_window_level(volume, float(window), float(level))
        except LogicError as error:
            self.state.error = str(error)
        self.render()

    def fit_view(self):
        for view in self.slice_views():
            view.fit_view_to_content()
            view.schedule_render()
        self.publish_view_geometry()

    def zoom(self, factor: float):
        for view in self.slice_views():
            view.zoom(factor)
            view.schedule_render()
        self.publish_view_geometry()

    def zoom_in(self):
        self.zoom(0.25)

    def zoom_out(self):
        self.zoom(-0.33)

    def zoom_to_roi(self):
        """Centre the view on the ROI, showing about three ROI widths around it."""
        node = viewer.placed_box(self.scene)
        if self.logic.volume is None or node is None:
            self.state.error = "Place an ROI first, then zoom to it."
            return
        centre = [0.0, 0.0, 0.0]
        size = [0.0, 0.0, 0.0]
        node.GetCenterWorld(centre)
        node.GetSize(size)
        for view in self.slice_views():
            slice_node = view.get_view_node()
            fov = slice_node.GetFieldOfView()
            width = 3 * max(size[0], size[1])
            slice_node.SetFieldOfView(width, width * fov[1] / fov[0], fov[2])
            slice_node.JumpSliceByCentering(*centre)
            view.schedule_render()
        self.publish_view_geometry()

    def publish_view_geometry(self, *_):
        """Where the view's pixels lie in RAS (for the page's coordinate read-out and for tests)."""
        self.touch()  # every zoom, pan and click in the view changes the slice node
        views = self.slice_views()
        if not views:
            return
        slice_node = views[0].get_view_node()
        if slice_node is None:
            return
        with self.state:
            self.state.view_geometry = {
                "xy_to_ras": [float(v) for v in vtk_to_numpy_matrix(slice_node.GetXYToRAS()).ravel()],
                "size": [int(v) for v in slice_node.GetDimensions()[:2]],
            }

    def watch_view_geometry(self):
        import vtk

        for view in self.slice_views():
            node = view.get_view_node()
            if node is not None:
                node.AddObserver(vtk.vtkCommand.ModifiedEvent, self.publish_view_geometry)

    # -- ROI ---------------------------------------------------------------------------------------
    def _require_image(self):
        if self.logic.volume is None:
            raise LogicError("Open a mammogram first (upload a file or pick one from the server).")

    def place_point(self):
        try:
            self._require_image()
        except LogicError as error:
            self.state.error = str(error)
            return
        viewer.remove_marks(self.scene, keep_box=False)
        node = viewer.point_node(self.scene)
        self._observe(node)
        self.state.update(
            {"roi_mode": "point", "placing": "Click on the calcifications to place the point.", "error": ""}
        )
        self.slicer.markups_logic.place_node(node)

    def draw_box(self):
        try:
            self._require_image()
        except LogicError as error:
            self.state.error = str(error)
            return
        viewer.remove_marks(self.scene)
        node = viewer.roi_box_node(self.scene)
        self._observe(node)
        self.state.update(
            {
                "roi_mode": "box",
                "placing": "Click one corner of the box, then the opposite corner.",
                "error": "",
            }
        )
        self.slicer.markups_logic.place_node(node)

    def clear_roi(self):
        viewer.remove_marks(self.scene)
        self.logic.roi = None
        self.state.update({"roi": None, "roi_text": "No ROI placed", "placing": ""})
        self.render()

    def _observe(self, node):
        import slicer

        for event in (
            slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
            slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
            slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent,
        ):
            self._observed.append((node, node.AddObserver(event, self._on_marks_changed)))

    def _stop_observing(self):
        for node, tag in self._observed:
            node.RemoveObserver(tag)
        self._observed = []

    def _on_marks_changed(self, *_):
        self.touch()
        with self.state:
            self._update_roi()

    def _marks(self):
        """(roi box node, point RAS) of the current ROI mode."""
        if self.state.roi_mode == "box":
            return viewer.placed_box(self.scene), None
        node = self.scene.GetFirstNodeByName("MicrocalcAI point")
        return None, self.logic.point_position(node)

    def _update_roi(self):
        volume = self.logic.volume
        box, point = self._marks()
        if volume is None or (box is None and point is None):
            return
        self.state.placing = ""
        try:
            roi = self.logic.roi_for(volume, roi_node=box, point_ras=point, size_mm=self._size_mm())
        except LogicError as error:
            self.state.update({"roi": None, "roi_text": str(error)})
            return
        self.state.update({"roi": roi.as_params(), "roi_text": self._roi_words(roi)})

    def _roi_words(self, roi) -> str:
        from microcalcai_logic.geometry import pixel_spacing_mm

        spacing = pixel_spacing_mm(self.logic.volume)
        size_mm = roi.size * (spacing[0] * spacing[1]) ** 0.5
        return f"ROI centre x {roi.x:.1f}, y {roi.y:.1f} px; {roi.size} px = {size_mm:.1f} mm square"

    def _size_mm(self) -> float:
        try:
            size = float(self.state.roi_size_mm)
        except (TypeError, ValueError):
            raise LogicError(
                f"The ROI size must be a number of millimetres (got '{self.state.roi_size_mm}')."
            ) from None
        return size

    def roi_size_changed(self, **_):
        if self.state.roi_mode == "point":
            self._update_roi()

    # -- classify ------------------------------------------------------------------------------
    async def classify(self):
        await self._act("Classifying", self._classify)

    def _classify(self):
        started = time.perf_counter()
        self._require_image()
        box, point = self._marks()
        if box is None and point is None:
            raise LogicError("Place a point or draw an ROI box on the calcifications first.")
        result = self.logic.classify(
            self.logic.volume,
            roi_node=box,
            point_ras=point,
            size_mm=self._size_mm() if box is None else None,
            model=self.state.model,
        )
        if box is None:
            # Show the square that was classified around the point. It is only a picture of what
            # was classified (the point sets the ROI), so it has no drag handles: Mesa's software
            # renderer spent ~0.1 s of every frame on them (benchmarks/RESULTS.md).
            box_node = viewer.roi_box_node(self.scene)
            place_roi_node(box_node, self.logic.volume, result.roi)
            _box_handles(box_node, False)
        self.logic.set_saliency_display(
            opacity=float(self.state.saliency_opacity), visible=bool(self.state.saliency_visible)
        )
        rows = [
            {
                "model": row.model,
                "version": row.version,
                "probability": row.probability,
                "threshold": row.threshold,
                "decision": row.decision or "",
                "ensemble": row.is_ensemble,
                "demonstration": row.demonstration,
            }
            for row in result.rows
        ]
        self.state.update(
            {
                "results": rows,
                "decision": result.decision,
                "result_text": "{}: P(malignant) = {:.3f}, threshold {} -> {}".format(
                    result.model,
                    result.probability,
                    "n/a" if result.threshold is None else f"{result.threshold:.3f}",
                    result.decision or "no decision",
                ),
                "roi": result.roi.as_params(),
                "roi_text": self._roi_words(result.roi),
                "certainty": _certainty_state(result.certainty),
                "colorbar": colorbar_css(self.scene) if result.saliency is not None else "",
                "colorbar_floor": SALIENCY_FLOOR,
                "timing": {
                    "page_s": time.perf_counter() - started,
                    "server": dict(result.latencies),
                },
                "label_text": "",
            }
        )

    # -- whole-image models (BAC): an exam, or one view ----------------------------------------
    async def exam(self):
        await self._act("Reading the exam", self._exam)

    def _exam(self):
        """The Logic's Exam (BAC) for the exam of the view shown: the verdict, each view's
        P(BAC) and map; the view shown keeps its place, the other views are one click away."""
        self._require_image()
        exam = self.logic.exam_of(self.logic.volume, model=self.state.model)
        self._show_views(exam.views)
        self.state.update(
            {
                "exam": {
                    "verdict": exam.verdict,
                    "positive": exam.positive,
                    "probability": exam.probability,
                    "threshold": exam.threshold,
                    "aggregation": exam.aggregation,
                    "study_uid": exam.exam_id,
                },
                "result_text": "",  # the verdict has its own line above the views
                "decision": "" if exam.positive is None else ("bac" if exam.positive else "no_bac"),
            }
        )

    async def classify_view(self):
        await self._act("Classifying the view", self._classify_view)

    def _classify_view(self):
        self._require_image()
        view = self.logic.classify_view(self.logic.volume, model=self.state.model)
        self._show_views([view])
        self.state.update(
            {
                "exam": None,
                "result_text": view.summary,
                "decision": view.decision,
            }
        )

    def _show_views(self, views):
        self.logic.set_saliency_display(
            opacity=float(self.state.saliency_opacity), visible=bool(self.state.saliency_visible)
        )
        shown = viewer.shown_image_id(self.logic.volume)
        self.state.update(
            {
                "exam_views": [
                    {
                        "image_id": view.image_id,
                        "view": view.view or view.image_id,
                        "probability": view.probability,
                        "threshold": view.threshold,
                        "decision": view.decision,
                        "has_map": view.saliency is not None,
                    }
                    for view in views
                ],
                "exam_view": shown,
                "results": [],
                "certainty": None,
                "colorbar": colorbar_css(self.scene) if any(v.saliency is not None for v in views) else "",
                "colorbar_floor": SALIENCY_FLOOR,
                "label_text": "",
            }
        )

    async def show_exam_view(self, image_id):
        """Another view of the exam with its map, in the page's one slice view."""

        def work():
            volume = self.logic.show_exam_view(str(image_id))
            self._show_image(volume, keep_exam=True)

        await self._act("Showing the view", work)

    async def save_to_pacs(self):
        await self._act("Saving to PACS", self._save_to_pacs)

    def _save_to_pacs(self):
        """The Logic's Save to PACS for the image and ROI shown; its line is the page's status."""
        self._require_image()
        box, point = self._marks()
        self.state.pacs_text = ""
        saved = self.logic.save_to_pacs(
            self.logic.volume,
            roi_node=box,
            point_ras=point,
            size_mm=self._size_mm() if box is None else None,
            model=self.state.model,
        )
        self.state.pacs_text = saved.message
        self.state.pacs_uids = saved.sop_instance_uids()

    def saliency_changed(self, saliency_visible, saliency_opacity, **_):
        try:
            self.logic.set_saliency_display(opacity=float(saliency_opacity), visible=bool(saliency_visible))
        except (LogicError, TypeError, ValueError) as error:
            self.state.error = str(error)
        self.render()

    # -- annotate, next sample -------------------------------------------------------------------
    async def annotate(self, label):
        def work():
            if not self.logic.settings.annotator:
                self.state.ask_annotator = True
                raise LogicError("Type your name first: it is stored with every label you save.")
            # The label is for the image and the ROI the page shows now.
            box, point = self._marks()
            annotations = self.logic.annotate(
                label,
                volume_node=self.logic.volume,
                roi_node=box,
                point_ras=point,
                size_mm=self._size_mm() if box is None else None,
                morphology=self.state.morphology,
                distribution=self.state.distribution,
                comment=self.state.comment or "",
            )
            roi = self.logic.roi
            image_id = viewer.shown_image_id(self.logic.volume)
            self.state.label_text = (
                f"Saved '{label}' for the ROI at x {roi.x:.0f}, y {roi.y:.0f} of {image_id} "
                f"({len(annotations)} label(s) on this image)."
            )
            self._list_images()

        await self._act(f"Saving '{label}'", work)

    async def next_sample(self):
        def work():
            box = viewer.roi_box_node(self.scene)
            sample = self.logic.next_sample(strategy=self.state.strategy, roi_node=box)
            if sample is None:
                self.state.sample_text = "Every candidate ROI on the server is labeled."
                return
            viewer.adopt_sample(self.logic)
            _box_handles(box, True)  # the proposed box may be adjusted before labelling
            self._show_image(self.logic.volume, keep_box=True)
            # The strategy asked for, in its own name (the server's answer may describe it as a record).
            self.state.sample_text = "{} proposed by '{}'{}{}.".format(
                sample.image_id,
                self.state.strategy,
                f" ({sample.stage} stage)" if sample.stage else "",
                "" if sample.score is None else f" (score {sample.score:.3f})",
            )

        await self._act("Fetching the next sample", work)

    # -- training ------------------------------------------------------------------------------
    async def start_training(self):
        def work():
            options = {"max_epochs": int(self.state.train_epochs)}
            if self.state.train_manifest_labels:
                options["include_manifest_labels"] = True
            self.logic.start_training(self.state.train_model, **options)
            self.state.update({"training": True, "train_progress": 0.0, "train_text": "Training submitted"})

        await self._act("Starting a training", work)
        if self.state.training and (self._train_task is None or self._train_task.done()):
            self._train_task = asyncio.ensure_future(self._follow_training())

    async def stop_training(self):
        await self._act("Stopping the training", self.logic.stop_training)

    async def _follow_training(self):
        """Poll the server's progress until the training ends; the page shows each step."""
        seen_running = False
        while True:
            await asyncio.sleep(TRAIN_POLL_S)
            try:
                progress = self.logic.training_progress(self.state.train_model)
            except LogicError as error:
                with self.state:
                    self.state.update({"error": str(error), "training": False})
                return
            seen_running = seen_running or progress.running
            with self.state:
                self.state.update(
                    {"train_progress": 100.0 * progress.progress, "train_text": progress.summary()}
                )
                if seen_running and not progress.running or progress.state in ("failed",):
                    self.state.training = False
            if not self.state.training:
                if progress.state == "done":
                    await self._act("Reading the new model versions", self._connect)
                return

    # -- browser connection ----------------------------------------------------------------------
    def on_client_connected(self, *_):
        # Fitting before the page has given the view its size zooms wrong: fit once it has one.
        self.fit_view()

    def cleanup(self):
        shutil.rmtree(self.work_folder, ignore_errors=True)

"""The trame-slicer application: one MRML scene, one slice view, the MicrocalcAI panel.

One process holds one scene, and every browser tab on it sees (and drives) the same scene: for
several people at once the session launcher (`microcalcai web --sessions N`, sessions.py)
starts one process per tab, which stops itself after `idle_minutes` without use.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("microcalcai.web")

VIEW_LAYOUT = "mammogram"
FRAMES_PER_S = 30.0
STILL_QUALITY = 90  # trame-rca's default still quality


def _no_view_gutter(*_args):
    """The page's own zoom buttons replace trame-slicer's 3D toggle and slice slider (a 2D image)."""


class MicrocalcWebApp:
    def __init__(
        self,
        server_url: str,
        server=None,
        work_folder: str | None = None,
        cache_folder: str | None = None,
        annotator: str = "",
        idle_minutes: float | None = None,
    ):
        self.idle_minutes = idle_minutes
        # Off-screen rendering without a display: EGL (on Mesa's software renderer without a GPU).
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        from microcalcai_logic import MicrocalcAILogic
        from microcalcai_logic.client import normalise_url
        from microcalcai_logic.settings import LogicSettings
        from trame.app import get_server
        from trame_rca.encoders import RcaImageEncoder
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories
        from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

        from microcalcai.web.controller import PageController
        from microcalcai.web.state import initial_state
        from microcalcai.web.ui import build_layout

        self.server = server or get_server(client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.slicer = SlicerApp()
        # Frames are rendered only when the scene changes (trame-rca's scheduler waits for a
        # render request) and encoded by Pillow's libjpeg-turbo; the stream keeps its full rate
        # while the mouse is on the panel (trame-rca slows to `blur_fps` there, which delayed
        # every overlay drawn after a button press by up to a tenth of a second per frame).
        register_rca_factories(
            self.slicer.view_manager,
            self.server,
            slice_view_ui_f=_no_view_gutter,
            rca_encoder=RcaImageEncoder.JPEG,
            target_fps=FRAMES_PER_S,
            blur_fps=FRAMES_PER_S,
            # trame-rca's still quality: one frame per change. A lower "interactive" quality
            # would make it render every change twice (the sharper frame a few periods later),
            # and a software render costs 0.1-0.4 s here (benchmarks/RESULTS.md).
            interactive_quality=STILL_QUALITY,
        )
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        view = ViewLayoutDefinition.slice_view("Axial", label="Mammogram", color="#1f1f1f")
        self.layout_manager.register_layout(VIEW_LAYOUT, Layout(LayoutDirection.Vertical, [view]))
        self.layout_manager.set_layout(VIEW_LAYOUT)
        for slice_view in self.slicer.view_manager.get_slice_views():
            # No multisample anti-aliasing: VTK asks for 4 samples per pixel, which Mesa's software
            # renderer pays in full; a 2D image view gains nothing from it, and one frame of the
            # 950 x 1070 view took 0.12 s with it against 0.02 s without (benchmarks/RESULTS.md).
            slice_view.render_window().SetMultiSamples(0)
        # Settings are per process (not the Slicer module's remembered file): each lab member's
        # process keeps its own.
        # Uploading a file on the page is the user's own act of sending it to the lab's server,
        # so the page does not ask again; the Logic still sends only its de-identified copy.
        self.logic = MicrocalcAILogic(
            self.slicer.scene,
            settings=LogicSettings(
                server_url=server_url, annotator=annotator, upload_consent=[normalise_url(server_url)]
            ),
            remember=False,
            cache_folder=cache_folder,
        )
        self.controller = PageController(self.server, self.slicer, self.logic, work_folder=work_folder)
        if cache_folder is None:
            # Datastore images this process downloaded: its own folder, removed when it stops.
            self.logic.cache_folder = os.path.join(self.controller.work_folder, "server-images")
        self.server.state.update(initial_state(server_url, self.logic.settings.roi_size_mm, annotator))
        self.ui = build_layout(self.server, self.layout_manager, self.controller)
        self._bind()

    def _bind(self):
        state, ctrl, page = self.server.state, self.server.controller, self.controller
        state.change("window", "level")(page.window_level_changed)
        state.change("saliency_visible", "saliency_opacity")(page.saliency_changed)
        state.change("roi_size_mm")(page.roi_size_changed)
        ctrl.on_client_connected.add(page.on_client_connected)
        ctrl.on_server_ready.add(self._on_ready)
        page.watch_view_geometry()
        for view in self.slicer.view_manager.get_slice_views():
            import vtk

            # The view gets its size from the page: fit the image to it each time it changes.
            view.interactor().AddObserver(vtk.vtkCommand.WindowResizeEvent, lambda *_: page.fit_view())

    def _on_ready(self, **_):
        from trame_server.utils.asynchronous import create_task

        create_task(self.controller.connect())
        if self.idle_minutes:
            create_task(self._stop_when_idle())

    async def _stop_when_idle(self):
        """A session's page nobody uses frees its memory and its slot (the tab shows it closed)."""
        import asyncio

        limit = 60.0 * self.idle_minutes
        while True:
            idle = self.controller.idle_s()
            if idle >= limit:
                log.info("no use for %.0f minutes: this session's page stops", idle / 60)
                await self.server.stop()
                return
            await asyncio.sleep(min(30.0, max(1.0, limit - idle)))

    def start(self, host: str = "127.0.0.1", port: int = 8080, **kwargs):
        try:
            self.server.start(host=host, port=port, open_browser=False, **kwargs)
        finally:
            self.controller.cleanup()

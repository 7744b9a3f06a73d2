"""The one object both front ends drive (the Slicer widget and the web page).

It holds the session's state (scene, server, settings, current image, ROI, last result) and
turns each user action into calls of the small modules next to it. Front ends only collect
inputs, call one method, and show the returned value or the `LogicError`'s message.
"""

import os
import tempfile
from collections.abc import Sequence
from typing import Any, Optional

from . import results
from .active_learning import NextSample, load_next_sample, request_next_sample
from .annotate import Annotation, save_annotation
from .classify import Classification, classify
from .client import ServerClient, ServerInfo
from .errors import LogicError
from .geometry import PixelRoi, roi_from_markups, roi_from_point
from .settings import LogicSettings, load_settings, save_settings
from .training import TrainProgress, start_training, stop_training, training_progress
from .upload import publish
from .volumes import find_role, server_image_id


class MicrocalcAILogic:
    def __init__(
        self,
        scene,
        settings: Optional[LogicSettings] = None,
        remember: bool = True,
        cache_folder: Optional[str] = None,
        client_factory=ServerClient,
    ):
        self.scene = scene
        self.settings = (
            settings if settings is not None else (load_settings() if remember else LogicSettings())
        )
        self.remember = remember
        self.cache_folder = cache_folder or os.path.join(tempfile.gettempdir(), "microcalcai-samples")
        self._client_factory = client_factory
        self.client: Optional[ServerClient] = None
        self.info: Optional[ServerInfo] = None
        self.volume = None
        self.roi: Optional[PixelRoi] = None
        self.last: Optional[Classification] = None

    # -- server ----------------------------------------------------------------------------
    def connect(self, url: Optional[str] = None) -> ServerInfo:
        """Reach the server, read its models, and remember the address for next time."""
        client = self._client_factory(url or self.settings.server_url)
        info = client.info()
        self.client, self.info = client, info
        self.settings.server_url = client.url
        if self.settings.model not in info.models and info.models:
            self.settings.model = info.model_names()[0]
        hosted = [name for name in info.model_names() if name != "ensemble"]
        if self.settings.train_model not in hosted and hosted:
            self.settings.train_model = hosted[0]
        self.save_settings()
        return info

    def save_settings(self) -> None:
        if self.remember:
            save_settings(self.settings)

    def require_client(self) -> ServerClient:
        if self.client is None:
            raise LogicError("Connect to a MicrocalcAI server first.")
        return self.client

    def model_names(self) -> list[str]:
        return self.info.model_names() if self.info is not None else []

    # -- ROI -------------------------------------------------------------------------------
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
    def point_position(point_node) -> Optional[list[float]]:
        """The first control point of a markups point list, in world RAS (None if unplaced)."""
        if point_node is None or point_node.GetNumberOfDefinedControlPoints() < 1:
            return None
        position = [0.0, 0.0, 0.0]
        point_node.GetNthControlPointPositionWorld(0, position)
        return position

    # -- classify --------------------------------------------------------------------------
    def classify(
        self,
        volume_node,
        roi_node=None,
        point_ras: Optional[Sequence[float]] = None,
        size_mm: Optional[float] = None,
        model: Optional[str] = None,
    ) -> Classification:
        """Classify, then show the table and the saliency overlay (updating, never adding, nodes)."""
        client = self.require_client()
        roi = self.roi_for(volume_node, roi_node, point_ras, size_mm)
        # The map is computed even while hidden, so turning it on later is instant.
        method = self.settings.saliency_method if self.settings.saliency_method not in ("", "none") else None
        result = classify(client, self.info, volume_node, roi, model or self.settings.model, saliency=method)
        self.volume, self.roi, self.last = volume_node, result.roi, result
        results.update_results_table(self.scene, result)
        node = results.update_saliency_node(self.scene, volume_node, result)
        results.show_in_slice_views(
            self.scene, volume_node, node, self.settings.saliency_opacity, self.settings.show_saliency
        )
        return result

    def results_table(self):
        return find_role(self.scene, "vtkMRMLTableNode", results.TABLE_ROLE)

    def saliency_node(self):
        return results.saliency_node(self.scene)

    def set_saliency_display(self, opacity: Optional[float] = None, visible: Optional[bool] = None) -> int:
        if opacity is not None:
            self.settings.saliency_opacity = float(opacity)
        if visible is not None:
            self.settings.show_saliency = bool(visible)
        node = self.saliency_node()
        return results.show_in_slice_views(
            self.scene, None, node, self.settings.saliency_opacity, self.settings.show_saliency
        )

    # -- annotate --------------------------------------------------------------------------
    def annotate(
        self,
        label: str,
        morphology: Optional[str] = None,
        distribution: Optional[str] = None,
        comment: str = "",
        volume_node=None,
        roi: Optional[PixelRoi] = None,
    ) -> list[dict[str, Any]]:
        """Save a label for the current ROI (or the one given) of the current image."""
        client = self.require_client()
        volume_node = volume_node if volume_node is not None else self.volume
        roi = roi if roi is not None else self.roi
        annotation = Annotation(
            label=label,
            morphology=morphology or None,
            distribution=distribution or None,
            annotator=self.settings.annotator,
            comment=comment,
        ).validated()
        if volume_node is not None and roi is not None and server_image_id(volume_node, client.url) is None:
            publish(client, volume_node)  # a local image joins the datastore so its label has a home
        return save_annotation(client, server_image_id(volume_node, client.url), roi, annotation)

    # -- active learning -------------------------------------------------------------------
    def next_sample(self, strategy: Optional[str] = None, roi_node=None) -> Optional[NextSample]:
        """Load the next unlabeled ROI (None when all are labeled); clears the last result."""
        client = self.require_client()
        strategy = strategy or self.settings.strategy
        answer = request_next_sample(
            client,
            strategy,
            method=self.settings.scoring if strategy == "uncertain" else None,
            model=self.settings.model,
            client_id=self.settings.annotator,
        )
        if answer is None:
            return None
        sample, volume, _ = load_next_sample(client, self.scene, answer, self.cache_folder, roi_node)
        self.volume, self.roi, self.last = volume, sample.roi, None
        results.show_in_slice_views(self.scene, volume, None, self.settings.saliency_opacity, False)
        return sample

    # -- training --------------------------------------------------------------------------
    def start_training(self, model: Optional[str] = None, **options) -> dict[str, Any]:
        model = model or self.settings.train_model
        options.setdefault("max_epochs", self.settings.train_epochs)
        return start_training(self.require_client(), model, options)

    def training_progress(self, model: Optional[str] = None) -> TrainProgress:
        return training_progress(self.require_client(), model or self.settings.train_model)

    def stop_training(self) -> dict[str, Any]:
        return stop_training(self.require_client())

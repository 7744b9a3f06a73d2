"""The page's state: every value the browser shows or edits, with its starting value.

trame synchronises these names between the Python process and every open tab; the layout
binds widgets to them and the controllers write them.
"""

from __future__ import annotations

from microcalcai_logic.annotate import display_name
from microcalcai_logic.contract import DISTRIBUTIONS, MORPHOLOGIES
from microcalcai_logic.results import DEFAULT_OPACITY
from microcalcai_logic.viewer import window_presets


def _choices(terms) -> list[dict]:
    return [{"title": display_name(term), "value": term} for term in terms]


def initial_state(server_url: str, roi_size_mm: float = 10.0, annotator: str = "") -> dict:
    return {
        "trame__title": "MicrocalcAI",
        # who labels: asked once per session unless the command line named them
        "annotator": annotator,
        "annotator_input": "",
        "ask_annotator": not annotator,
        # server
        "server_url": server_url,
        "connected": False,
        "server_text": "Not connected",
        "models": [],
        "model": None,
        "hosted_models": [],
        "whole_image_models": [],  # models that read whole views (BAC): Exam instead of Classify
        "demonstration_text": "",
        "strategies": [],
        "strategy": None,
        # messages
        "error": "",
        "notice": "",
        "busy": "",
        # image
        "images": [],
        "image_choice": None,
        "has_image": False,
        "image_name": "",
        "image_id": "",
        "image_text": "No image open",
        "presets": window_presets(),
        "preset": "Default",
        "window": 1.0,
        "level": 0.5,
        "intensity_min": 0.0,
        "intensity_max": 1.0,
        "view_geometry": None,
        # ROI
        "roi_mode": "point",
        "roi_size_mm": roi_size_mm,
        "roi_text": "No ROI placed",
        "roi": None,
        "placing": "",
        # results
        "results": [],
        "certainty": None,  # how sure the models are: agreement and calibration
        "result_text": "",
        "decision": "",
        "timing": None,
        "saliency_visible": True,
        "saliency_opacity": DEFAULT_OPACITY,
        "colorbar": "",
        "colorbar_floor": 0.0,
        "pacs_text": "",
        # whole-image models: the exam's verdict, each view's P(BAC), which view is shown
        "exam": None,
        "exam_views": [],
        "exam_view": None,
        "pacs_uids": [],  # SOP Instance UIDs the last Save to PACS stored
        # annotation
        "morphologies": _choices(MORPHOLOGIES),
        "distributions": _choices(DISTRIBUTIONS),
        "morphology": None,
        "distribution": None,
        "comment": "",
        "label_text": "",
        # active learning and training
        "sample_text": "",
        "train_model": None,
        "train_epochs": 10,  # the server's /train default (see train_task.py)
        "train_manifest_labels": False,
        "training": False,
        "train_progress": 0.0,
        "train_text": "",
    }

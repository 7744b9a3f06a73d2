"""Grad-CAM family saliency on ROI crops, aligned with the source pixels, and its faithfulness."""

from microcalcai.explain.methods import GRADIENT_METHODS, METHODS, MethodSpec, get_method
from microcalcai.explain.saliency import TARGETS, SaliencyResult, explain_crops, saliency_map
from microcalcai.explain.target_layers import resolve_target_layer

__all__ = [
    "GRADIENT_METHODS",
    "METHODS",
    "MethodSpec",
    "SaliencyResult",
    "TARGETS",
    "explain_crops",
    "get_method",
    "resolve_target_layer",
    "saliency_map",
]

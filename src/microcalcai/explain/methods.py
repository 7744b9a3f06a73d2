"""The saliency methods this project offers, by name.

The CAM methods come from pytorch-grad-cam (PyPI ``grad-cam``) rather than ``monai.visualize``:
MONAI ships only Grad-CAM, Grad-CAM++, CAM and occlusion, addresses layers by name strings only,
and has no faithfulness metrics, while pytorch-grad-cam keeps one base class in which every method
changes only how channel weights are computed, so all of them share the same hooks, batching and
target objects, and it ships the ROAD perturbation metrics we use for deletion/insertion curves.
"""

from __future__ import annotations

from dataclasses import dataclass

from microcalcai.errors import InputError


@dataclass(frozen=True)
class MethodSpec:
    """One saliency method.

    ``class_specific`` is False for methods whose map does not depend on the target class
    (EigenCAM projects the activations on their first principal component); ``uses_gradients``
    is False for methods that need forward passes only (Score-CAM needs one per channel, so it is
    slow: hundreds of forward passes per map).
    """

    name: str
    title: str
    class_name: str
    uses_gradients: bool
    class_specific: bool
    reference: str

    def cam_class(self):
        import pytorch_grad_cam

        return getattr(pytorch_grad_cam, self.class_name)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("gradcam", "Grad-CAM", "GradCAM", True, True, "Selvaraju et al. 2017"),
        MethodSpec("gradcam++", "Grad-CAM++", "GradCAMPlusPlus", True, True, "Chattopadhay et al. 2018"),
        MethodSpec("hirescam", "HiResCAM", "HiResCAM", True, True, "Draelos & Carin 2020"),
        MethodSpec("xgradcam", "XGrad-CAM", "XGradCAM", True, True, "Fu et al. 2020"),
        MethodSpec("layercam", "LayerCAM", "LayerCAM", True, True, "Jiang et al. 2021"),
        MethodSpec("eigencam", "Eigen-CAM", "EigenCAM", False, False, "Muhammad & Yeasin 2020"),
        MethodSpec("scorecam", "Score-CAM", "ScoreCAM", False, True, "Wang et al. 2020"),
    )
}

# Spellings people type for the same method.
_ALIASES = {
    "grad-cam": "gradcam",
    "gradcampp": "gradcam++",
    "gradcamplusplus": "gradcam++",
    "gradcam-plusplus": "gradcam++",
    "grad-cam++": "gradcam++",
    "hires-cam": "hirescam",
    "xgrad-cam": "xgradcam",
    "layer-cam": "layercam",
    "eigen-cam": "eigencam",
    "score-cam": "scorecam",
}

GRADIENT_METHODS = tuple(name for name, spec in METHODS.items() if spec.uses_gradients)


def get_method(name: str) -> MethodSpec:
    """The method called ``name`` (case and common spellings forgiven); unknown names list the valid ones."""
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        valid = ", ".join(METHODS)
        raise InputError(f"unknown saliency method {name!r} (parameter 'method'); choose one of: {valid}")
    return METHODS[key]

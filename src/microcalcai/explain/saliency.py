"""Saliency maps for ROI crops, from a bare network, a loaded model or an ensemble.

``saliency_map(model_or_predictor, crop)`` returns one (N, N) float32 map in 0..1 with the crop's
own geometry (map pixel (i, j) sits over crop pixel (i, j)); ``explain_crops`` does a batch and
returns the probabilities and every member's map too. An ensemble's map is the mean of its
members' normalised maps, each member explaining the same class (the ensemble's decision when the
target is "predicted"), so the members' maps can be compared and averaged.

Speed: the CAM methods only need gradients from the output back to the target layer. While a map
is computed the network's parameters are frozen and the target layer's output is cut from the
graph below it (a forward hook returns a fresh leaf), so the layers below the target run without
autograd bookkeeping and the backward pass stops at the target layer; a map costs about one plain
forward pass plus a short backward pass. Everything is restored afterwards (hooks removed,
``requires_grad`` and train/eval mode as they were), so the server can keep a loaded model and call
this once per request; calls are serialised by a lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from microcalcai_logic.contract import LABEL_INDEX, LABELS, POSITIVE_LABEL

from microcalcai.errors import InputError
from microcalcai.explain.methods import MethodSpec, get_method
from microcalcai.explain.target_layers import architecture_of, conv_block_names, resolve_target_layer

TARGETS = ("malignant", "predicted", "benign")
_LOCK = threading.RLock()
# Messages torch gives when a network's input is smaller than its strides and kernels allow.
_TOO_SMALL = ("Kernel size can't be greater", "Output size is too small", "smaller than kernel size")


@dataclass
class SaliencyResult:
    """Maps and the predictions they explain, for a batch of B crops of H x W pixels.

    ``maps`` (B, H, W) float32 0..1: the (ensemble-mean) map. ``probability`` (B,): P(malignant)
    by the model or ensemble. ``explained_class`` (B,): 1 where the malignant class was explained,
    0 where benign. ``member_maps``/``member_probability``: per member (one entry for a model).
    ``layers``: the target layer used per member.
    """

    maps: np.ndarray
    probability: np.ndarray
    explained_class: np.ndarray
    method: str
    target: str
    layers: dict = field(default_factory=dict)
    member_maps: dict = field(default_factory=dict)
    member_probability: dict = field(default_factory=dict)
    threshold: float | None = None

    @property
    def class_names(self) -> list[str]:
        return [LABELS[int(c)] for c in self.explained_class]


@dataclass
class _Member:
    """What saliency needs from one network: the module, how crops become its input, its labels."""

    name: str
    module: torch.nn.Module
    preprocess: object  # callable crops (B, N, N) -> tensor (B, C, S, S)
    arch: str | None
    layer: str | None
    malignant_index: int = 1
    threshold: float | None = None


def saliency_map(
    model_or_predictor, crop, method: str = "gradcam", target: str = "malignant", layer: str | None = None
) -> np.ndarray:
    """(N, N) float32 map in 0..1 over one crop (a RoiCrop or an (N, N) array in 0..1)."""
    return explain_crops(model_or_predictor, [crop], method=method, target=target, layer=layer).maps[0]


def explain_crops(
    model_or_predictor,
    crops,
    method: str = "gradcam",
    target: str = "malignant",
    layer: str | None = None,
    batch_size: int = 8,
) -> SaliencyResult:
    """Maps for a batch of crops: a sequence of RoiCrop or arrays, or an array (B, N, N), values 0..1.

    ``target``: "malignant" (default), "benign", or "predicted" (the class decided at the model's
    or ensemble's stored threshold; argmax for a bare network). ``layer`` overrides the target
    layer (a dotted module name, e.g. "layer4" or "features.29") for every member.
    """
    spec = get_method(method)
    if target not in TARGETS:
        raise InputError(
            f"unknown saliency target {target!r} (parameter 'target'); choose one of: {', '.join(TARGETS)}"
        )
    pixels = _crop_pixels(crops)
    members, threshold = _members(model_or_predictor)
    for member in members:  # fail on a bad layer name before any computation
        member.layer = resolve_target_layer(member.module, member.arch, layer or member.layer)[0]

    fixed_class = None
    if target == "predicted" and (len(members) > 1 or not spec.uses_gradients):
        # An ensemble's members must all explain the ensemble's decision, and Score-CAM scores masked
        # copies of the input, whose argmax would wander: fix the class from a plain prediction first.
        fixed_class = _predicted_class(model_or_predictor, members, pixels)
    elif target in LABEL_INDEX:
        fixed_class = np.full(len(pixels), LABEL_INDEX[target])

    member_maps, member_probs, explained = {}, {}, None
    for member in members:
        maps, probs, classes = [], [], []
        for start in range(0, len(pixels), batch_size):
            chunk = pixels[start : start + batch_size]
            chunk_class = None if fixed_class is None else fixed_class[start : start + batch_size]
            m, p, c = _explain_member(member, spec, chunk, chunk_class)
            maps.append(m)
            probs.append(p)
            classes.append(c)
        member_maps[member.name] = np.concatenate(maps)
        member_probs[member.name] = np.concatenate(probs)
        explained = np.concatenate(classes)
    combined_maps = np.mean(np.stack(list(member_maps.values())), axis=0).astype(np.float32)
    combined_prob = _combine_probabilities(model_or_predictor, member_probs, members)
    return SaliencyResult(
        maps=combined_maps,
        probability=combined_prob,
        explained_class=explained.astype(int),
        method=spec.name,
        target=target,
        layers={m.name: m.layer for m in members},
        member_maps=member_maps,
        member_probability=member_probs,
        threshold=threshold,
    )


def _crop_pixels(crops) -> list[np.ndarray]:
    if isinstance(crops, np.ndarray) and crops.ndim == 2:
        crops = [crops]
    items = list(crops)
    if not items:
        raise InputError("no crops to explain (parameter 'crops' is empty)")
    pixels = []
    for index, crop in enumerate(items):
        array = np.asarray(getattr(crop, "pixels", crop), dtype=np.float32)
        if array.ndim != 2 or min(array.shape) < 2:
            raise InputError(f"crop {index} must be a 2D grey image (N, N), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise InputError(f"crop {index} contains NaN or infinite values; crop inside the image")
        pixels.append(array)
    shapes = {p.shape for p in pixels}
    if len(shapes) > 1:
        raise InputError(
            f"crops in one batch must share one size, got {sorted(shapes)}; explain them separately"
        )
    return pixels


def _members(obj) -> tuple[list[_Member], float | None]:
    """The networks inside a bare module, a ModelPredictor or an EnsemblePredictor."""
    if isinstance(obj, torch.nn.Module):
        return [
            _Member(
                architecture_of(obj) or type(obj).__name__,
                obj,
                _bare_preprocess(obj),
                architecture_of(obj),
                None,
            )
        ], None
    members = getattr(obj, "members", None)
    if members is None or not all(hasattr(m, "model") and hasattr(m, "preprocess") for m in members):
        raise InputError(
            f"cannot explain a {type(obj).__name__}: give a torch.nn.Module or a predictor from "
            "microcalcai.models.load_predictor (a model or ensemble folder)"
        )
    out = []
    for m in members:
        labels = list(getattr(m.card, "labels", LABELS))
        out.append(
            _Member(
                m.name,
                m.model,
                m.preprocess,
                m.card.arch,
                getattr(m, "target_layer", None),
                labels.index(POSITIVE_LABEL) if POSITIVE_LABEL in labels else 1,
                float(m.threshold),
            )
        )
    return out, float(getattr(obj, "threshold", 0.5))


def _bare_preprocess(module: torch.nn.Module):
    """Crop -> input for a network without a model card: the crop's own size, grey replicated to the
    first convolution's channels, the weights' timm mean/std when the network carries them."""
    first = next((m for m in module.modules() if isinstance(m, torch.nn.Conv2d)), None)
    channels = first.in_channels if first is not None else 3  # no convolution: refused before use
    cfg = getattr(module, "pretrained_cfg", None) or {}
    mean = list(cfg.get("mean", (0.0,) * channels))[:channels] if channels == 3 else [0.0] * channels
    std = list(cfg.get("std", (1.0,) * channels))[:channels] if channels == 3 else [1.0] * channels
    device = next(module.parameters()).device

    def preprocess(crops):
        from microcalcai.models.preprocess import normalise, to_grey_tensor

        return normalise(to_grey_tensor(crops), mean, std).to(device)

    return preprocess


def predict_probability(model_or_predictor, crops) -> np.ndarray:
    """P(malignant) for crops (B, N, N) by a predictor (its own rule) or a bare network (softmax)."""
    crops = np.asarray(crops, dtype=np.float32)
    if hasattr(model_or_predictor, "predict"):
        return np.asarray(model_or_predictor.predict(crops).probability, dtype=float)
    member = _members(model_or_predictor)[0][0]
    with torch.no_grad():
        logits = member.module(member.preprocess(crops))
    return _malignant_probability(logits, member).cpu().numpy().astype(float)


def _predicted_class(obj, members: list[_Member], pixels) -> np.ndarray:
    if hasattr(obj, "predict"):
        return obj.predict(np.stack(pixels)).decision.astype(int)
    return (predict_probability(obj, np.stack(pixels)) >= 0.5).astype(int)


def _malignant_probability(logits: torch.Tensor, member: _Member) -> torch.Tensor:
    logits = logits.detach().float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, member.malignant_index]


def _class_from_logits(logits: torch.Tensor, member: _Member) -> torch.Tensor:
    prob = _malignant_probability(logits, member)
    threshold = 0.5 if member.threshold is None else member.threshold
    return (prob >= threshold).long()


class _ClassScore:
    """The score whose gradient a CAM method follows, for one crop.

    Written here because pytorch-grad-cam's ClassifierOutputTarget follows one raw logit: for a
    two-class softmax the probability depends only on the difference of the two logits, so we
    follow the log-odds of the explained class (z_malignant - z_benign, or its negative), which is
    what moves P(malignant). With ``explained`` None the class is taken on the first (unperturbed)
    forward pass at the member's threshold and then kept.
    """

    def __init__(self, member: _Member, explained: int | None):
        self.member = member
        self.explained = explained

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        row = output if output.ndim == 1 else output[0]
        if self.explained is None:
            self.explained = int(_class_from_logits(row[None], self.member)[0])
        sign = 1.0 if self.explained == 1 else -1.0
        if row.shape[0] == 1:
            return sign * row[0]
        if row.shape[0] == 2:
            malignant = self.member.malignant_index
            return sign * (row[malignant] - row[1 - malignant])
        return row[self.explained]


def _explain_member(member: _Member, spec: MethodSpec, pixels: Sequence[np.ndarray], fixed_class):
    import cv2

    _, target_module = resolve_target_layer(member.module, member.arch, member.layer)
    targets = [
        _ClassScore(member, None if fixed_class is None else int(c))
        for c in (fixed_class if fixed_class is not None else [None] * len(pixels))
    ]
    # A server may call this inside torch.inference_mode() or no_grad(); gradient methods need autograd.
    with (
        torch.inference_mode(False),
        _explaining(member, target_module),
        torch.enable_grad() if spec.uses_gradients else torch.no_grad(),
    ):
        x = member.preprocess(np.stack(pixels))
        cam = spec.cam_class()(model=member.module, target_layers=[target_module])
        if spec.name == "scorecam":
            cam.batch_size = 32
        try:
            maps = cam(input_tensor=x, targets=targets)
            logits = cam.outputs
        except RuntimeError as exc:
            if not any(k in str(exc) for k in _TOO_SMALL):
                raise
            raise InputError(
                f"the network input {tuple(x.shape[-2:])} is too small for {member.name} ({exc}); "
                "use a larger crop or a model folder whose input size suits the architecture"
            ) from exc
        finally:
            cam.activations_and_grads.release()
    probability = _malignant_probability(logits, member).cpu().numpy()
    explained = np.array(
        [
            t.explained if t.explained is not None else int(p >= (member.threshold or 0.5))
            for t, p in zip(targets, probability, strict=True)
        ]
    )
    height, width = pixels[0].shape
    if maps.shape[1:] != (height, width):  # the predictor resized the crop to the network's input size
        maps = np.stack(
            [_rescale(cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)) for m in maps]
        )
    return np.clip(maps, 0.0, 1.0).astype(np.float32), probability, explained


def _rescale(saliency: np.ndarray) -> np.ndarray:
    """Back to exactly 0..1 after resizing (interpolation shaves the peak); an all-zero map stays zero."""
    low, high = float(saliency.min()), float(saliency.max())
    return (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)


@contextlib.contextmanager
def _explaining(member: _Member, target_module: torch.nn.Module):
    """Freeze the network, cut the graph at the target layer, and put everything back afterwards."""

    def cut_below(module, inputs, output):
        if not torch.is_tensor(output) or output.ndim != 4:
            shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
            raise InputError(
                f"layer {member.layer!r} of {member.name} gives {shape}, not a feature map (B, C, H, W); "
                "choose a convolutional block, one of: " + ", ".join(conv_block_names(member.module))
            )
        if output.shape[-1] * output.shape[-2] == 1:
            raise InputError(
                f"layer {member.layer!r} of {member.name} gives a 1x1 feature map at this input size "
                f"({tuple(output.shape)}), so its map cannot show where the model looked; use a larger "
                "crop or an earlier layer (parameter 'layer'), one of: "
                + ", ".join(conv_block_names(member.module))
            )
        if not torch.is_grad_enabled():
            return None
        # A fresh leaf: the backward pass stops here. The clone keeps in-place operations after the
        # layer (residual additions) from touching a leaf that requires grad.
        return output.detach().requires_grad_(True).clone()

    module = member.module
    with _LOCK:
        was_training = module.training
        flags = [(p, p.requires_grad) for p in module.parameters()]
        handle = target_module.register_forward_hook(cut_below)
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            yield
        finally:
            handle.remove()
            for p, flag in flags:
                p.requires_grad_(flag)
            module.train(was_training)


def _combine_probabilities(obj, member_probs: dict, members: list[_Member]) -> np.ndarray:
    if len(members) == 1:
        return next(iter(member_probs.values()))
    from microcalcai.models.ensemble import combine_probabilities

    return combine_probabilities(
        member_probs, {m.name: m.threshold for m in members}, getattr(obj, "combine", "mean")
    )

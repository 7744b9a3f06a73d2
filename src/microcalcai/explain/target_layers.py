"""Which layer a CAM method reads: the last convolutional block, per architecture, overridable.

The defaults live in the model registry (``ArchSpec.target_layer``), next to the architecture they
describe, so there is one table; this module resolves a dotted name on a live model and, for a
network the registry does not know, falls back to the last top-level block that holds a
convolution.
"""

from __future__ import annotations

import torch

from microcalcai.errors import InputError

# How deep the list of suggested layer names goes in error messages (deeper lists are unreadable:
# a ResNet-101 has over 300 modules).
_SUGGEST_DEPTH = 2


def has_conv(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in module.modules())


def conv_block_names(model: torch.nn.Module, max_depth: int = _SUGGEST_DEPTH) -> list[str]:
    """Dotted names, up to ``max_depth`` levels deep, of the modules that contain a 2D convolution."""
    names = []
    for name, module in model.named_modules():
        if name and name.count(".") < max_depth and has_conv(module):
            names.append(name)
    return names


def architecture_of(model: torch.nn.Module) -> str | None:
    """The timm architecture name a model was built from, when it says (timm models do)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    arch = cfg.get("architecture") if isinstance(cfg, dict) else None
    return str(arch) if arch else None


def _registry_layer(arch: str | None) -> str | None:
    if not arch:
        return None
    from microcalcai.models.registry import ALIASES, ARCHITECTURES

    spec = ARCHITECTURES.get(ALIASES.get(arch, arch))
    return spec.target_layer if spec is not None else None


def _no_conv_error(model: torch.nn.Module) -> InputError:
    from microcalcai.models.registry import ARCHITECTURES

    return InputError(
        f"the model ({type(model).__name__}) has no 2D convolutional layer, and the Grad-CAM family "
        "explains convolutional feature maps; use a convolutional architecture, one of: "
        + ", ".join(ARCHITECTURES)
    )


def resolve_target_layer(
    model: torch.nn.Module, arch: str | None = None, layer: str | None = None
) -> tuple[str, torch.nn.Module]:
    """(dotted name, module) of the layer to explain.

    ``layer`` (a dotted module path such as ``"layer4"`` or ``"features.29"``) wins; otherwise the
    registry's choice for ``arch`` (or the architecture the model says it is); otherwise the last
    top-level block that contains a convolution.
    """
    if not has_conv(model):
        raise _no_conv_error(model)
    if layer:
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            raise InputError(
                f"unknown layer {layer!r} (parameter 'layer') in {arch or type(model).__name__}; "
                "valid layer names include: " + ", ".join(conv_block_names(model))
            ) from None
        return layer, module
    name = _registry_layer(arch or architecture_of(model))
    if name:
        try:
            return name, model.get_submodule(name)
        except AttributeError:
            pass  # built differently from the registry's timm network: fall back to the last conv block
    blocks = [(n, m) for n, m in model.named_children() if has_conv(m)]
    return blocks[-1]

"""The weights a retraining starts from when new labels arrive: the served model, shrunk and perturbed.

Continuing from the served weights keeps what earlier rounds learnt but learns little from the new
labels: a warm start generalises worse than a fresh start on the same data (Ash & Adams 2020, "On
warm-starting neural network training"), and on the phantom a member retrained from its 250-label
weights gained +0.017 test AUC from 180 more labels where one trained afresh on all of them gained
+0.046 (benchmarks/RESULTS.md). Their remedy, shrink and perturb, starts from

    shrink * served + perturb * other

for every parameter the retraining trains, with `other` the architecture's ImageNet weights (with
shrink + perturb = 1, a partial return to where fine-tuning began) or a freshly drawn random
initialisation (their form). Layers the recipe freezes (`freeze_blocks`) keep the served weights:
they stay as they start, BatchNorm statistics included, so a change there would never be
corrected. BatchNorm running statistics are kept everywhere. Written here because neither torch
nor timm offers it; it is a few tensor operations over `load_model`/`create_model`.
"""

from __future__ import annotations

from pathlib import Path

from microcalcai.errors import InputError

TOWARD = ("imagenet", "random")


def check_shrink_perturb(shrink: float, perturb: float, toward: str) -> None:
    if not 0.0 < shrink <= 1.0:
        raise InputError(f"shrink must be in (0, 1], got {shrink}")
    if not 0.0 <= perturb <= 1.0:
        raise InputError(f"perturb must be in [0, 1] (0 adds nothing), got {perturb}")
    if toward not in TOWARD:
        raise InputError(f"toward must be one of {list(TOWARD)}, got {toward!r}")
    if toward == "imagenet" and perturb > 0 and abs(shrink + perturb - 1.0) > 1e-6:
        # toward ImageNet the start is a point between two sets of weights; another sum would mix
        # in a rescaling that is not asked for (shrink alone, perturb 0, is Ash & Adams' "shrink":
        # the trained layers' BatchNorm statistics are re-estimated as they train)
        raise InputError(
            f"toward imagenet, shrink + perturb must be 1 (a point between the served and the "
            f"ImageNet weights), got {shrink} + {perturb}; e.g. shrink {shrink} with perturb {1 - shrink:g}"
        )
    if shrink + perturb > 1.0 + 1e-6:
        raise InputError(f"shrink + perturb must be at most 1, got {shrink} + {perturb}")


def is_identity(shrink: float, perturb: float) -> bool:
    return shrink == 1.0 and perturb == 0.0


def shrink_perturb(
    base_dir: Path,
    out_dir: Path,
    *,
    shrink: float,
    perturb: float,
    toward: str = "imagenet",
    seed: int = 0,
    frozen_blocks: int = 0,
) -> Path:
    """Write a model folder at `out_dir` whose trained parameters are shrink * base + perturb *
    other; the stem and first `frozen_blocks` stages (the recipe's `freeze_blocks`) keep base's.
    Raises NotAvailableError when ImageNet weights are asked for and cannot be had."""
    import torch

    from microcalcai.models.artifact import load_model, save_model
    from microcalcai.models.registry import create_model
    from microcalcai.train.loop import freeze_leading

    check_shrink_perturb(shrink, perturb, toward)
    loaded = load_model(base_dir)
    module, card = loaded.module, loaded.card
    base_version, base_sha256 = card.version, card.weights_sha256
    frozen = {id(p) for m in freeze_leading(module, frozen_blocks) for p in m.parameters()}
    other_info = None
    others = {}
    if perturb > 0:
        torch.manual_seed(seed)
        other = create_model(
            card.arch, "none" if toward == "random" else "imagenet", num_classes=len(card.labels)
        )
        others, other_info = dict(other.named_parameters()), other.weights_info.as_dict()
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if id(parameter) in frozen:
                continue
            parameter.mul_(shrink)
            if perturb > 0:
                parameter.add_(others[name], alpha=perturb)
    card.version = f"{card.version}-start"
    card.weights_sha256 = card.created = ""  # save_model writes them anew
    card.library_versions = {}
    card.val_metrics, card.test_metrics = {}, {}
    card.weights_init = {
        "source": "shrink-perturb",
        "detail": f"{shrink} x {card.name} version {base_version}"
        + (f" + {perturb} x {toward} weights" if perturb > 0 else ""),
        "base_sha256": base_sha256,
        "shrink": shrink,
        "perturb": perturb,
        "toward": toward,
        "other": other_info,
        "frozen_blocks_kept": frozen_blocks,
    }
    return save_model(module, card, out_dir, overwrite=True)

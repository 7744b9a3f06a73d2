"""The weights a retraining starts from when new labels arrive: the served model, shrunk and perturbed.

Continuing from the served weights keeps what earlier rounds learnt but learns little from the new
labels: a warm start generalises worse than a fresh start on the same data (Ash & Adams 2020, "On
warm-starting neural network training"), and on the phantom a member retrained from its 250-label
weights gained +0.017 test AUC from 180 more labels where one trained afresh on all of them gained
+0.046 (benchmarks/RESULTS.md). Their remedy, shrink and perturb, starts from

    shrink * served + perturb * other

for every learnable parameter, with `other` a freshly drawn random initialisation (their form) or
the architecture's ImageNet weights (a partial return to where fine-tuning began). BatchNorm
running statistics are kept. Written here because neither torch nor timm offers it; it is a few
tensor operations over `load_model`/`create_model`.
"""

from __future__ import annotations

from pathlib import Path

from microcalcai.errors import InputError

TOWARD = ("random", "imagenet")


def check_shrink_perturb(shrink: float, perturb: float, toward: str) -> None:
    if not 0.0 < shrink <= 1.0:
        raise InputError(f"shrink must be in (0, 1] (1 keeps the served weights), got {shrink}")
    if not 0.0 <= perturb <= 1.0:
        raise InputError(f"perturb must be in [0, 1] (0 adds nothing), got {perturb}")
    if toward not in TOWARD:
        raise InputError(f"toward must be one of {list(TOWARD)}, got {toward!r}")


def is_identity(shrink: float, perturb: float) -> bool:
    return shrink == 1.0 and perturb == 0.0


def shrink_perturb(
    base_dir: Path, out_dir: Path, *, shrink: float, perturb: float, toward: str = "random", seed: int = 0
) -> Path:
    """Write a model folder at `out_dir` whose parameters are shrink * base + perturb * other."""
    import torch

    from microcalcai.models.artifact import load_model, save_model
    from microcalcai.models.registry import create_model

    check_shrink_perturb(shrink, perturb, toward)
    loaded = load_model(base_dir)
    module, card = loaded.module, loaded.card
    torch.manual_seed(seed)
    other = create_model(
        card.arch, "none" if toward == "random" else "imagenet", num_classes=len(card.labels)
    )
    others = dict(other.named_parameters())
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.mul_(shrink).add_(others[name], alpha=perturb)
    card.weights_sha256 = ""  # save_model writes the new checksum
    card.created = ""
    return save_model(module, card, out_dir, overwrite=True)

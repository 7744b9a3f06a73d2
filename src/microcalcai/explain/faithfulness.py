"""Is a saliency map about the model, and does it point at the calcifications?

- Model randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps"): maps of the trained
  model against maps of the same architecture with re-initialised weights. A method whose maps
  barely change (high rank correlation) shows the image, not what the model learnt, and does not
  count.
- Localisation against known masks (the phantom's calcification masks): the pointing game (Zhang
  et al. 2018: a hit when the map's maximum falls on the mask, within a tolerance) and the share of
  saliency energy inside the mask (Wang et al. 2020), beside the mask's share of the area, which a
  uniform map would score, the pointing game's chance level, and the most a target layer's coarse
  grid lets a map put inside the mask.
- Deletion and insertion curves with ROAD's noisy linear imputation (Rong et al. 2022; the imputer
  and the removal orders come from pytorch-grad-cam): P(explained class) after removing the most
  (deletion) or the least (insertion-like) relevant pixels of the crop, so the curve is measured
  through the whole predictor, ensembles included.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from microcalcai.errors import InputError
from microcalcai.explain.saliency import explain_crops, predict_probability

# Layers whose weights the randomisation re-initialises; normalisation layers keep their statistics
# so activations stay in a sane range (as in Adebayo et al.'s Inception-v3 experiments).
_LEARNABLE = (torch.nn.Conv2d, torch.nn.Linear)


def randomised_copy(model_or_predictor, *, seed: int = 0, top_k: int | None = None):
    """A deep copy whose convolution and linear layers are re-initialised.

    ``top_k`` None randomises all of them (independent randomisation); an integer randomises only
    the last ``top_k`` layers, from the logits down (Adebayo's cascading randomisation).
    """
    clone = copy.deepcopy(model_or_predictor)
    modules = [clone] if isinstance(clone, torch.nn.Module) else [m.model for m in clone.members]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in modules:
            layers = [m for m in module.modules() if isinstance(m, _LEARNABLE)]
            if not layers:
                raise InputError(f"{type(module).__name__} has no convolution or linear layer to randomise")
            for layer in layers[-top_k:] if top_k else layers:
                layer.reset_parameters()
    return clone


@dataclass
class RandomisationResult:
    """Per-crop similarity of trained vs randomised maps: Spearman rank correlation (NaN where a map
    is constant) and SSIM."""

    method: str
    spearman: np.ndarray
    ssim: np.ndarray
    trained_maps: np.ndarray = field(repr=False)
    random_maps: np.ndarray = field(repr=False)

    @property
    def mean_spearman(self) -> float:
        return float(np.nanmean(self.spearman)) if np.isfinite(self.spearman).any() else float("nan")

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim))

    def passes(self, max_spearman: float = 0.5) -> bool:
        """True when the maps depend on the weights: mean rank correlation below ``max_spearman``."""
        return bool(np.isfinite(self.mean_spearman) and self.mean_spearman < max_spearman)


def model_randomisation_check(
    model_or_predictor,
    crops,
    *,
    method: str = "gradcam",
    target: str = "malignant",
    layer: str | None = None,
    seed: int = 0,
    top_k: int | None = None,
) -> RandomisationResult:
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    trained = explain_crops(model_or_predictor, crops, method=method, target=target, layer=layer)
    randomised = randomised_copy(model_or_predictor, seed=seed, top_k=top_k)
    random = explain_crops(randomised, crops, method=method, target=target, layer=layer)
    rho, ssim = [], []
    for a, b in zip(trained.maps, random.maps, strict=True):
        constant = np.ptp(a) == 0 or np.ptp(b) == 0
        rho.append(np.nan if constant else spearmanr(a.ravel(), b.ravel())[0])
        ssim.append(structural_similarity(a, b, data_range=1.0))
    return RandomisationResult(
        trained.method, np.asarray(rho, float), np.asarray(ssim, float), trained.maps, random.maps
    )


def _check_pair(saliency, mask) -> tuple[np.ndarray, np.ndarray]:
    saliency = np.asarray(saliency, dtype=np.float64)
    mask = np.asarray(mask) > 0
    if saliency.shape != mask.shape:
        raise InputError(f"the map {saliency.shape} and the mask {mask.shape} must have the same shape")
    if not mask.any():
        raise InputError("the mask is empty: localisation needs a crop with a calcification in it")
    return saliency, mask


def pointing_game(saliency, mask, *, tolerance_px: float = 15.0) -> bool:
    """A hit when the map's maximum lies within ``tolerance_px`` of the mask (Zhang et al. use 15 px).

    A constant map has no maximum and never hits.
    """
    from scipy.ndimage import distance_transform_edt

    saliency, mask = _check_pair(saliency, mask)
    if np.ptp(saliency) == 0:
        return False
    row, col = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    return bool(distance_transform_edt(~mask)[row, col] <= tolerance_px)


def energy_in_mask(saliency, mask) -> float:
    """Share of the map's total value inside the mask (0 for an all-zero map)."""
    saliency, mask = _check_pair(saliency, mask)
    total = float(np.clip(saliency, 0, None).sum())
    return float(np.clip(saliency[mask], 0, None).sum() / total) if total > 0 else 0.0


def pointing_chance(masks, tolerance_px: float = 15.0) -> float:
    """The pointing game's chance level: the hit rate of a map whose maximum falls anywhere at random,
    i.e. the mean share of each crop within ``tolerance_px`` of its mask."""
    from scipy.ndimage import distance_transform_edt

    return float(
        np.mean([(distance_transform_edt(~(np.asarray(m) > 0)) <= tolerance_px).mean() for m in masks])
    )


def coarse_mask_energy(masks, cells: tuple[int, int]) -> float:
    """Energy in mask of the masks themselves seen through a ``cells`` grid (a target layer's map):
    averaged over each cell, then resized back bilinearly as the CAM library resizes its maps.

    The most a perfect map of that layer can put on the calcifications, so a method's energy in mask
    can be read against what the layer allows.
    """
    import cv2  # pytorch-grad-cam's own resize, so the ceiling is measured as its maps are made

    masks = np.asarray(masks)
    pooled = torch.nn.functional.adaptive_avg_pool2d(
        torch.from_numpy(masks[:, None].astype(np.float32)), cells
    )
    height, width = masks.shape[-2:]
    return float(
        np.mean(
            [
                energy_in_mask(cv2.resize(p[0].numpy(), (width, height), interpolation=cv2.INTER_LINEAR), m)
                for p, m in zip(pooled, masks, strict=True)
            ]
        )
    )


@dataclass
class PerturbationCurves:
    """P(explained class) as the share ``fractions`` (percent) of pixels changes: ``deletion`` after
    removing that share of the most relevant pixels, ``insertion`` when only that share of the most
    relevant pixels is kept (the rest imputed). A faithful map has a low deletion and a high
    insertion curve."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    baseline: float  # P(explained class) on the untouched crop

    @property
    def deletion_auc(self) -> float:
        return _mean_height(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        return _mean_height(self.fractions, self.insertion)


def _mean_height(x, y) -> float:
    from scipy.integrate import trapezoid  # np.trapz is gone from numpy 2's namespace

    return float(trapezoid(y, x) / (x[-1] - x[0]))


def perturbation_curves(
    model_or_predictor,
    crop,
    saliency,
    *,
    explained_class: int = 1,
    fractions=(10, 20, 30, 40, 50, 60, 70, 80, 90),
    seed: int = 0,
) -> PerturbationCurves:
    """Deletion and insertion curves for one crop and its map (ROAD imputation, one batch of predictions)."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    pixels = np.asarray(getattr(crop, "pixels", crop), dtype=np.float32)
    saliency, _ = _check_pair(saliency, np.ones_like(pixels))
    image = torch.from_numpy(pixels)[None]
    relevance = torch.from_numpy(saliency.astype(np.float32))
    perturbed = [pixels]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # pytorch-grad-cam's "percentile" is the share of pixels kept below the cut: removing the top
        # f% is percentile 100 - f; keeping only the top f% removes the lowest 100 - f%, percentile f.
        for fraction in fractions:
            removed = RemoveMostRelevantFirst(100 - fraction, NoisyLinearImputer())(image, relevance)
            perturbed.append(np.clip(removed[0].numpy(), 0.0, 1.0))
        for fraction in fractions:
            kept = RemoveLeastRelevantFirst(fraction, NoisyLinearImputer())(image, relevance)
            perturbed.append(np.clip(kept[0].numpy(), 0.0, 1.0))
    prob = predict_probability(model_or_predictor, np.stack(perturbed))
    score = prob if explained_class == 1 else 1.0 - prob
    n = len(fractions)
    return PerturbationCurves(np.asarray(fractions, float), score[1 : 1 + n], score[1 + n :], float(score[0]))

"""Uncertainty of a model about unlabeled ROIs: what the `uncertain` strategy ranks by.

- `entropy`: predictive entropy H(p) of the ensemble's mean P(malignant) (a deep ensemble's
  disagreement and each member's own doubt both raise it).
- `bald`: mutual information between the prediction and the weights under MC dropout
  (Gal, Islam & Ghahramani 2017): H(mean_t p_t) - mean_t H(p_t) over T stochastic passes;
  high when the passes disagree, i.e. when the doubt is the model's, not the data's.
Both are a few lines over the model's probabilities; no maintained library offers them for a
timm classifier (monai's and monailabel's epistemic scorers work on segmentation volumes).
"""

from __future__ import annotations

import numpy as np

METHODS = ("entropy", "bald")
MC_DROPOUT_RATE = 0.2  # timm's default head dropout for the EfficientNet family


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def entropy_scores(predictor, crops: np.ndarray) -> np.ndarray:
    return binary_entropy(predictor.predict(crops).probability)


def bald_scores(member, crops: np.ndarray, samples: int = 10, seed: int = 0) -> np.ndarray:
    """MC-dropout BALD for one model predictor (a `ModelPredictor`)."""
    probs = mc_dropout_probabilities(member, crops, samples=samples, seed=seed)  # (T, B)
    return binary_entropy(probs.mean(axis=0)) - binary_entropy(probs).mean(axis=0)


def mc_dropout_probabilities(member, crops: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """P(malignant) from `samples` passes with dropout on and batch norm frozen."""
    import torch

    module = member.model
    malignant = member.card.labels.index("malignant")
    saved_rate = getattr(module, "drop_rate", None)
    was_training = module.training
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        if saved_rate is not None and not saved_rate:
            module.drop_rate = MC_DROPOUT_RATE  # a head without dropout gets timm's default rate
        module.train()
        for sub in module.modules():  # batch statistics of one ROI would be meaningless
            if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                sub.eval()
        inputs = member.preprocess(np.asarray(crops, dtype=np.float32))
        out = []
        with torch.no_grad():
            for _ in range(samples):
                out.append(torch.softmax(module(inputs).float(), dim=1)[:, malignant].cpu().numpy())
    finally:
        module.train(was_training)
        if saved_rate is not None:
            module.drop_rate = saved_rate
        torch.random.set_rng_state(generator_state)
    return np.stack(out)

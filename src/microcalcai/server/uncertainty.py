"""Uncertainty of a model about unlabeled ROIs: what the `uncertain` strategy ranks by.

- `entropy`: predictive entropy H(p) of the ensemble's mean P(malignant) (a deep ensemble's
  disagreement and each member's own doubt both raise it).
- `bald`: mutual information between the prediction and the weights under MC dropout
  (Gal, Islam & Ghahramani 2017): H(mean_t p_t) - mean_t H(p_t) over T stochastic passes;
  high when the passes disagree, i.e. when the doubt is the model's, not the data's.
Both are a few lines over the model's probabilities; no maintained library offers them for a
timm classifier (monai's and monailabel's epistemic scorers work on segmentation volumes).

For a batch, `diverse_batch` spreads the choice over the uncertain ROIs with scikit-learn's
k-means on the models' features (`embeddings`).
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


def embeddings(predictor, crops: np.ndarray) -> np.ndarray:
    """(B, D) features before each member's classifier head (timm's `pre_logits`), each member's
    part scaled to unit length and the parts put side by side: where the models see two ROIs
    as alike, for spreading a batch over the pool."""
    import torch

    parts = []
    with torch.inference_mode():
        for member in predictor.members:
            module = member.model
            rows = []
            for start in range(0, len(crops), member.batch_size):
                inputs = member.preprocess(np.asarray(crops[start : start + member.batch_size], np.float32))
                rows.append(module.forward_head(module.forward_features(inputs), pre_logits=True).float())
            features = torch.cat(rows).cpu().numpy().astype(np.float64)
            parts.append(features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12))
    return np.concatenate(parts, axis=1)


PREFILTER = 10  # diverse batches are drawn from the PREFILTER x count most uncertain ROIs


def diverse_batch(scores: np.ndarray, features: np.ndarray, count: int, seed: int = 0) -> list[int]:
    """Indices of `count` ROIs that are uncertain and unlike each other (Zhdanov 2019, "Diverse
    mini-batch active learning"): k-means with k = count over the PREFILTER x count most uncertain
    ROIs, weighted by their scores, and from each cluster the ROI nearest its centre. The top
    `count` scores alone are often near-copies of one ambiguous pattern; an annotator labelling
    several ROIs between trainings learns more from one of each. Ordered by score, best first."""
    from sklearn.cluster import KMeans

    scores = np.asarray(scores, dtype=np.float64)
    ranked = np.argsort(-scores, kind="stable")
    if count >= len(scores):
        return [int(i) for i in ranked]
    shortlist = ranked[: max(count, PREFILTER * count)]
    points = features[shortlist]
    weights = np.maximum(scores[shortlist], 1e-6)
    clusters = KMeans(n_clusters=count, n_init=4, random_state=seed).fit(points, sample_weight=weights)
    picked: list[int] = []
    for centre in clusters.cluster_centers_:
        distance = np.linalg.norm(points - centre, axis=1)
        distance[[list(shortlist).index(i) for i in picked]] = np.inf  # each ROI once
        picked.append(int(shortlist[int(np.argmin(distance))]))
    return sorted(picked, key=lambda i: -scores[i])

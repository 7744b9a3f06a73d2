"""Uncertainty of a model about unlabeled ROIs: what the `uncertain` strategy ranks by.

- `entropy`: predictive entropy H(p) of the ensemble's mean P(malignant) (a deep ensemble's
  disagreement and each member's own doubt both raise it).
- `bald`: mutual information between the prediction and the weights under MC dropout
  (Gal, Islam & Ghahramani 2017): H(mean_t p_t) - mean_t H(p_t) over T stochastic passes;
  high when the passes disagree, i.e. when the doubt is the model's, not the data's.
Both are a few lines over the model's probabilities; no maintained library offers them for a
timm classifier (monai's and monailabel's epistemic scorers work on segmentation volumes).

For a batch, `diverse_batch` spreads the choice over the uncertain ROIs with scikit-learn's
k-means on the models' features (`embeddings`), and `balanced_batch` takes the most uncertain
ROIs from each side of the model's decision, so a batch is not all of the common class.

`HeadScorer` does all of it from one pass of each member's body per ROI: the dropout the MC
passes switch on sits only before the classifier (timm's head dropout), so the pooled features
are computed once and kept per model version, and each MC pass is only the classifier.
"""

from __future__ import annotations

import numpy as np
from microcalcai_logic.contract import POSITIVE_LABEL

METHODS = ("entropy", "bald")
SELECTIONS = ("diverse", "balanced", "top")
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
    malignant = member.card.labels.index(POSITIVE_LABEL)
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


def balanced_batch(
    scores: np.ndarray, probability: np.ndarray, count: int, threshold: float = 0.5
) -> list[int]:
    """Indices of `count` ROIs, the most uncertain of each side of the decision, half and half.

    Uncertainty alone favours the common class when the model leans to it (BALD proposed 2
    malignant ROIs of 24 at 27% prevalence); half of the batch from the ROIs the model calls
    malignant and half from the others keeps the rare class in every batch. The sides are split
    at the model's threshold, or at the median probability when the threshold leaves fewer than
    half a batch on one side (an early model can call almost everything benign). Best first."""
    scores = np.asarray(scores, dtype=np.float64)
    probability = np.asarray(probability, dtype=np.float64)
    if count >= len(scores):
        return [int(i) for i in np.argsort(-scores, kind="stable")]
    half = count // 2
    high = probability >= threshold
    if min(int(high.sum()), int((~high).sum())) < half:
        high = probability >= np.median(probability)
        if high.all() or not high.any():  # all equal: no sides to tell apart
            high = np.zeros(len(scores), dtype=bool)
    picked: list[int] = []
    sides = [np.flatnonzero(high), np.flatnonzero(~high)]
    wanted = [count - half, half]  # the odd one to the rarer, malignant-looking side
    for side, n in zip(sides, wanted, strict=True):
        picked += [int(i) for i in side[np.argsort(-scores[side], kind="stable")][:n]]
    if len(picked) < count:  # one side was short: fill from the rest by score
        taken = set(picked)
        rest = [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in taken]
        picked += rest[: count - len(picked)]
    return sorted(picked, key=lambda i: -scores[i])


class HeadScorer:
    """Each member's pooled features per ROI, computed once per model version (a keyed cache),
    and the probabilities, MC-dropout passes and embeddings made from them.

    `pre_logits` for a model whose classifier does not reproduce its own output from them (a
    head with more than dropout and one layer) returns None: the caller scores with whole passes.
    """

    def __init__(self, max_rows: int = 200_000):
        from collections import OrderedDict

        self._rows: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._checked: dict[str, bool] = {}
        self.max_rows = max_rows

    def pre_logits(self, member, crops: np.ndarray, keys: list) -> np.ndarray | None:
        import torch

        model_key = str(member.path)
        if not self._head_only(member, crops[:1]):
            return None
        missing = [i for i, k in enumerate(keys) if (model_key, k) not in self._rows]
        module = member.model
        with torch.inference_mode():
            for start in range(0, len(missing), member.batch_size):
                index = missing[start : start + member.batch_size]
                inputs = member.preprocess(np.asarray(crops[index], np.float32))
                features = module.forward_head(module.forward_features(inputs), pre_logits=True)
                for i, row in zip(index, features.float().cpu().numpy(), strict=True):
                    self._rows[(model_key, keys[i])] = row
        while len(self._rows) > self.max_rows:
            self._rows.popitem(last=False)
        return np.stack([self._rows[(model_key, k)] for k in keys])

    def _head_only(self, member, one: np.ndarray) -> bool:
        """Whether classifier(pre_logits) is the model's output (checked once per version), and
        the body holds no dropout of its own (its MC passes would differ)."""
        import torch

        model_key = str(member.path)
        if model_key not in self._checked:
            module = member.model
            body_dropout = any(
                getattr(m, "p", getattr(m, "drop_prob", 0)) or 0
                for m in module.modules()
                if "Drop" in type(m).__name__
            )
            ok = False
            if not body_dropout and hasattr(module, "forward_head") and not module.training:
                with torch.inference_mode():
                    inputs = member.preprocess(np.asarray(one, np.float32))
                    whole = module(inputs).float()
                    pre = module.forward_head(module.forward_features(inputs), pre_logits=True)
                    ok = bool(torch.allclose(module.get_classifier()(pre).float(), whole, atol=1e-4))
            self._checked[model_key] = ok
        return self._checked[model_key]

    @staticmethod
    def probabilities(member, pre: np.ndarray, *, samples: int = 0, seed: int = 0) -> np.ndarray:
        """P(malignant) from the classifier: (B,) without dropout, (samples, B) with it on."""
        import torch

        module = member.model
        malignant = member.card.labels.index(POSITIVE_LABEL)
        rate = float(getattr(module, "drop_rate", 0.0) or MC_DROPOUT_RATE)
        features = torch.from_numpy(np.asarray(pre, np.float32)).to(member.device)
        classifier = module.get_classifier()
        with torch.inference_mode():
            if not samples:
                return torch.softmax(classifier(features).float(), 1)[:, malignant].cpu().numpy()
            generator = torch.Generator(device=features.device).manual_seed(seed)
            out = []
            for _ in range(samples):
                keep = torch.rand(features.shape, generator=generator, device=features.device) >= rate
                dropped = features * keep / (1.0 - rate)  # F.dropout's scaling, with our own generator
                out.append(torch.softmax(classifier(dropped).float(), 1)[:, malignant].cpu().numpy())
        return np.stack(out).astype(np.float64)


def unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

"""Active-learning strategies (MONAI Label `Strategy`): which unlabeled ROIs to annotate next.

Every strategy answers `params.count` ROIs (default 1) and leases them to the asking annotator
(leases.py), so annotators working at once never get the same ROI; `count: 0` hands back what
the annotator holds and proposes nothing. The answer keeps MONAI
Label's one-sample shape (the first proposal's `id`, `roi`, ... at the top level) and lists all
proposals, best first, in `samples`.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict

import numpy as np
from monailabel.interfaces.tasks.strategy import Strategy

from microcalcai.server.errors import NotFound, RequestError
from microcalcai.server.hosted import ENSEMBLE
from microcalcai.server.leases import MAX_LEASE_SECONDS, holder_of
from microcalcai.server.uncertainty import (
    METHODS,
    SELECTIONS,
    HeadScorer,
    balanced_batch,
    bald_scores,
    binary_entropy,
    diverse_batch,
    embeddings,
    mc_dropout_probabilities,
    unit_rows,
)

LOG = logging.getLogger(__name__)
DEFAULT_MAX_CANDIDATES = 256
MAX_COUNT = 64
# The strategy the Slicer module and the web page ask for unless the user picks another, listed
# first in /info (and the fallback of a request whose body empties `strategy`); why `auto`: the
# measurements beside AUTO_SWITCH_LABELS.
DEFAULT_STRATEGY = "auto"
# BALD (top batch) was level with entropy (diverse batch) over six exactly paired seeds early in
# the loop (+0.010 [-0.029, +0.049] test AUC at 180 labels): no reason to pay for its passes.
DEFAULT_METHOD = "entropy"
# For `uncertain` with count > 1: the best of its selections in that measurement (diverse above
# top by +0.006 at 450 labels, within noise; with the former retraining start top led).
DEFAULT_SELECTION = "diverse"
# BALD's MC-dropout passes when params.mc_samples is not given. Passes of the classifier alone
# (uncertainty.HeadScorer) cost next to nothing, and the ranking needs many: over 40 ROIs, two
# seeds' BALD rankings agreed with Spearman 0.32 at 10 passes, 0.84 at 50, 0.95 at 200. Whole
# passes (a head that is more than dropout and a classifier) cost a body pass each.
MC_SAMPLES_HEAD = 100
MC_SAMPLES_WHOLE = 10
CROP_CACHE_BYTES = 256 << 20  # 96 px spot crops: thousands; 512 px full-field crops: 256


# `auto` switches from `uncertain` to `random` once this many of the pool's ROIs are labelled.
# Measured over HTTP (benchmarks/RESULTS.md, active learning): from a cold start of 30 random
# labels (ImageNet members) `uncertain` (entropy, diverse) led random up to 180 labels over 6
# seeds (+0.034 test AUC at 180, 95% interval +0.002 to +0.066) and reached random's final AUC
# with 37% of its labels (48%, +0.025 [+0.003, +0.047], with all six seeds on one machine, where
# BALD was level with it); over 3 seeds each, from a 250-label start to 450 random led every
# uncertainty strategy (diverse -0.011, top -0.017, balanced -0.025): once the features fit the
# task, a labelled set skewed toward doubt costs. The switch lies between the two measured
# ranges; `auto` itself, run from 30 to 450 labels in rounds of 60, reached random's final AUC
# with 32% of its labels and stayed level with random after the switch (+0.003 at 450);
# `uncertain` (diverse) all the way in the same rounds was nominally ahead of `auto` after the
# switch (+0.016 at 450, interval -0.004 to +0.035), the opposite of the 250-label start: the
# switch is kept for its halved proposing cost, not for a measured gain. The phantom's number,
# not a law.
AUTO_SWITCH_LABELS = 200


def _answer(candidate, strategy: str, **extra) -> dict:
    return {
        "id": candidate.image_id,
        "roi": candidate.roi.as_params(),
        "patient_id": candidate.patient_id,
        "strategy": strategy,
        **extra,
    }


def scoring_member(store, method: str, model) -> str | None:
    """The one member BALD scores with, or None for the served ensemble. A name the server does
    not host is a 404 whatever the method; a hosted model other than an ROI model (a client
    sends the model its user has selected) matters only to BALD, which refuses it."""
    if model in (None, ENSEMBLE):
        return None
    if model not in store.names():
        raise NotFound(f"params.model {model!r} is not hosted here; GET /info/ lists the models")
    if method != "bald":
        return None  # entropy and the batch choices score with the served ensemble
    if model not in store.roi_model_names():
        raise NotFound(
            f"params.model {model!r} is not a hosted ROI model; choose one of {store.roi_model_names()}"
        )
    return model


def _scorer(store) -> str:
    """The model active learning scores ROIs with: the ensemble, else the first ROI model
    (whole-image models classify whole views, not candidate ROIs)."""
    names = store.names()
    if ENSEMBLE in names:
        return ENSEMBLE
    roi_models = store.roi_model_names()
    if not roi_models:
        raise RequestError("active learning needs an ROI model; this server hosts whole-image models only")
    return roi_models[0]


def _whole(request: dict, name: str, default: int, low: int, high: int) -> int:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"params.{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _seed(request: dict) -> int:
    value = request.get("seed", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestError(f"params.seed must be a whole number >= 0, got {value!r}")
    return value


class PoolStrategy(Strategy):
    """Choose `count` of the ROIs nobody else holds, lease them, answer them best first."""

    name = ""

    def __init__(self, description: str, pool, leases):
        super().__init__(description)
        self.pool = pool
        self.leases = leases

    def __call__(self, request, datastore):
        count = _whole(request, "count", 1, 0, MAX_COUNT)
        seconds = request.get("lease_seconds", self.leases.seconds)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not (1 <= seconds <= MAX_LEASE_SECONDS)
        ):
            raise RequestError(
                f"params.lease_seconds must be a number of seconds from 1 to {MAX_LEASE_SECONDS:.0f}, "
                f"got {seconds!r}"
            )
        holder = holder_of(request)
        # One choice at a time: two annotators asking together must not both pick an ROI before
        # either has leased it. Scoring a pool takes seconds at most, so waiting is short.
        with self.leases.lock:
            everyone = self.pool.candidates()
            unlabeled = self.pool.unlabeled(candidates=everyone)
            self.leases.keep_only({(c.image_id, c.roi.key) for c in unlabeled})
            self.leases.release_holder(holder)  # what it was handed before goes back to the pool
            if count == 0:  # an annotator who stops hands back what it holds
                return {}
            held = self.leases.held_by_others(holder)
            available = [c for c in unlabeled if (c.image_id, c.roi.key) not in held]
            if not available:
                return {}
            labelled = len(everyone) - len(unlabeled)
            chosen, extra = self.choose(available, min(count, len(available)), request, everyone, labelled)
            length = self.leases.grant(holder, [(c.image_id, c.roi.key) for c, _ in chosen], seconds)
        samples = [_answer(c, self.name, **fields) for c, fields in chosen]
        return {
            **samples[0],
            **extra,
            "samples": samples,
            "count": len(samples),
            "remaining": len(unlabeled),
            "leased_to_others": len(held),
            "lease_seconds": length,
            "client_id": holder,
        }

    def choose(
        self, available: list, count: int, request: dict, everyone: list, labelled: int
    ) -> tuple[list[tuple], dict]:
        """[(candidate, its own answer fields)] best first, and fields for the whole answer;
        `everyone`: every candidate of the pool, labelled or not, in the snapshot `available`
        was taken from; `labelled`: how many of them have a label."""
        raise NotImplementedError


class First(PoolStrategy):
    name = "first"

    def __init__(self, pool, leases):
        super().__init__("The first unlabeled ROIs, in image id order", pool, leases)

    def choose(self, available, count, request, everyone, labelled):
        return [(c, {}) for c in available[:count]], {}


class RandomRoi(PoolStrategy):
    name = "random"

    def __init__(self, pool, leases):
        super().__init__("Random unlabeled ROIs (params.seed makes it reproducible)", pool, leases)

    def choose(self, available, count, request, everyone, labelled):
        rng = random.Random(None if request.get("seed") is None else _seed(request))
        return [(c, {}) for c in rng.sample(available, count)], {}


class CandidateCache:
    """The candidates' crops (up to CROP_CACHE_BYTES) and each model version's features of them,
    kept between requests and shared by the strategies that use the models: asking `typical`
    after `uncertain` neither decodes the mammograms nor runs the models' bodies again. Used
    under the lease book's lock, as every strategy's choice is."""

    def __init__(self):
        self.crops: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.crop_bytes = 0
        self.heads = HeadScorer()


class ModelStrategy(PoolStrategy):
    """A strategy that looks at the served models' view of the candidates: their crops, and per
    ROI the models' P(malignant), an uncertainty and the features."""

    about = ""

    def __init__(self, pool, leases, models, cache, shared: CandidateCache | None = None):
        super().__init__(self.about, pool, leases)
        self.models = models
        self.cache = cache
        self.shared = shared or CandidateCache()
        self.heads = self.shared.heads

    def _scored(self, method: str, request: dict, pool: list, with_features: bool):
        """(scores, P(malignant), features or None) of every candidate in `pool`."""
        crops, keys = self._crops(pool)
        scores = np.empty(len(pool))
        probability = np.empty(len(pool))
        features: list = [None] * len(pool)
        for index, batch in _same_size_batches(crops):  # one batch per ROI size: no resampling added
            found = self._score(method, request, batch, [keys[i] for i in index], with_features=with_features)
            scores[index], probability[index] = found[0], found[1]
            for i, row in zip(index, found[2] if with_features else [None] * len(index), strict=True):
                features[i] = row
        return scores, probability, np.stack(features) if with_features else None

    def _threshold(self) -> float:
        return float(self.models.get(_scorer(self.models.store)).predictor.threshold)

    def _crops(self, pool) -> list[np.ndarray]:
        """The candidates' crops, kept between requests (up to CROP_CACHE_BYTES), so scoring the
        pool again does not decode every mammogram again; float32 as infer uses them, so a score
        matches what /infer answers for that ROI."""
        from microcalcai.server.images import datastore_image_path
        from microcalcai.server.infer import Source, make_crop

        crops, keys = {}, {}
        kept = self.shared
        for position, candidate in sorted(enumerate(pool), key=lambda item: item[1].image_id):
            path = datastore_image_path(self.pool.datastore, candidate.image_id)
            key = (str(path), path.stat().st_mtime_ns, candidate.roi.key)
            if key not in kept.crops:
                source = Source(candidate.image_id, path, self.cache.read(path, name=candidate.image_id))
                crop = make_crop(source, candidate.roi).pixels.astype(np.float32)
                kept.crops[key] = crop
                kept.crop_bytes += crop.nbytes
                while kept.crop_bytes > CROP_CACHE_BYTES and len(kept.crops) > 1:
                    kept.crop_bytes -= kept.crops.popitem(last=False)[1].nbytes
            kept.crops.move_to_end(key)
            crops[position], keys[position] = kept.crops[key], key
        return [crops[i] for i in range(len(pool))], [keys[i] for i in range(len(pool))]

    def _score(self, method: str, request: dict, crops: np.ndarray, keys: list, with_features: bool):
        """(scores, the served model's P(malignant), features or None) for a batch of crops."""
        served = self.models.get(_scorer(self.models.store))
        samples = _whole(request, "mc_samples", 0, 2, 100) if "mc_samples" in request else 0
        seed = _seed(request)
        model = scoring_member(self.models.store, method, request.get("model"))
        with served.lock:
            head_samples = samples or MC_SAMPLES_HEAD
            found = self._from_heads(served, method, head_samples, seed, model, crops, keys, with_features)
            if found is not None:
                return found
            samples = samples or MC_SAMPLES_WHOLE
            # A model whose head is more than dropout and a classifier: whole passes.
            probability = served.predictor.predict(crops).probability
            features = embeddings(served.predictor, crops) if with_features else None
            if method == "entropy":
                return binary_entropy(probability), probability, features
            if model is not None:  # one member's MC dropout only
                one = self.models.get(model)
                with one.lock:
                    scores = bald_scores(one.predictor, crops, samples=samples, seed=seed)
                    return scores, probability, features
            # BALD over the ensemble: each member's dropout passes are draws from the posterior over
            # weights, so the mutual information also counts the members' disagreement.
            probs = np.concatenate(
                [
                    mc_dropout_probabilities(member, crops, samples=samples, seed=seed + i)
                    for i, member in enumerate(served.predictor.members)
                ]
            )
            scores = binary_entropy(probs.mean(axis=0)) - binary_entropy(probs).mean(axis=0)
            return scores, probability, features

    def _from_heads(self, served, method, samples, seed, model, crops, keys, with_features):
        """The same scores from each member's cached features (uncertainty.HeadScorer); None when
        a member's head is not only dropout and a classifier."""
        from microcalcai.models.ensemble import combine_probabilities

        members = served.predictor.members
        pre = [self.heads.pre_logits(m, crops, keys) for m in members]
        if any(p is None for p in pre):
            return None
        member_probs = {m.name: self.heads.probabilities(m, p) for m, p in zip(members, pre, strict=True)}
        if len(members) > 1 or hasattr(served.predictor, "combine"):
            probability = combine_probabilities(
                member_probs, {m.name: m.threshold for m in members}, served.predictor.combine
            )
        else:
            probability = member_probs[members[0].name]
        features = np.concatenate([unit_rows(p) for p in pre], axis=1) if with_features else None
        if method == "entropy":
            return binary_entropy(probability), probability, features
        if model is not None:  # one member's MC dropout only
            one = self.models.get(model)
            with one.lock:
                one_pre = self.heads.pre_logits(one.predictor, crops, keys)
                if one_pre is None:
                    return None
                probs = self.heads.probabilities(one.predictor, one_pre, samples=samples, seed=seed)
        else:  # BALD over the ensemble: every member's dropout passes are draws from the posterior
            probs = np.concatenate(
                [
                    self.heads.probabilities(m, p, samples=samples, seed=seed + i)
                    for i, (m, p) in enumerate(zip(members, pre, strict=True))
                ]
            )
        scores = binary_entropy(probs.mean(axis=0)) - binary_entropy(probs).mean(axis=0)
        return scores, probability, features


class MostUncertain(ModelStrategy):
    name = "uncertain"
    about = (
        "The unlabeled ROIs the models are least sure about: params.method 'entropy' (ensemble "
        "predictive entropy, default) or 'bald' (mutual information over MC-dropout passes of "
        "every member); params.selection 'diverse' (default: a batch spread over the uncertain "
        "ROIs, uncertainty-weighted k-means on the models' features), 'top' (the highest "
        "scores) or 'balanced' (the most uncertain ROIs of each side of the model's decision, "
        "half and half)"
    )

    def choose(self, available, count, request, everyone, labelled):
        method = request.get("method") or DEFAULT_METHOD
        if method not in METHODS:
            raise RequestError(f"params.method must be one of {list(METHODS)}, got {method!r}")
        selection = request.get("selection") or DEFAULT_SELECTION
        if selection not in SELECTIONS:
            raise RequestError(f"params.selection must be one of {list(SELECTIONS)}, got {selection!r}")
        limit = _whole(request, "max_candidates", DEFAULT_MAX_CANDIDATES, 1, 100000)
        seed = _seed(request)
        pool = available
        if len(pool) > limit:
            pool = random.Random(seed).sample(pool, limit)
        diverse = selection == "diverse" and count > 1
        scores, probability, features = self._scored(method, request, pool, with_features=diverse)
        if diverse:
            order = diverse_batch(scores, features, count, seed=seed)
        elif selection == "balanced" and count > 1:
            order = balanced_batch(scores, probability, count, threshold=self._threshold())
        else:
            order = [int(i) for i in np.argsort(-scores, kind="stable")[:count]]
        chosen = [(pool[i], {"score": float(scores[i]), "probability": float(probability[i])}) for i in order]
        return chosen, {"method": method, "selection": selection, "candidates": len(pool)}


class Typical(ModelStrategy):
    name = "typical"
    about = (
        "Typical unlabeled ROIs of the parts of the pool no label covers yet (TypiClust): the "
        "candidates, labelled or not (a random share when more than params.max_candidates are "
        "unlabeled), clustered on the models' features into as many clusters as there will be "
        "labels, and from the clusters with the fewest labels, largest first, the ROI where the "
        "pool is densest. params.seed makes it reproducible"
    )

    def choose(self, available, count, request, everyone, labelled):
        from microcalcai.server.typicality import typical_batch

        limit = _whole(request, "max_candidates", DEFAULT_MAX_CANDIDATES, 1, 100000)
        seed = _seed(request)
        free = {(c.image_id, c.roi.key) for c in available}
        # covered: labelled, or held by another annotator (labelled soon); the clusters count them
        covered = [c for c in everyone if (c.image_id, c.roi.key) not in free]
        rng = random.Random(seed)
        free_part = available if len(available) <= limit else rng.sample(available, limit)
        # the same share of the covered ROIs, so the clusters see the pool's mix of the two
        share = len(free_part) / len(available)
        covered_part = rng.sample(covered, round(len(covered) * share)) if share < 1 else covered
        pool = list(free_part) + covered_part
        _, probability, features = self._scored("entropy", request, pool, with_features=True)
        is_covered = np.arange(len(pool)) >= len(free_part)
        order = typical_batch(features, is_covered, count, seed=seed)
        chosen = [(pool[i], {"probability": float(probability[i])}) for i in order]
        return chosen, {"candidates": len(free_part), "covered": len(covered_part)}


class Staged(PoolStrategy):
    """`uncertain` while the labels are few, `random` from then on (AUTO_SWITCH_LABELS says why)."""

    name = "auto"

    def __init__(self, pool, leases, early: PoolStrategy, late: PoolStrategy):
        super().__init__(
            f"'{early.name}' (its defaults) while fewer than params.switch_labels (default "
            f"{AUTO_SWITCH_LABELS}) of the pool's ROIs are labelled, '{late.name}' from then on: "
            "uncertainty helps while the models' features are still ImageNet's, and costs once "
            "they fit the task (benchmarks/RESULTS.md, active learning)",
            pool,
            leases,
        )
        self.early, self.late = early, late

    def choose(self, available, count, request, everyone, labelled):
        switch = _whole(request, "switch_labels", AUTO_SWITCH_LABELS, 0, 10_000_000)
        stage = self.early if labelled < switch else self.late
        chosen, extra = stage.choose(available, count, request, everyone, labelled)
        return chosen, {**extra, "stage": stage.name, "labelled": labelled, "switch_labels": switch}


def _same_size_batches(crops: list[np.ndarray]):
    for size in sorted({c.shape[0] for c in crops}):
        index = [i for i, c in enumerate(crops) if c.shape[0] == size]
        yield index, np.stack([crops[i] for i in index]).astype(np.float32)

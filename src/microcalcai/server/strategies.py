"""Active-learning strategies (MONAI Label `Strategy`): which unlabeled ROI to annotate next."""

from __future__ import annotations

import logging
import random
from collections import OrderedDict

import numpy as np
from monailabel.interfaces.tasks.strategy import Strategy

from microcalcai.server.errors import NotFound, RequestError
from microcalcai.server.hosted import ENSEMBLE
from microcalcai.server.uncertainty import METHODS, bald_scores, entropy_scores

LOG = logging.getLogger(__name__)
DEFAULT_MAX_CANDIDATES = 64
CROP_CACHE_SIZE = 256


def _answer(candidate, strategy: str, **extra) -> dict:
    return {
        "id": candidate.image_id,
        "roi": candidate.roi.as_dict(),
        "patient_id": candidate.patient_id,
        "strategy": strategy,
        **extra,
    }


class First(Strategy):
    def __init__(self, pool):
        super().__init__("The first unlabeled ROI, in image id order")
        self.pool = pool

    def __call__(self, request, datastore):
        pool = self.pool.unlabeled()
        return _answer(pool[0], "first", remaining=len(pool)) if pool else {}


class RandomRoi(Strategy):
    def __init__(self, pool):
        super().__init__("A random unlabeled ROI (params.seed makes it reproducible)")
        self.pool = pool

    def __call__(self, request, datastore):
        pool = self.pool.unlabeled()
        if not pool:
            return {}
        rng = random.Random(request.get("seed"))
        return _answer(rng.choice(pool), "random", remaining=len(pool))


class MostUncertain(Strategy):
    def __init__(self, pool, models, cache):
        super().__init__(
            "The unlabeled ROI the models are least sure about: params.method 'entropy' "
            "(ensemble predictive entropy, default) or 'bald' (MC-dropout mutual information)"
        )
        self.pool = pool
        self.models = models
        self.cache = cache
        self._crop_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def __call__(self, request, datastore):
        method = request.get("method", "entropy")
        if method not in METHODS:
            raise RequestError(f"params.method must be one of {list(METHODS)}, got {method!r}")
        limit = request.get("max_candidates", DEFAULT_MAX_CANDIDATES)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise RequestError(f"params.max_candidates must be a positive whole number, got {limit!r}")
        pool = self.pool.unlabeled()
        if not pool:
            return {}
        if len(pool) > limit:
            pool = random.Random(request.get("seed", 0)).sample(pool, limit)
        crops = self._crops(pool)
        scores = np.empty(len(pool))
        for size in {c.shape[0] for c in crops}:  # one batch per ROI size: no resampling added
            index = [i for i, c in enumerate(crops) if c.shape[0] == size]
            scores[index] = self._score(
                method, request, np.stack([crops[i] for i in index]).astype(np.float32)
            )
        best = int(np.argmax(scores))
        return _answer(
            pool[best],
            "uncertain",
            method=method,
            score=float(scores[best]),
            candidates=len(pool),
            remaining=len(self.pool.unlabeled()),
        )

    def _crops(self, pool) -> list[np.ndarray]:
        """The candidates' crops, kept between requests (1 MB per 512 px ROI, at most
        CROP_CACHE_SIZE of them), so scoring the pool again does not decode every mammogram again;
        float32 as infer uses them, so a score matches what /infer answers for that ROI."""
        from microcalcai.server.images import datastore_image_path
        from microcalcai.server.infer import Source, make_crop

        crops = []
        for candidate in sorted(pool, key=lambda c: c.image_id):  # each image decoded once
            path = datastore_image_path(self.pool.datastore, candidate.image_id)
            key = (str(path), path.stat().st_mtime_ns, candidate.roi.key)
            if key not in self._crop_cache:
                source = Source(candidate.image_id, path, self.cache.read(path, name=candidate.image_id))
                self._crop_cache[key] = make_crop(source, candidate.roi).pixels.astype(np.float32)
                while len(self._crop_cache) > CROP_CACHE_SIZE:
                    self._crop_cache.popitem(last=False)
            self._crop_cache.move_to_end(key)
            crops.append((candidate, self._crop_cache[key]))
        order = {id(c): i for i, c in enumerate(pool)}
        return [crop for _, crop in sorted(crops, key=lambda item: order[id(item[0])])]

    def _score(self, method: str, request: dict, crops: np.ndarray) -> np.ndarray:
        names = self.models.store.names()
        if method == "entropy":
            served = self.models.get(ENSEMBLE if ENSEMBLE in names else names[0])
            with served.lock:
                return entropy_scores(served.predictor, crops)
        model = request.get("model") or self.models.store.model_names()[0]
        if model not in self.models.store.model_names():
            raise NotFound(
                f"params.model {model!r} is not a hosted model; "
                f"choose one of {self.models.store.model_names()}"
            )
        samples = request.get("mc_samples", 10)
        if isinstance(samples, bool) or not isinstance(samples, int) or not 2 <= samples <= 100:
            raise RequestError(f"params.mc_samples must be a whole number from 2 to 100, got {samples!r}")
        served = self.models.get(model)
        with served.lock:
            return bald_scores(served.predictor, crops, samples=samples, seed=int(request.get("seed", 0)))

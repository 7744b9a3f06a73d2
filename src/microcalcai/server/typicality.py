"""Typical ROIs of the regions of the pool no label covers yet: what the `typical` strategy picks.

After TypiClust (Hacohen, Dekel & Weinshall 2022, "Active learning on a budget"): cluster every
candidate, labelled or not, into as many clusters as there will be labels after this batch; take
the clusters with the fewest labels, the largest first, and from each the unlabelled ROI in the
densest part of the pool: labels spread over the pool like random's, without near-duplicates,
and with no uncertainty score to draw them to ambiguous ROIs (benchmarks/RESULTS.md, active
learning, measures what it gains). scikit-learn gives the clustering and the neighbours; the
selection rule is the paper's, a few lines no maintained library ships.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 20  # the paper's density neighbourhood
MAX_CLUSTERS = 500  # the paper's cap: beyond it clusters hold a few ROIs and density means little
COMPONENTS = 50  # k-means and distances on the main components: faster, and less feature noise


def typicality(points: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """1 / mean distance to the nearest `neighbours` other points: high where the pool is dense.

    Over the whole pool, not within a cluster as in the paper: with a cluster per label the
    clusters hold a few ROIs each, too few for a density of their own."""
    from sklearn.neighbors import NearestNeighbors

    k = min(neighbours, len(points) - 1)
    if k < 1:
        return np.ones(len(points))
    distance, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return 1.0 / np.maximum(distance[:, 1:].mean(axis=1), 1e-12)  # column 0: the point itself


def reduce(features: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    features = np.asarray(features, dtype=np.float64)
    components = min(COMPONENTS, features.shape[1], len(features))
    if components == features.shape[1]:
        return features
    return PCA(n_components=components, random_state=seed).fit_transform(features)


def typical_batch(features: np.ndarray, covered: np.ndarray, count: int, seed: int = 0) -> list[int]:
    """Indices of `count` rows not `covered` (labelled, or held by another annotator), in the
    order picked: one at a time, from the cluster with the fewest covered rows (the largest of
    those), the row of highest typicality; the cluster then counts one more."""
    from sklearn.cluster import KMeans

    covered = np.asarray(covered, dtype=bool)
    free = ~covered
    count = min(count, int(free.sum()))
    if count <= 0:
        return []
    points = reduce(features, seed)
    clusters = min(int(covered.sum()) + count, MAX_CLUSTERS, len(points))
    assign = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit_predict(points)
    dense = typicality(points)
    size = np.bincount(assign, minlength=clusters)
    labels = np.bincount(assign[covered], minlength=clusters)
    picked: list[int] = []
    for _ in range(count):
        open_clusters = np.flatnonzero(np.bincount(assign[free], minlength=clusters))
        # fewest labels first, then the largest cluster: np.lexsort sorts by the last key first
        best = open_clusters[np.lexsort((-size[open_clusters], labels[open_clusters]))[0]]
        members = np.flatnonzero((assign == best) & free)
        row = int(members[np.argmax(dense[members])])
        picked.append(row)
        free[row] = False
        labels[best] += 1
    return picked

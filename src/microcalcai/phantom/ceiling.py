"""What a crop can show: the best AUC of a classifier that sees only an ROI crop of the phantom.

The phantom draws each finding's label from P(malignant | morphology, distribution)
(`malignancy`); ranking by that probability gives the Bayes-optimal AUC. A crop shows the
morphology of the particles inside it, but the distribution (grouped, linear, segmental,
regional, diffuse) is a property of the whole finding, and most distributions are wider than an
ROI: a segmental finding spans 22-40 mm, a diffuse one the whole breast, a 256-px crop at 0.07 mm
17.9 mm. So the crop ceiling treats as visible:

- the morphology, always;
- the distribution, only when the whole finding lies inside the crop (a grouped cluster of
  5-10 mm in a 13-mm crop); otherwise only that the finding extends beyond the crop.

The best score from these descriptors is the true probability averaged over what the crop cannot
tell apart: for a finding that extends beyond the crop, P(malignant | morphology, beyond) =
sum_d w(m, d) (1 - f(m, d)) p(m, d) / sum_d w(m, d) (1 - f(m, d)), where f(m, d) is the chance
that a finding of that cell fits the crop (estimated from the generator's own geometries,
`morphology.make_finding`, at random orientations: a hand-written Monte Carlo, since the layouts
have no closed form). Averaging a posterior over coarser information can only lower its AUC, so
the ceiling is <= the Bayes-optimal AUC, and equal to it when every finding fits the crop.

A crop may show a little more than this (a line of particles crossing it hints at a linear
distribution), so a classifier can exceed the ceiling by that much; the morphology-only AUC
(`crop_mm=0`: no distribution visible) brackets it from below.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from microcalcai.errors import InputError
from microcalcai.phantom import malignancy

FIT_SAMPLES = 48  # geometries per (morphology, distribution) cell; f is known to about +-0.07


def _finding_box_mm(morphology: str, distribution: str, rng: np.random.Generator) -> tuple[float, float]:
    """Width and height (mm) of one generated finding's particles, seen at a random angle."""
    from microcalcai.phantom.morphology import make_finding

    geometry = make_finding(morphology, distribution, rng).rotated(float(rng.uniform(0, 2 * math.pi)))
    xs, ys = [], []
    for particle in geometry.particles:
        reach = particle.extent_mm()
        xs += [particle.x - reach, particle.x + reach]
        ys += [particle.y - reach, particle.y + reach]
    return max(xs) - min(xs), max(ys) - min(ys)


@functools.lru_cache(maxsize=64)
def _fit_fractions(crop_mm: float, samples: int) -> dict[tuple[str, str], float]:
    out = {}
    for cell in malignancy.cell_table():
        morphology, distribution = cell["morphology"], cell["distribution"]
        if distribution == "diffuse":  # scattered through the whole breast: never in one crop
            out[(morphology, distribution)] = 0.0
            continue
        rng = np.random.default_rng([samples, malignancy.MORPHOLOGIES.index(morphology), len(distribution)])
        boxes = [_finding_box_mm(morphology, distribution, rng) for _ in range(samples)]
        out[(morphology, distribution)] = float(np.mean([max(w, h) <= crop_mm for w, h in boxes]))
    return out


def fit_fraction(morphology: str, distribution: str, crop_mm: float, samples: int = FIT_SAMPLES) -> float:
    """Chance that a finding of this cell lies wholly inside a square crop of side `crop_mm`."""
    malignancy.check_morphology(morphology)
    malignancy.check_distribution(distribution)
    crop_mm = _check_crop(crop_mm)
    if crop_mm == 0.0:
        return 0.0
    if math.isinf(crop_mm):
        return 1.0
    return _fit_fractions(round(crop_mm, 3), int(samples))[(morphology, distribution)]


def _check_crop(crop_mm: float) -> float:
    try:
        value = float(crop_mm)
    except (TypeError, ValueError):
        raise InputError(f"crop_mm must be a number of millimetres, got {crop_mm!r}") from None
    if math.isnan(value) or value < 0:
        raise InputError(f"crop_mm={crop_mm!r}: give the crop side in millimetres (>= 0, inf for all)")
    return value


def visible_cells(crop_mm: float, morphology_weights=None) -> list[dict]:
    """The classes a crop can tell apart, each with its sampling weight and P(malignant).

    Keys: morphology, distribution (None: the finding extends beyond the crop), weight, p_malignant.
    """
    weights = malignancy.normalise_morphology_weights(morphology_weights)
    out = []
    for morphology in weights:
        cells = [c for c in malignancy.cell_table(weights) if c["morphology"] == morphology]
        beyond_w = beyond_wp = 0.0
        for cell in cells:
            fit = fit_fraction(morphology, cell["distribution"], crop_mm)
            if fit > 0:
                out.append(
                    dict(
                        morphology=morphology,
                        distribution=cell["distribution"],
                        weight=cell["weight"] * fit,
                        p_malignant=cell["p_malignant"],
                    )
                )
            beyond_w += cell["weight"] * (1 - fit)
            beyond_wp += cell["weight"] * (1 - fit) * cell["p_malignant"]
        if beyond_w > 0:
            out.append(
                dict(
                    morphology=morphology,
                    distribution=None,
                    weight=beyond_w,
                    p_malignant=beyond_wp / beyond_w,
                )
            )
    return out


def expected_crop_ceiling_auc(crop_mm: float, morphology_weights=None) -> float:
    """The AUC, in expectation over the generating table, of the best score a crop of side
    `crop_mm` millimetres allows (see the module docstring). inf gives the Bayes-optimal AUC."""
    cells = visible_cells(crop_mm, morphology_weights)
    return malignancy.table_auc([c["weight"] for c in cells], [c["p_malignant"] for c in cells])


def visible_probability(
    morphology: str, distribution: str, inside: bool, crop_mm: float, morphology_weights=None
) -> float:
    """The best score of one ROI from what its crop shows: the true probability when the finding
    lies inside the crop, else its morphology's probability for findings beyond a crop this size."""
    if inside:
        return malignancy.malignancy_probability(morphology, distribution)
    for cell in visible_cells(crop_mm, morphology_weights):
        if cell["morphology"] == morphology and cell["distribution"] is None:
            return cell["p_malignant"]
    # every finding of this morphology fits such a crop: what it shows is the whole finding
    return malignancy.malignancy_probability(morphology, distribution)


def drawn_crop_ceiling_auc(
    rows: Sequence[Mapping], particles: Sequence[Mapping], *, spacing_mm: float, morphology_weights=None
) -> float | None:
    """The crop ceiling on drawn ROIs (manifest rows of calcifications, with `calcifications.csv`'s
    particle rows): each ROI scored by `visible_probability`, `inside` read from where its
    rendered particles lie. None when the rows hold a single class."""
    by_roi: dict[str, list[Mapping]] = {}
    for part in particles:
        by_roi.setdefault(str(part["roi_id"]), []).append(part)
    labels, scores = [], []
    for row in rows:
        if row.get("finding", "calcification") != "calcification":
            continue
        size = float(row["roi_size"])
        crop_mm = size * spacing_mm
        half = size // 2
        x0, y0 = float(row["roi_x"]) - half, float(row["roi_y"]) - half
        inside = row["distribution"] != "diffuse" and all(
            x0 <= float(p["x"]) - r
            and float(p["x"]) + r < x0 + size
            and y0 <= float(p["y"]) - r
            and float(p["y"]) + r < y0 + size
            for p in by_roi.get(str(row["roi_id"]), [])
            for r in [0.5 * float(p["size_mm"]) / spacing_mm]
        )
        scores.append(
            visible_probability(row["morphology"], row["distribution"], inside, crop_mm, morphology_weights)
        )
        labels.append(int(row["label"] == "malignant"))
    return malignancy.empirical_auc(labels, scores)

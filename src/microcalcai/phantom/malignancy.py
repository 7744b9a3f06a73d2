"""Malignancy probabilities per BI-RADS morphology and distribution, labels, Bayes-optimal AUC.

The numbers and their sources are tabulated in docs/phantom.md. In short:
- P(malignant) for each morphology in a grouped distribution: the positive predictive values
  given in the ACR BI-RADS Atlas, 5th edition (Sickles et al., 2013) for the suspicious
  morphologies (amorphous ~20%, coarse heterogeneous ~13-15%, fine pleomorphic ~29%, fine linear
  or fine-linear branching ~70%), consistent with Burnside et al., Radiology 242:388-395 (2007)
  and Bent et al., AJR 194:1378-1383 (2010); typically benign morphologies get BI-RADS 2 values
  (< 1%), grouped punctate the BI-RADS 3 bound (2%).
- Distribution modifies the odds by a factor relative to grouped, from the distribution PPVs of
  Liberman et al., AJR 171:35-40 (1998) and Burnside et al. (2007): linear ~60-68%,
  segmental ~62-74%, grouped ~26-31%, regional lower, diffuse ~0%.
  P(m, d) = logistic(logit(P_m) + log(OR_d)). Typically benign morphologies ignore distribution.
Sampling weights say how often each morphology and distribution appear; by default they mimic a
set of worked-up calcifications (mostly suspicious ones, about 28% malignant), as in
biopsy-based collections such as CBIS-DDSM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from microcalcai_logic.contract import DISTRIBUTIONS
from microcalcai_logic.contract import MORPHOLOGIES as BIRADS_MORPHOLOGIES

from microcalcai.errors import InputError

TYPICALLY_BENIGN = ("round", "coarse_popcorn", "rim", "vascular")

# P(malignant) of each morphology in a grouped distribution.
MORPHOLOGY_PPV = {
    "punctate": 0.02,
    "round": 0.005,
    "coarse_popcorn": 0.002,
    "rim": 0.002,
    "vascular": 0.005,
    "amorphous": 0.20,
    "coarse_heterogeneous": 0.13,
    "fine_pleomorphic": 0.29,
    "fine_linear_branching": 0.70,
}
# Odds ratio of each distribution relative to grouped (PPV ~0.30): odds(PPV_d) / odds(0.30).
DISTRIBUTION_ODDS_RATIO = {
    "diffuse": 0.05,  # PPV ~2%
    "regional": 0.6,  # PPV ~20%
    "grouped": 1.0,
    "linear": 4.0,  # PPV ~63%
    "segmental": 5.0,  # PPV ~68%
}
# Which distributions each morphology appears in, and how often (rows sum to 1).
DISTRIBUTION_WEIGHTS = {
    "punctate": {"diffuse": 0.3, "regional": 0.2, "grouped": 0.4, "linear": 0.05, "segmental": 0.05},
    "round": {"diffuse": 0.4, "regional": 0.3, "grouped": 0.3},
    "coarse_popcorn": {"regional": 0.3, "grouped": 0.7},
    "rim": {"diffuse": 0.3, "regional": 0.3, "grouped": 0.4},
    "vascular": {"linear": 1.0},
    "amorphous": {"diffuse": 0.15, "regional": 0.2, "grouped": 0.5, "linear": 0.1, "segmental": 0.05},
    "coarse_heterogeneous": {"regional": 0.2, "grouped": 0.7, "linear": 0.05, "segmental": 0.05},
    "fine_pleomorphic": {"regional": 0.1, "grouped": 0.6, "linear": 0.15, "segmental": 0.15},
    "fine_linear_branching": {"grouped": 0.4, "linear": 0.3, "segmental": 0.3},
}
# The BI-RADS morphologies the phantom draws: those that matter for the benign/malignant call,
# the ones it has a PPV for (the vocabulary itself is the contract's).
MORPHOLOGIES = tuple(term for term in BIRADS_MORPHOLOGIES if term in MORPHOLOGY_PPV)
MORPHOLOGY_WEIGHTS = {
    "punctate": 0.11,
    "round": 0.07,
    "coarse_popcorn": 0.06,
    "rim": 0.05,
    "vascular": 0.06,
    "amorphous": 0.15,
    "coarse_heterogeneous": 0.12,
    "fine_pleomorphic": 0.20,
    "fine_linear_branching": 0.18,
}


def check_morphology(name: str, parameter: str = "morphology") -> str:
    if name not in MORPHOLOGIES:
        raise InputError(
            f"{parameter} {name!r} is not a known BI-RADS morphology; use one of {', '.join(MORPHOLOGIES)}"
        )
    return name


def check_distribution(name: str, parameter: str = "distribution") -> str:
    if name not in DISTRIBUTIONS:
        raise InputError(
            f"{parameter} {name!r} is not a known BI-RADS distribution; use one of {', '.join(DISTRIBUTIONS)}"
        )
    return name


def malignancy_probability(morphology: str, distribution: str) -> float:
    """P(malignant | morphology, distribution) from the table above."""
    p = MORPHOLOGY_PPV[check_morphology(morphology)]
    check_distribution(distribution)
    if morphology in TYPICALLY_BENIGN:
        return p
    odds = p / (1.0 - p) * DISTRIBUTION_ODDS_RATIO[distribution]
    return odds / (1.0 + odds)


def birads_category(morphology: str, distribution: str) -> str:
    """The BI-RADS assessment a reader would usually give this combination (for reference)."""
    if morphology in TYPICALLY_BENIGN or (
        morphology == "punctate" and distribution in ("diffuse", "regional")
    ):
        return "2"
    if morphology == "punctate" and distribution == "grouped":
        return "3"
    p = malignancy_probability(morphology, distribution)
    if p > 0.95:
        return "5"
    return "4A" if p <= 0.10 else ("4B" if p <= 0.50 else "4C")


def cell_table(morphology_weights: Mapping[str, float] | None = None) -> list[dict]:
    """Every (morphology, distribution) cell with its sampling weight and P(malignant)."""
    weights = normalise_morphology_weights(morphology_weights)
    cells = []
    for morphology, w_m in weights.items():
        for distribution, w_d in DISTRIBUTION_WEIGHTS[morphology].items():
            cells.append(
                {
                    "morphology": morphology,
                    "distribution": distribution,
                    "weight": w_m * w_d,
                    "p_malignant": malignancy_probability(morphology, distribution),
                    "birads": birads_category(morphology, distribution),
                }
            )
    return cells


def normalise_morphology_weights(weights: Mapping[str, float] | Sequence[str] | None) -> dict[str, float]:
    """Weights per morphology summing to 1. A list of names means those, at their default weights."""
    if weights is None:
        weights = MORPHOLOGY_WEIGHTS
    elif not isinstance(weights, Mapping):
        names = list(weights)
        if not names:
            raise InputError("morphologies is empty; name at least one of " + ", ".join(MORPHOLOGIES))
        weights = {check_morphology(n, "morphologies entry"): MORPHOLOGY_WEIGHTS[n] for n in names}
    out = {}
    for name, w in weights.items():
        check_morphology(name, "morphology weight for")
        w = float(w)
        if not np.isfinite(w) or w < 0:
            raise InputError(f"the weight of morphology {name!r} is {w}; weights must be finite and >= 0")
        if w > 0:
            out[name] = w
    total = sum(out.values())
    if total <= 0:
        raise InputError("every morphology weight is zero; give at least one a positive weight")
    return {k: v / total for k, v in out.items()}


def draw_cells(rng: np.random.Generator, n: int, morphology_weights=None) -> list[tuple[str, str]]:
    """n (morphology, distribution) pairs drawn from the sampling weights."""
    cells = cell_table(morphology_weights)
    probs = np.array([c["weight"] for c in cells])
    idx = rng.choice(len(cells), size=n, p=probs / probs.sum())
    return [(cells[i]["morphology"], cells[i]["distribution"]) for i in idx]


def draw_labels(rng: np.random.Generator, probabilities: Sequence[float]) -> np.ndarray:
    """1 (malignant) with each given probability, else 0: realistic label noise by construction."""
    p = np.asarray(probabilities, dtype=float)
    return (rng.random(p.shape) < p).astype(np.int8)


def expected_bayes_auc(morphology_weights=None) -> float:
    """AUC of the true probabilities as scores, in expectation over the generating table.

    Positives are distributed over cells as w*p, negatives as w*(1-p); the AUC is
    P(score_pos > score_neg) + P(tie)/2. No classifier of these images can expect more.
    """
    cells = cell_table(morphology_weights)
    return table_auc([c["weight"] for c in cells], [c["p_malignant"] for c in cells])


def table_auc(weights: Sequence[float], probabilities: Sequence[float]) -> float:
    """AUC of scoring each class of a table by its P(malignant), the classes drawn with `weights`
    and their labels with those probabilities (ties count one half)."""
    w = np.asarray(weights, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    pos = w * p / np.sum(w * p)
    neg = w * (1 - p) / np.sum(w * (1 - p))
    tie = np.isclose(p[:, None], p[None, :], rtol=0, atol=1e-12)
    greater = (p[:, None] > p[None, :]) & ~tie  # averaged probabilities differ by rounding only
    return float(np.sum(pos[:, None] * neg[None, :] * (greater + 0.5 * tie)))


def expected_prevalence(morphology_weights=None) -> float:
    cells = cell_table(morphology_weights)
    return float(sum(c["weight"] * c["p_malignant"] for c in cells))


def empirical_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """AUC of `scores` on drawn `labels` (None when only one class was drawn)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, np.asarray(scores, dtype=float)))

"""A patient's plan, drawn from her own seed before any pixel is made: who she is (study date,
breast density and size), which calcification findings she has, and which exposures are taken.

Every patient has her own seed sequence (derived from the data-set seed and her index), so a data
set is the same whatever the number of worker processes, and one patient can be regenerated alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from microcalcai.phantom import malignancy
from microcalcai.phantom.anatomy import BreastSize
from microcalcai.phantom.morphology import make_finding
from microcalcai.phantom.settings import DENSITY_CATEGORIES, PhantomSettings


@dataclass
class Finding:
    finding_id: int
    morphology: str
    distribution: str
    p_malignant: float
    label: int
    seed: int


def _patient_seeds(seed: int, index: int) -> np.random.SeedSequence:
    """The patient's own seed sequence: its first child plans the patient, the next ones are
    two per image (the image, then its negative ROIs), so options that add negatives or PNGs
    leave the images unchanged."""
    return np.random.SeedSequence([int(seed), int(index)])


def _draw_density(rng: np.random.Generator) -> float:
    cats = list(DENSITY_CATEGORIES.values())
    share = np.array([c[0] for c in cats])
    mean = cats[rng.choice(len(cats), p=share / share.sum())][1]
    return float(np.clip(mean + rng.normal(0, 0.04), 0.02, 0.9))


def _study_date(rng: np.random.Generator, years: tuple[int, int]) -> dt.date:
    start = dt.date(years[0], 1, 1)
    days = (dt.date(years[1], 12, 31) - start).days
    return start + dt.timedelta(days=int(rng.integers(0, days + 1)))


@dataclass
class PatientPlan:
    patient_id: str
    study_id: str
    study_date: dt.date
    density: float
    beta: float
    affected: str
    findings: list[Finding]
    geometries: dict
    exposures: list[tuple[str, str, list[Finding], str]]  # (side, view, findings shown, id suffix)
    seeds: list[np.random.SeedSequence]  # two per exposure
    sizes: dict[str, BreastSize]  # per side, shared by the CC and MLO views


def _breast_sizes(rng: np.random.Generator) -> dict[str, BreastSize]:
    """A woman's two breasts are about the same size (within ~5%)."""
    base = BreastSize.draw(rng)
    other = BreastSize(
        *(
            v * float(rng.uniform(0.95, 1.05))
            for v in (base.nipple_depth_mm, base.height_ratio, base.thickness_mm)
        )
    )
    return {"L": base, "R": other} if rng.random() < 0.5 else {"L": other, "R": base}


def plan_patient(settings: PhantomSettings, index: int) -> PatientPlan:
    """Who the patient is, what she has and which images are taken, from her own seed."""
    root = _patient_seeds(settings.seed, index)
    rng = np.random.default_rng(root.spawn(1)[0])
    patient_id = f"SYN{settings.seed:04d}-{index + 1:05d}"
    study_date = _study_date(rng, settings.study_years)
    density = settings.density if settings.density is not None else _draw_density(rng)
    beta = settings.beta if settings.beta is not None else float(rng.uniform(2.6, 3.4))
    affected = "L" if rng.random() < 0.5 else "R"
    n_findings = int(rng.integers(settings.findings_per_breast[0], settings.findings_per_breast[1] + 1))
    findings = []
    for k, (morph, dist) in enumerate(malignancy.draw_cells(rng, n_findings, settings.morphologies)):
        p = malignancy.malignancy_probability(morph, dist)
        findings.append(
            Finding(k + 1, morph, dist, p, int(malignancy.draw_labels(rng, [p])[0]), int(rng.integers(2**31)))
        )
    geometries = {
        f.finding_id: make_finding(f.morphology, f.distribution, np.random.default_rng(f.seed))
        for f in findings
    }
    # One exposure per view of each breast. Spot fields: one per finding (spot compression
    # views are taken per lesion), and a field without findings for negative ROIs.
    sides = ["L", "R"] if settings.bilateral else [affected]
    spot = not settings.full_field
    exposures = []
    for side in sides:
        for view in settings.views:
            if side != affected:
                exposures.append((side, view, [], ""))
            elif spot:
                exposures += [(side, view, [f], f"-F{f.finding_id}") for f in findings]
                if settings.negatives and not settings.bilateral:
                    exposures.append((side, view, [], "-N"))
            else:
                exposures.append((side, view, findings, ""))
    return PatientPlan(
        patient_id,
        f"{patient_id}-S1",
        study_date,
        density,
        beta,
        affected,
        findings,
        geometries,
        exposures,
        root.spawn(2 * len(exposures)),
        _breast_sizes(rng),
    )

"""What determines a phantom data set (`PhantomSettings`, written to phantom.json), what generating
one returns (`SynthResult`), and the names of the files it writes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from microcalcai.errors import InputError
from microcalcai.phantom import malignancy
from microcalcai.phantom.physics import Detector

VIEWS = ("CC", "MLO")
# BI-RADS breast density categories a-d: share of screened women and mean glandular fraction.
DENSITY_CATEGORIES = {"a": (0.10, 0.08), "b": (0.40, 0.22), "c": (0.40, 0.40), "d": (0.10, 0.60)}
MANIFEST_NAME = "manifest.csv"
SETTINGS_NAME = "phantom.json"
PARTICLES_NAME = "calcifications.csv"


@dataclass
class PhantomSettings:
    """Everything that determines a generated data set (written to phantom.json)."""

    patients: int
    seed: int
    spacing_mm: float = 0.07
    roi_size: int = 512
    negatives: bool = False
    negatives_per_image: int = 1
    views: tuple[str, ...] = VIEWS
    bilateral: bool = True
    findings_per_breast: tuple[int, int] = (1, 2)
    full_field: bool = True
    field_size: int | None = None  # spot fields: side in pixels (default 1.5 x roi_size)
    bits_stored: int = 14
    beta: float | None = None  # None: drawn per patient from 2.6..3.4
    density: float | None = None  # glandular fraction; None: drawn from BI-RADS categories a-d
    morphologies: Mapping[str, float] | Sequence[str] | None = None
    photons_per_mm2: float = 4.0e5
    electronic_noise: float = 3.0
    psf_sigma_mm: float = 0.05
    calcium_mu_per_mm: float = 2.0
    study_years: tuple[int, int] = (2012, 2021)
    write_png: bool = False
    roi_png: bool = False
    backgrounds: Sequence[str] | None = None
    background_spacing_mm: float | None = None

    def validate(self) -> PhantomSettings:
        def bad(name, value, what):
            raise InputError(f"{name}={value!r}: {what}")

        if (
            isinstance(self.patients, bool)
            or not isinstance(self.patients, (int, np.integer))
            or self.patients < 1
        ):
            bad("patients", self.patients, "give a whole number of patients, at least 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            bad("seed", self.seed, "the seed must be a whole number >= 0")
        if not isinstance(self.roi_size, (int, np.integer)) or self.roi_size < 8:
            bad("roi_size", self.roi_size, "the ROI side must be a whole number of pixels, at least 8")
        if self.field_size is not None and (
            not isinstance(self.field_size, (int, np.integer)) or self.field_size < self.roi_size
        ):
            bad(
                "field_size",
                self.field_size,
                f"a spot field must be at least roi_size={self.roi_size} pixels",
            )
        if self.negatives_per_image < 0:
            bad("negatives_per_image", self.negatives_per_image, "must be zero or more")
        lo, hi = self.findings_per_breast
        if not 1 <= lo <= hi or hi > 20:
            bad("findings_per_breast", self.findings_per_breast, "give (min, max) with 1 <= min <= max <= 20")
        if (
            not self.views
            or any(v not in VIEWS for v in self.views)
            or len(set(self.views)) != len(self.views)
        ):
            bad("views", self.views, f"choose one or both of {', '.join(VIEWS)}, each once")
        if self.beta is not None and not 2.0 < self.beta < 5.0:
            bad(
                "beta",
                self.beta,
                "the spectral exponent must be within (2, 5); parenchyma measures 2.5 to 3.5",
            )
        if self.density is not None and not 0.0 <= self.density <= 1.0:
            bad("density", self.density, "the glandular fraction must be within 0..1")
        y0, y1 = self.study_years
        if not 1900 <= y0 <= y1 <= 2100:
            bad("study_years", self.study_years, "give (first, last) calendar years, first <= last")
        if self.backgrounds:
            if not self.full_field:
                bad(
                    "full_field",
                    self.full_field,
                    "spot fields are synthetic; backgrounds need full_field=True",
                )
            for path in self.backgrounds:
                if not Path(path).is_file():
                    raise InputError(f"background {path} does not exist; give the path of a mammogram file")
        if self.background_spacing_mm is not None and not self.background_spacing_mm > 0:
            bad(
                "background_spacing_mm",
                self.background_spacing_mm,
                "must be a positive number of millimetres",
            )
        self.detector()  # validates spacing, bits, noise and contrast settings
        malignancy.normalise_morphology_weights(self.morphologies)
        return self

    def detector(self, spacing_mm: float | None = None) -> Detector:
        return Detector(
            spacing_mm=self.spacing_mm if spacing_mm is None else spacing_mm,
            bits_stored=self.bits_stored,
            photons_per_mm2=self.photons_per_mm2,
            electronic_noise=self.electronic_noise,
            psf_sigma_mm=self.psf_sigma_mm,
            calcium_mu_per_mm=self.calcium_mu_per_mm,
        ).validate()

    def spot_field(self) -> int | None:
        if self.full_field:
            return None
        return int(self.field_size or math.ceil(self.roi_size * 1.5))

    def as_json(self) -> dict:
        out = asdict(self)
        if self.morphologies is not None:
            out["morphologies"] = malignancy.normalise_morphology_weights(self.morphologies)
        out["backgrounds"] = [str(p) for p in self.backgrounds] if self.backgrounds else None
        return out


@dataclass
class SynthResult:
    out_dir: Path
    manifest_path: Path
    settings_path: Path
    rows: list[dict] = field(default_factory=list)
    bayes_auc_expected: float = float("nan")
    bayes_auc_drawn: float | None = None

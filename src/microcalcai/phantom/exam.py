"""Four-view screening exams (L/R x CC/MLO) in which some breasts have breast arterial calcification.

Prevalence, as Mobini et al. (Eur Radiol Exp 2024) report it: BAC in 194 of 1,493 women (13.0%)
and in 581 of 5,972 images (9.7%). A calcified artery shows in both views of its breast, so the
image prevalence is the breast prevalence. The phantom is set by the breast (= image) prevalence
p (default 0.097) and the share q of BAC-positive women with BAC in both breasts (default 0.49):
a woman is BAC-positive with probability 2p / (1 + q), which is 0.130 with the defaults, so both
of the study's figures are reproduced (581 / 194 = 3.0 positive images per positive exam, that is
1.5 breasts: half bilateral).

Labels: per image (`bac`, and the manifest's `label`: malignant = BAC present, as the
`mobini2024` recipe reads it), per breast and per exam (`exam_bac`: BAC in any of the four
images); masks mark the calcified vessel pixels of each image (value = the artery's number).

Every exam is made from its own seed (data-set seed, exam index), so the set is the same for any
number of workers and one exam can be regenerated alone; the plan (who is positive, which side)
is drawn from its first child seed, before any image, so prevalence can be checked on plans alone.

Pixel size: whole views of 240 x 180 mm (or 300 x 240 mm) at `spacing_mm`; the default 0.2 mm
(1200 x 900 pixels for the small field) keeps the calcified wall (0.08-0.18 mm) and the vessel
(1.2-2.2 mm across) visible; 0.4 mm (600 x 450) is the fast test size, where a vessel is still
3-5 pixels wide. Clinical detectors are 0.07-0.1 mm.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_dir, atomic_write_text
from microcalcai.errors import InputError
from microcalcai.phantom import vessels
from microcalcai.phantom.anatomy import Breast, BreastSize, make_breast
from microcalcai.phantom.dataset import DENSITY_CATEGORIES
from microcalcai.phantom.parallel import results_in_order
from microcalcai.phantom.physics import Detector
from microcalcai.phantom.scene import Placement, SyntheticView, synthesize_view

log = logging.getLogger(__name__)

SIDES = ("L", "R")
VIEWS = ("CC", "MLO")
IMAGE_PREVALENCE = 581 / 5972  # Mobini et al. 2024: images (= breasts) with BAC
WOMEN_PREVALENCE = 194 / 1493  # and women
BILATERAL_FRACTION = 0.49  # q with 2p / (1 + q) = 13.0% of women for p = 9.7% of breasts
MANIFEST_NAME = "manifest.csv"
SETTINGS_NAME = "phantom.json"
_PLACEMENT_TRIES = 30  # arteries redrawn until their calcified runs lie inside both views


@dataclass
class ExamSettings:
    """Everything that determines a generated set of BAC exams (written to phantom.json)."""

    exams: int
    seed: int
    spacing_mm: float = 0.2
    prevalence: float = IMAGE_PREVALENCE  # share of breasts (= images) with BAC
    bilateral_fraction: float = BILATERAL_FRACTION  # share of BAC-positive women with BAC in both
    arteries_per_breast: tuple[int, int] = (1, 3)
    bits_stored: int = 14
    study_years: tuple[int, int] = (2012, 2021)
    write_png: bool = False

    def validate(self) -> ExamSettings:
        def bad(name, what):
            raise InputError(f"{name}={getattr(self, name)!r}: {what}")

        if isinstance(self.exams, bool) or not isinstance(self.exams, (int, np.integer)) or self.exams < 1:
            bad("exams", "give a whole number of exams, at least 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            bad("seed", "the seed must be a whole number >= 0")
        if not 0.0 <= self.bilateral_fraction <= 1.0:
            bad("bilateral_fraction", "a share of women, within 0..1")
        if not 0.0 <= self.prevalence <= 1.0 or self.exam_prevalence > 1.0:
            bad(
                "prevalence",
                "the share of breasts with BAC must be within 0..(1 + bilateral_fraction) / 2 "
                f"= {(1 + self.bilateral_fraction) / 2:g} (every woman positive at that point)",
            )
        lo, hi = self.arteries_per_breast
        if not 1 <= lo <= hi <= 10:
            bad("arteries_per_breast", "give (min, max) with 1 <= min <= max <= 10")
        if not 0.0 < self.spacing_mm <= 1.0:
            # calcified arteries are about 1 mm wide: coarser pixels cannot show them
            bad("spacing_mm", "pixel spacing in mm, above 0 and at most 1 (mammograms: 0.05-0.1)")
        y0, y1 = self.study_years
        if not 1900 <= y0 <= y1 <= 2100:
            bad("study_years", "give (first, last) calendar years, first <= last")
        self.detector()
        return self

    @property
    def exam_prevalence(self) -> float:
        """Share of women (exams) with BAC in at least one breast: 2p / (1 + q)."""
        return 2.0 * self.prevalence / (1.0 + self.bilateral_fraction)

    def detector(self) -> Detector:
        return Detector(spacing_mm=self.spacing_mm, bits_stored=self.bits_stored).validate()


@dataclass
class ExamPlan:
    index: int
    patient_id: str
    study_id: str
    study_date: dt.date
    density: float
    beta: float
    bac_sides: tuple[str, ...]  # breasts with calcified arteries
    sizes: dict[str, BreastSize]
    seeds: list[np.random.SeedSequence] = field(repr=False, default_factory=list)

    @property
    def exam_bac(self) -> bool:
        return bool(self.bac_sides)


def _exam_seeds(seed: int, index: int) -> np.random.SeedSequence:
    # a different entropy tag from the calcification phantom's patients: the two sets never share draws
    return np.random.SeedSequence([int(seed), int(index), 0xBAC])


def plan_exam(settings: ExamSettings, index: int) -> ExamPlan:
    """Who the woman is and which of her breasts have BAC, from her own seed (no image made)."""
    root = _exam_seeds(settings.seed, index)
    children = root.spawn(1 + 2 * len(SIDES) * len(VIEWS) + len(SIDES))
    rng = np.random.default_rng(children[0])
    bac_sides: tuple[str, ...] = ()
    if rng.random() < settings.exam_prevalence:
        bac_sides = SIDES if rng.random() < settings.bilateral_fraction else (SIDES[int(rng.integers(2))],)
    start = dt.date(settings.study_years[0], 1, 1)
    days = (dt.date(settings.study_years[1], 12, 31) - start).days
    cats = list(DENSITY_CATEGORIES.values())
    share = np.array([c[0] for c in cats])
    density = float(
        np.clip(cats[rng.choice(len(cats), p=share / share.sum())][1] + rng.normal(0, 0.04), 0.02, 0.9)
    )
    base = BreastSize.draw(rng)
    # a woman's two breasts are about the same size (within ~5%)
    other = BreastSize(*(v * float(rng.uniform(0.95, 1.05)) for v in asdict(base).values()))
    patient_id = f"BAC{settings.seed:04d}-{index + 1:05d}"
    return ExamPlan(
        index,
        patient_id,
        f"{patient_id}-S1",
        start + dt.timedelta(days=int(rng.integers(0, days + 1))),
        density,
        float(rng.uniform(2.6, 3.4)),
        bac_sides,
        {"L": base, "R": other},
        children[1:],
    )


@dataclass
class ExamImage:
    side: str
    view: str
    view_image: SyntheticView
    breast: Breast
    bac: bool
    arteries: list[vessels.Artery]

    @property
    def image_id(self) -> str:
        return f"{self.side}{self.view}"


def _arteries(plan: ExamPlan, side: str, breasts: dict[str, Breast], rng, counts) -> list[vessels.Artery]:
    """Arteries of one breast whose calcified runs lie inside the breast in both views."""
    out = []
    for _ in range(int(rng.integers(counts[0], counts[1] + 1))):
        for _try in range(_PLACEMENT_TRIES):
            artery = vessels.make_artery(rng, plan.sizes[side])
            if len(artery.centreline) < 20:
                continue
            if all(
                vessels.fraction_inside(vessels.artery_geometry([artery], view, side), breast) >= 0.95
                for view, breast in breasts.items()
            ):
                out.append(artery)
                break
    if not out:
        raise RuntimeError(f"exam {plan.patient_id}: no artery fits inside breast {side} in both views")
    return out


def make_exam(settings: ExamSettings, index: int) -> tuple[ExamPlan, list[ExamImage]]:
    """The four views of one exam, rendered (nothing written)."""
    plan = plan_exam(settings, index)
    detector = settings.detector()
    images = []
    seeds = iter(plan.seeds)
    artery_seeds = plan.seeds[-len(SIDES) :]
    for s, side in enumerate(SIDES):
        # two seeds per view: the image's, and one kept free so that a later per-view extra (as
        # the calcification phantom's normal ROIs) can draw without changing the images
        view_rngs = {view: (np.random.default_rng(next(seeds)), next(seeds)) for view in VIEWS}
        breasts = {
            view: make_breast(
                rng, spacing_mm=settings.spacing_mm, view=view, laterality=side, size=plan.sizes[side]
            )
            for view, (rng, _) in view_rngs.items()
        }
        bac = side in plan.bac_sides
        arteries = (
            _arteries(
                plan, side, breasts, np.random.default_rng(artery_seeds[s]), settings.arteries_per_breast
            )
            if bac
            else []
        )
        for view in VIEWS:
            breast, rng = breasts[view], view_rngs[view][0]
            x, y = breast.nipple_xy
            placements = [
                Placement(
                    k + 1, vessels.artery_geometry([a], view, side), x, y, vessels.placement_angle(breast)
                )
                for k, a in enumerate(arteries)
            ]
            image = synthesize_view(
                breast, placements, rng, density=plan.density, beta=plan.beta, detector=detector
            )
            # the mask holds the calcified vessel inside the breast only (the image is black outside)
            outside = np.ones(breast.shape, bool)
            outside[breast.box] = ~breast.mask
            image.labels[outside] = 0
            images.append(ExamImage(side, view, image, breast, bac, arteries))
    return plan, images


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["microcalcai-phantom-bac", *map(str, parts)])


def _write_exam(settings: ExamSettings, index: int, out: Path) -> list[dict]:
    """Render one exam and write its DICOM MG images and masks; returns its manifest rows."""
    from PIL import Image

    from microcalcai.io.dicom_write import build_mg_dataset

    plan, images = make_exam(settings, index)
    rows = []
    for number, im in enumerate(images, start=1):
        image_id = f"{plan.patient_id}-{im.image_id}"
        rel_image = f"images/{plan.patient_id}/{image_id}.dcm"
        rel_mask = f"masks/{image_id}.png"
        dataset = build_mg_dataset(
            im.view_image.stored,
            spacing_mm=(settings.spacing_mm, settings.spacing_mm),
            spacing_tag=("PixelSpacing", "ImagerPixelSpacing"),
            laterality=im.side,
            view=im.view,
            patient_id=plan.patient_id,
            patient_name=f"Phantom^{plan.patient_id}",
            study_id=plan.study_id,
            study_date=plan.study_date.strftime("%Y%m%d"),
            accession_number=plan.study_id,
            study_uid=_uid(settings.seed, plan.study_id),
            series_uid=_uid(settings.seed, plan.study_id, "series"),
            sop_uid=_uid(settings.seed, image_id),
            instance_number=number,
            bits_stored=settings.bits_stored,
            window=im.view_image.window,
            voi_function="LINEAR",
            chest_wall=im.breast.chest_wall,
            extra={
                "StudyTime": "090000",
                "ContentTime": "090000",
                "Manufacturer": "MicrocalcAI phantom",
                "SeriesDescription": "synthetic four-view exam (breast arterial calcification)",
                "ImageComments": "synthetic mammogram (microcalcai.phantom.exam); not a real patient",
            },
        )
        (out / rel_image).parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(out / rel_image, write_like_original=False)
        (out / rel_mask).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im.view_image.labels).save(out / rel_mask, format="PNG", compress_level=1)
        rows_px, cols_px = im.view_image.stored.shape
        row = dict(
            patient_id=plan.patient_id,
            image_path=rel_image,
            roi_x=(cols_px - 1) / 2.0,
            roi_y=(rows_px - 1) / 2.0,
            label="malignant" if im.bac else "benign",
            finding="arterial_calcification" if im.bac else "normal",
            study_id=plan.study_id,
            image_id=image_id,
            roi_size=max(rows_px, cols_px),
            view=im.view,
            laterality=im.side,
            study_date=plan.study_date.isoformat(),
            mask_path=rel_mask,
            spacing_mm=settings.spacing_mm,
            roi_source="whole_image",
            exam_id=plan.study_id,
            bac=int(im.bac),
            exam_bac=int(plan.exam_bac),
            bilateral_bac=int(len(plan.bac_sides) == 2),
            n_arteries=len(im.arteries),
            calcified_mm=round(sum(a.calcified_mm for a in im.arteries), 1),
            vessel_pixels=int(np.count_nonzero(im.view_image.labels)),
            density=round(plan.density, 4),
            beta=round(plan.beta, 4),
            breast_thickness_mm=round(im.breast.thickness_mm, 2),
        )
        if settings.write_png:
            rel_png = f"images/{plan.patient_id}/{image_id}.png"
            display = (im.view_image.display() * 255 + 0.5).astype(np.uint8)
            Image.fromarray(display).save(out / rel_png, format="PNG", compress_level=1)
            row["png_path"] = rel_png
        rows.append(row)
    return rows


def bayes_optimal_auc() -> dict:
    """The best AUC any classifier can reach on these exams, and why.

    In the calcification phantom the label is drawn from P(malignant | morphology, distribution),
    so even a perfect reader of the image is wrong sometimes and the Bayes-optimal AUC is below 1
    (`malignancy.expected_bayes_auc`). Here the label is not drawn given the image: a breast is
    BAC-positive exactly when calcified arteries are drawn into it, and every such artery leaves
    centimetres of calcium in both views of that breast (placement guarantees its calcified runs
    lie inside the breast in both views). P(BAC | image) is therefore 0 or 1 for the ideal
    observer (who knows the generating model and sees the noiseless projection), so the
    Bayes-optimal AUC is 1 at the image, breast and exam levels; with quantum noise it stays 1 in
    practice, since the signal of a whole calcified vessel (hundreds of pixels of 0.1-0.6 mm
    calcium path) is far above the noise. What is left for a model to lose comes from the image
    size it sees (a calcified wall of 0.08-0.18 mm against 0.2-0.4 mm pixels, or much less after
    resizing to a network's input), the parenchymal texture and the fibrous strands that mimic
    thin lines: not from irreducible label noise. A measured AUC below 1 is thus all model error.
    """
    return {
        "image": 1.0,
        "exam": 1.0,
        "note": "labels are a deterministic function of the drawn scene (BAC present iff a calcified "
        "artery is drawn, visible in both views): the ideal observer separates the classes",
    }


def summary(settings: ExamSettings, rows: list[dict]) -> dict:
    from microcalcai import __version__

    images = [r["bac"] for r in rows]
    exams = {r["exam_id"]: r["exam_bac"] for r in rows}
    return {
        "generator": "microcalcai.phantom.exam",
        "version": __version__,
        "settings": asdict(settings),
        "prevalence": {
            "images_expected": settings.prevalence,
            "exams_expected": settings.exam_prevalence,
            "images_drawn": float(np.mean(images)) if images else None,
            "exams_drawn": float(np.mean(list(exams.values()))) if exams else None,
            "source": "Mobini et al. 2024: 581/5,972 images (9.7%), 194/1,493 women (13.0%)",
        },
        "bayes_auc": bayes_optimal_auc(),
        "counts": {
            "exams": len(exams),
            "images": len(rows),
            "bac_images": int(sum(images)),
            "bac_exams": int(sum(exams.values())),
        },
        "sources": "docs/phantom.md",
    }


@dataclass
class ExamSetResult:
    out_dir: Path
    manifest_path: Path
    settings_path: Path
    rows: list[dict]
    summary: dict


def generate_exams(
    out_dir: str | os.PathLike,
    *,
    exams: int,
    seed: int,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    **options,
) -> ExamSetResult:
    """Generate `exams` four-view exams with BAC at the set prevalence in `out_dir` (built aside,
    moved into place when complete): images/ (DICOM MG), masks/ (vessel masks, PNG),
    manifest.csv (one whole-image row per view) and phantom.json (settings, prevalence, counts).

    Options are the fields of `ExamSettings` (spacing_mm, prevalence, bilateral_fraction,
    arteries_per_breast, bits_stored, study_years, write_png).
    """
    known = {f.name for f in fields(ExamSettings)} - {"exams", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(
            f"unknown exam phantom option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    settings = ExamSettings(exams=exams, seed=seed, **options).validate()
    if workers < 1:
        raise InputError(f"workers={workers} must be at least 1")
    from tqdm import tqdm

    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        rows: list[dict] = []
        with (
            tqdm(
                total=settings.exams, unit="exam", desc="synth exams", disable=not progress, mininterval=1.0
            ) as bar,
            contextlib.ExitStack() as stack,
        ):
            results = results_in_order(stack, _write_exam, settings, settings.exams, tmp, workers)
            for r in results:
                rows += r
                bar.update(1)
        import pandas as pd

        from microcalcai.data.manifest import write_manifest

        write_manifest(pd.DataFrame(rows), tmp / MANIFEST_NAME, base_dir=tmp)
        info = summary(settings, rows)
        atomic_write_text(tmp / SETTINGS_NAME, json.dumps(info, indent=2, default=_json_default) + "\n")
    log.info(
        "wrote %d exams (%d images, %d with BAC) to %s",
        settings.exams,
        len(rows),
        info["counts"]["bac_images"],
        out_dir,
    )
    return ExamSetResult(out_dir, out_dir / MANIFEST_NAME, out_dir / SETTINGS_NAME, rows, info)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, (Path, dt.date)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def expected_counts(settings: ExamSettings) -> dict[str, float]:
    """Expected numbers of BAC exams and images for `settings` (for checks and reports)."""
    return {
        "exams": settings.exams * settings.exam_prevalence,
        "images": 4 * settings.exams * settings.prevalence,
        "breasts": 2 * settings.exams * settings.prevalence,
    }


__all__ = [
    "ExamSettings",
    "ExamSetResult",
    "bayes_optimal_auc",
    "expected_counts",
    "generate_exams",
    "make_exam",
    "plan_exam",
]

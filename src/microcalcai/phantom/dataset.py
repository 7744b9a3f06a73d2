"""Write a synthetic data set: DICOM MG images, masks, ROI crops, manifest.csv and phantom.json.

Every patient is generated from its own seed (derived from the data-set seed and the patient's
index), so the result is the same whatever the number of worker processes, and one patient can
be regenerated alone. A patient has a study date spread over `study_years`, CC and MLO views of
one breast or both, and one or more calcification findings in one breast; each finding appears
in both views of that breast at about the same distance from the nipple, as in real two-view
mammography, so ROIs of one patient are correlated and patient-level splits matter.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_dir, atomic_write_text
from microcalcai.errors import InputError
from microcalcai.phantom import malignancy, physics
from microcalcai.phantom.anatomy import Breast, BreastSize, make_breast
from microcalcai.phantom.morphology import make_finding
from microcalcai.phantom.physics import Detector
from microcalcai.phantom.scene import Placement, SyntheticView, synthesize_view

log = logging.getLogger(__name__)

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


# ------------------------------------------------------------------------------- patient plans
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


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["microcalcai-phantom", *map(str, parts)])


def _free(xs, ys, spacing: float, extent_mm: float, taken: list, roi_mm: float) -> np.ndarray:
    """Which candidate centres keep this finding clear of the findings already placed (and,
    where the findings are small, out of their ROIs)."""
    ok = np.ones(len(xs), bool)
    for tx, ty, te in taken:
        ok &= np.hypot(xs - tx, ys - ty) * spacing > max(te + extent_mm * 0.5 + 5.0, roi_mm)
    return ok


def _candidates(breast: Breast, extent_mm: float, edge_px: int):
    need = float(np.clip(extent_mm * 0.5, 6.0, 15.0))
    xs, ys = breast.tissue_points(need, chest_wall_mm=0.0 if breast.spot else 12.0, edge_px=edge_px)
    if len(xs) == 0:
        xs, ys = breast.tissue_points(0.5 * float(breast.depth_mm.max()))
    return xs, ys


def _place(
    breast: Breast,
    extent_mm: float,
    rng: np.random.Generator,
    taken: list,
    nipple_mm: float | None = None,
    edge_px: int = 0,
) -> tuple[float, float]:
    """A centre deep enough in the breast, off the pectoral muscle and the chest wall, clear of
    other findings; with `nipple_mm` (the other view's distance), at about that distance from
    the nipple, as the same lesion appears in CC and MLO."""
    xs, ys = _candidates(breast, extent_mm, edge_px)
    free = _free(xs, ys, breast.spacing_mm, extent_mm, taken, edge_px * 2 * breast.spacing_mm)
    score = np.where(free, 0.0, 1e3) + rng.random(len(xs))
    if nipple_mm is not None:
        dist = np.hypot(xs - breast.nipple_xy[0], ys - breast.nipple_xy[1]) * breast.spacing_mm
        score += np.abs(dist - (nipple_mm + rng.normal(0, 3.0)))
    i = int(np.argmin(score))
    return float(xs[i]), float(ys[i])


def _fit_roi(centre: tuple[int, int], roi: int, shape: tuple[int, int]) -> tuple[int, int]:
    """The nearest ROI centre whose whole roi x roi window (pixels centre - roi // 2 ...
    centre - roi // 2 + roi - 1, as `microcalcai.roi.crop_roi` cuts it) lies inside the image."""
    rows, cols = shape
    half = roi // 2
    x = min(max(centre[0], half), cols - roi + half)
    y = min(max(centre[1], half), rows - roi + half)
    return x, y


def _finding_roi_centre(view: SyntheticView, placement: Placement, roi: int) -> tuple[int, int] | None:
    """ROI centre: the middle of the rendered particles' bounding box (None if none rendered),
    moved just enough for the ROI to lie wholly inside the image (a finding larger than the ROI
    is not all in it anyway)."""
    parts = view.particles.get(placement.finding_id) or []
    if not parts:
        return None
    if placement.geometry.distribution == "diffuse":
        centre = int(round(placement.x)), int(round(placement.y))
    else:
        xs = [p.x for p in parts]
        ys = [p.y for p in parts]
        centre = int(round((min(xs) + max(xs)) / 2)), int(round((min(ys) + max(ys)) / 2))
    return _fit_roi(centre, roi, view.stored.shape)


def _centre_cluster(geometry, angle: float, spacing_mm: float) -> tuple[float, float]:
    """Offset (pixels) from a finding's origin to the middle of its particles, as rotated by
    `angle`: a spot field is centred on the cluster, not on its frame's origin."""
    if geometry.distribution == "diffuse" or not geometry.particles:
        return 0.0, 0.0
    parts = geometry.rotated(angle).particles
    xs = [p.x for p in parts]
    ys = [p.y for p in parts]
    return (min(xs) + max(xs)) / (2 * spacing_mm), (min(ys) + max(ys)) / (2 * spacing_mm)


def _calcified_pixels(labels: np.ndarray, boxes: list[tuple[slice, slice]]):
    """(rows, columns) of the calcified pixels, looked for only inside the particles' boxes."""
    if not boxes:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    r0, r1 = min(b[0].start for b in boxes), max(b[0].stop for b in boxes)
    c0, c1 = min(b[1].start for b in boxes), max(b[1].stop for b in boxes)
    cy, cx = np.nonzero(labels[r0:r1, c0:c1])
    return cy + r0, cx + c0


def _negative_centres(
    labels: np.ndarray,
    breast: Breast,
    roi: int,
    n: int,
    rng: np.random.Generator,
    boxes: list[tuple[slice, slice]],
) -> list[tuple[int, int]]:
    """ROI centres in breast tissue whose whole ROI holds no calcification pixel (`boxes`: where
    the calcifications were drawn)."""
    if n <= 0:
        return []
    cy, cx = _calcified_pixels(labels, boxes)
    # as deep in the breast as findings are placed, so normal ROIs show tissue, not the skin line
    xs, ys = breast.tissue_points(
        8.0 if breast.spot else 15.0, step=4, chest_wall_mm=0.0 if breast.spot else 12.0, edge_px=roi // 2
    )
    half = roi // 2
    out: list[tuple[int, int]] = []
    for i in rng.permutation(len(xs))[:2000]:
        x, y = int(xs[i]), int(ys[i])
        clear = not np.any(
            (cx >= x - half) & (cx < x - half + roi) & (cy >= y - half) & (cy < y - half + roi)
        )
        if clear and all(abs(x - ox) >= roi or abs(y - oy) >= roi for ox, oy in out):
            out.append((x, y))
            if len(out) == n:
                break
    return out


def _display_image(view: SyntheticView, spacing_mm: float):
    """The windowed image as the io layer's Mammogram, so ROIs are cut by `microcalcai.roi`;
    deferred, so that only the crops are windowed (not tens of millions of pixels per view)."""
    from microcalcai.io.image import DeferredPixels, Mammogram
    from microcalcai.io.intensity import Transform

    window = view.window
    pixels = DeferredPixels(view.stored, Transform(lambda v: physics.apply_window(v, window), cheap=True))
    return Mammogram(pixels=pixels, spacing_mm=(spacing_mm, spacing_mm), spacing_source="PixelSpacing")


def _write(path: Path, data: bytes) -> None:
    """Plain write: every file is written inside the folder that `atomic_dir` moves into place
    only once the whole data set is complete, so a per-file fsync and rename would only cost
    time (hundreds of megabytes of full-field images)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _png_bytes(array: np.ndarray, *, sparse: bool = False) -> bytes:
    """PNG at zlib level 1; `sparse` (label masks, mostly 0): run-length matching, same speed,
    files ~4x smaller."""
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    options = {"compress_type": zlib.Z_RLE} if sparse else {}
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1, **options)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_view(
    out: Path, rel_image: str, view: SyntheticView, meta: dict, settings: PhantomSettings, spacing: float
) -> dict:
    from microcalcai.io.dicom_write import build_mg_dataset

    study_time = "090000"
    dataset = build_mg_dataset(
        view.stored,
        spacing_mm=(spacing, spacing),
        laterality=meta["laterality"],
        spacing_tag=("PixelSpacing", "ImagerPixelSpacing"),  # GDCM (SimpleITK) reads the latter for MG
        view=meta["view"],
        patient_id=meta["patient_id"],
        patient_name=f"Phantom^{meta['patient_id']}",
        study_id=meta["study_id"],
        study_date=meta["study_date"].strftime("%Y%m%d"),
        accession_number=meta["study_id"],
        study_uid=_uid(settings.seed, meta["study_id"]),
        series_uid=_uid(settings.seed, meta["study_id"], "series"),
        sop_uid=_uid(settings.seed, meta["image_id"]),
        instance_number=meta["instance"],
        bits_stored=settings.bits_stored,
        window=view.window,
        voi_function="LINEAR",
        chest_wall=meta.get("chest_wall"),
        extra={
            "StudyTime": study_time,
            "ContentTime": study_time,
            "Manufacturer": "MicrocalcAI phantom",
            "SeriesDescription": f"{meta['laterality']}{meta['view']} synthetic",
            "ImageComments": "synthetic mammogram (microcalcai.phantom); not a real patient",
        },
    )
    (out / rel_image).parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(out / rel_image, write_like_original=False)
    files = {}
    if settings.write_png:
        png = Path(rel_image).with_suffix(".png")
        _write(out / png, _png_bytes((view.display() * 65535 + 0.5).astype(np.uint16)))
        files["png_path"] = png.as_posix()
    return files


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


def make_patient(settings: PhantomSettings, index: int, out: Path) -> tuple[list[dict], list[dict]]:
    """Generate and write one patient's images; returns (manifest rows, particle rows)."""
    plan = plan_patient(settings, index)
    rows, particle_rows = [], []
    nipple_mm: dict[int, float] = {}
    spot = settings.spot_field()
    for image_no, (side, view_name, shown, suffix) in enumerate(plan.exposures, start=1):
        image_rng = np.random.default_rng(plan.seeds[2 * image_no - 2])
        negative_rng = np.random.default_rng(plan.seeds[2 * image_no - 1])
        background = None
        if settings.backgrounds:
            from microcalcai.phantom.background import load_background

            path = settings.backgrounds[
                (index * len(plan.exposures) + image_no - 1) % len(settings.backgrounds)
            ]
            background, breast = load_background(
                path, spacing_mm=settings.background_spacing_mm, rng=image_rng
            )
            side, view_name = breast.laterality, breast.view
        else:
            breast = make_breast(
                image_rng,
                spacing_mm=settings.spacing_mm,
                view=view_name,
                laterality=side,
                field_shape=None if spot is None else (spot, spot),
                size=plan.sizes[side],
            )
        placements, taken = [], []
        for f in shown:
            geom = plan.geometries[f.finding_id]
            if spot is not None:
                x = y = (spot - 1) / 2.0
                angle = breast.nipple_direction(x, y) + image_rng.normal(0, 0.2)
                dx, dy = _centre_cluster(geom, angle, breast.spacing_mm)
                x, y = x - dx, y - dy
            else:
                x, y = _place(
                    breast,
                    geom.extent_mm,
                    image_rng,
                    taken,
                    nipple_mm.get(f.finding_id),
                    edge_px=settings.roi_size // 2,
                )
                nipple_mm.setdefault(
                    f.finding_id,
                    math.hypot(x - breast.nipple_xy[0], y - breast.nipple_xy[1]) * breast.spacing_mm,
                )
                angle = breast.nipple_direction(x, y) + image_rng.normal(0, 0.2)
            taken.append((x, y, geom.extent_mm))
            placements.append(Placement(f.finding_id, geom, x, y, angle))
        detector = settings.detector(breast.spacing_mm)
        if background is not None:
            from microcalcai.phantom.background import insert_findings

            view = insert_findings(background, breast, placements, detector, image_rng)
        else:
            view = synthesize_view(
                breast, placements, image_rng, density=plan.density, beta=plan.beta, detector=detector
            )
        image_id = f"{plan.patient_id}-{side}{view_name}{suffix}" + (
            f"-{image_no}" if background is not None else ""
        )
        meta = dict(
            patient_id=plan.patient_id,
            study_id=plan.study_id,
            study_date=plan.study_date,
            image_id=image_id,
            laterality=side,
            view=view_name,
            instance=image_no,
            chest_wall=breast.chest_wall,
            density=plan.density,
            beta=plan.beta,
            thickness=breast.thickness_mm,
            spacing_mm=breast.spacing_mm,
            background=None if background is None else str(background.source_path),
        )
        common, new_rows, new_particles = _write_exposure(
            out, settings, meta, view, placements, {f.finding_id: f for f in shown}
        )
        rows += new_rows
        particle_rows += new_particles
        if settings.negatives:
            boxes = [p.box for parts in view.particles.values() for p in parts if p.box is not None]
            centres = _negative_centres(
                view.labels, breast, settings.roi_size, settings.negatives_per_image, negative_rng, boxes
            )
            display = _display_image(view, breast.spacing_mm)
            for k, (x, y) in enumerate(centres):
                roi_id = f"{image_id}-N{k + 1}"
                rows.append(
                    dict(
                        common,
                        roi_x=x,
                        roi_y=y,
                        label="benign",
                        finding="normal",
                        morphology="",
                        distribution="",
                        birads="1",
                        p_malignant=0.0,
                        finding_id=0,
                        roi_id=roi_id,
                        n_calcifications=0,
                        **_write_roi(out, roi_id, display, (x, y), settings),
                    )
                )
    return rows, particle_rows


def _common(meta: dict, settings: PhantomSettings) -> dict:
    image_id = meta["image_id"]
    return dict(
        patient_id=meta["patient_id"],
        image_path=f"images/{meta['patient_id']}/{image_id}.dcm",
        study_id=meta["study_id"],
        image_id=image_id,
        roi_size=settings.roi_size,
        view=meta["view"],
        laterality=meta["laterality"],
        study_date=meta["study_date"].isoformat(),
        mask_path=f"masks/{image_id}.png",
        spacing_mm=meta["spacing_mm"],
        density=round(meta["density"], 4),
        beta=round(meta["beta"], 4),
        breast_thickness_mm=round(meta["thickness"], 2),
        background=meta["background"] or "",
    )


def _write_exposure(
    out: Path,
    settings: PhantomSettings,
    meta: dict,
    view: SyntheticView,
    placements: list[Placement],
    findings: dict[int, Finding],
):
    """Write the image, its mask and its finding ROIs; returns (the image's manifest columns,
    manifest rows, particle rows)."""
    common = _common(meta, settings)
    common.update(_write_view(out, common["image_path"], view, meta, settings, meta["spacing_mm"]))
    _write(out / common["mask_path"], _png_bytes(view.labels, sparse=True))
    display = _display_image(view, meta["spacing_mm"])
    rows, particle_rows = [], []
    for placement in placements:
        centre = _finding_roi_centre(view, placement, settings.roi_size)
        if centre is None:
            continue
        f = findings[placement.finding_id]
        roi_id = f"{meta['image_id']}-F{f.finding_id}"
        rows.append(
            dict(
                common,
                roi_x=centre[0],
                roi_y=centre[1],
                label="malignant" if f.label else "benign",
                finding="calcification",
                morphology=f.morphology,
                distribution=f.distribution,
                birads=malignancy.birads_category(f.morphology, f.distribution),
                p_malignant=round(f.p_malignant, 6),
                finding_id=f.finding_id,
                roi_id=roi_id,
                n_calcifications=len(view.particles[f.finding_id]),
                **_write_roi(out, roi_id, display, centre, settings),
            )
        )
        for part in view.particles[f.finding_id]:
            particle_rows.append(
                dict(
                    image_id=meta["image_id"],
                    finding_id=f.finding_id,
                    roi_id=roi_id,
                    morphology=f.morphology,
                    x=round(part.x, 2),
                    y=round(part.y, 2),
                    size_mm=round(part.size_mm, 4),
                    width_mm=round(part.width_mm, 4),
                    density=round(part.density, 3),
                    mask_pixels=part.pixels,
                )
            )
    return common, rows, particle_rows


def _write_roi(out: Path, roi_id: str, display, centre, settings: PhantomSettings) -> dict:
    from microcalcai.roi import crop_roi

    patch = crop_roi(display, centre, size_px=settings.roi_size).pixels
    rel = f"rois/{roi_id}.npy"
    _write(out / rel, _npy_bytes(patch))
    files = {"roi_path": rel}
    if settings.roi_png:
        rel_png = f"rois/{roi_id}.png"
        _write(out / rel_png, _png_bytes((patch * 255 + 0.5).astype(np.uint8)))
        files["roi_png_path"] = rel_png
    return files


@contextlib.contextmanager
def _single_threaded_opencv():
    """One OpenCV thread (resampling, blur) while a data set is generated: the parallelism is
    whole patients in worker processes, so N workers use N cores instead of N thread pools
    competing for them (and on a shared machine a second thread mostly spins: measured 25% more
    wall time with two threads and one worker under load). Set in the parent before any fork: a
    forked child that reconfigures a thread pool its parent had started hangs."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="patient", desc="synth", disable=not enabled, mininterval=1.0)


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    patients: int,
    seed: int,
    spacing_mm: float = 0.07,
    roi_size: int = 512,
    backgrounds: Sequence[str | os.PathLike] | None = None,
    negatives: bool = False,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    **options,
) -> SynthResult:
    """Generate a synthetic calcification data set in `out_dir` (built aside, moved in when complete).

    Options are the fields of `PhantomSettings` (views, bilateral, findings_per_breast,
    full_field, field_size, bits_stored, beta, density, morphologies, write_png, roi_png, ...).
    Fast small mode for tests: full_field=False, a small roi_size (64-128) and a coarser
    spacing_mm (0.1-0.2), views=("CC",), bilateral=False.
    """
    known = {f.name for f in fields(PhantomSettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown phantom option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    settings = PhantomSettings(
        patients=patients,
        seed=seed,
        spacing_mm=spacing_mm,
        roi_size=roi_size,
        negatives=negatives,
        backgrounds=[str(Path(b)) for b in backgrounds] if backgrounds else None,
        **options,
    ).validate()
    worker = make_patient
    if workers < 1:
        raise InputError(f"workers={workers} must be at least 1")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        rows, particles = [], []
        with (
            _progress(settings.patients, progress) as bar,
            _single_threaded_opencv(),
            contextlib.ExitStack() as stack,
        ):
            if workers == 1:
                results = (worker(settings, i, tmp) for i in range(settings.patients))
            else:
                pool = stack.enter_context(ProcessPoolExecutor(max_workers=min(workers, settings.patients)))
                futures = [pool.submit(worker, settings, i, tmp) for i in range(settings.patients)]
                results = (future.result() for future in futures)
            for r, p in results:
                rows += r
                particles += p
                bar.update(1)
        summary = _summary(settings, rows)
        _write_tables(tmp, rows, particles, summary)
    result = SynthResult(
        out_dir,
        out_dir / MANIFEST_NAME,
        out_dir / SETTINGS_NAME,
        rows,
        summary["bayes_auc"]["expected"],
        summary["bayes_auc"]["drawn_rois"],
    )
    log.info(
        "wrote %d ROIs of %d patients to %s (Bayes-optimal AUC: expected %.3f, drawn %s)",
        len(rows),
        settings.patients,
        out_dir,
        result.bayes_auc_expected,
        "n/a" if result.bayes_auc_drawn is None else f"{result.bayes_auc_drawn:.3f}",
    )
    return result


def _summary(settings: PhantomSettings, rows: list[dict]) -> dict:
    calc = [r for r in rows if r["finding"] == "calcification"]
    labels = [int(r["label"] == "malignant") for r in calc]
    probs = [r["p_malignant"] for r in calc]
    per_finding = {(r["patient_id"], r["finding_id"]): r for r in calc}
    f_labels = [int(r["label"] == "malignant") for r in per_finding.values()]
    f_probs = [r["p_malignant"] for r in per_finding.values()]
    from microcalcai import __version__

    return {
        "generator": "microcalcai.phantom",
        "version": __version__,
        "settings": settings.as_json(),
        "bayes_auc": {
            "expected": malignancy.expected_bayes_auc(settings.morphologies),
            "drawn_rois": malignancy.empirical_auc(labels, probs),
            "drawn_findings": malignancy.empirical_auc(f_labels, f_probs),
            "note": "AUC of the true P(malignant) as scores: the best any classifier can expect",
        },
        "prevalence": {
            "expected": malignancy.expected_prevalence(settings.morphologies),
            "drawn_rois": float(np.mean(labels)) if labels else None,
        },
        "counts": {
            "patients": settings.patients,
            "rois": len(rows),
            "calcification_rois": len(calc),
            "findings": len(per_finding),
            "malignant_rois": int(sum(labels)),
            "negative_rois": len(rows) - len(calc),
        },
        "probability_table": malignancy.cell_table(settings.morphologies),
        "sources": "docs/phantom.md",
    }


def _write_tables(out: Path, rows: list[dict], particles: list[dict], summary: dict) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    from microcalcai.data.manifest import write_manifest

    write_manifest(frame, out / MANIFEST_NAME, base_dir=out)
    atomic_write_text(out / PARTICLES_NAME, pd.DataFrame(particles).to_csv(index=False, lineterminator="\n"))
    atomic_write_text(out / SETTINGS_NAME, json.dumps(summary, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")

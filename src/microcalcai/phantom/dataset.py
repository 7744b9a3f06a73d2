"""Generate a synthetic data set: DICOM MG images, masks, ROI crops, manifest.csv and phantom.json.

A patient has a study date spread over `study_years`, CC and MLO views of one breast or both, and
one or more calcification findings in one breast; each finding appears in both views of that
breast at about the same distance from the nipple, as in real two-view mammography, so ROIs of one
patient are correlated and patient-level splits matter.

This module runs it: `generate_dataset` over patients (in worker processes if asked), `make_patient`
for one. The parts: settings.py (what determines a data set), plan.py (a patient drawn from her
seed), placement.py (where findings and ROIs go), scene.py (the pixels), writer.py (the files).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np

from microcalcai.atomic import atomic_dir
from microcalcai.errors import InputError
from microcalcai.phantom.anatomy import make_breast
from microcalcai.phantom.parallel import results_in_order
from microcalcai.phantom.placement import cluster_offset, negative_centres, place_finding
from microcalcai.phantom.plan import Finding, PatientPlan, plan_patient
from microcalcai.phantom.scene import Placement, synthesize_view
from microcalcai.phantom.settings import (
    DENSITY_CATEGORIES,
    MANIFEST_NAME,
    PARTICLES_NAME,
    SETTINGS_NAME,
    VIEWS,
    PhantomSettings,
    SynthResult,
)
from microcalcai.phantom.writer import dataset_summary, display_image, write_exposure, write_roi, write_tables

# The names this module offered before it was split (settings, plan, placement, writer).
__all__ = [
    "DENSITY_CATEGORIES",
    "MANIFEST_NAME",
    "PARTICLES_NAME",
    "SETTINGS_NAME",
    "VIEWS",
    "Finding",
    "PatientPlan",
    "PhantomSettings",
    "SynthResult",
    "generate_dataset",
    "make_patient",
    "plan_patient",
]

log = logging.getLogger(__name__)


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
                dx, dy = cluster_offset(geom, angle, breast.spacing_mm)
                x, y = x - dx, y - dy
            else:
                x, y = place_finding(
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
        common, new_rows, new_particles = write_exposure(
            out, settings, meta, view, placements, {f.finding_id: f for f in shown}
        )
        rows += new_rows
        particle_rows += new_particles
        if settings.negatives:
            boxes = [p.box for parts in view.particles.values() for p in parts if p.box is not None]
            centres = negative_centres(
                view.labels, breast, settings.roi_size, settings.negatives_per_image, negative_rng, boxes
            )
            display = display_image(view, breast.spacing_mm)
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
                        **write_roi(out, roi_id, display, (x, y), settings),
                    )
                )
    return rows, particle_rows


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
            results = results_in_order(stack, worker, settings, settings.patients, tmp, workers)
            for r, p in results:
                rows += r
                particles += p
                bar.update(1)
        summary = dataset_summary(settings, rows)
        write_tables(tmp, rows, particles, summary)
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

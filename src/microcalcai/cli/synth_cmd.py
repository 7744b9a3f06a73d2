"""`microcalcai synth`: generate a synthetic mammography data set with known ground truth."""

from __future__ import annotations

import argparse
import math

from microcalcai.cli.argtypes import positive


def _range(text: str) -> tuple[int, int]:
    parts = text.split(",") if "," in text else [text, text]
    try:
        lo, hi = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be N or MIN,MAX (whole numbers)") from None
    return lo, hi


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate synthetic mammograms with calcifications, masks, ROIs and a manifest",
        description="Generate a synthetic data set: DICOM MG mammograms (CC/MLO, left/right) with BI-RADS "
        "calcification clusters, per-image masks, ROI crops, manifest.csv and phantom.json (the "
        "settings, the malignancy table and the Bayes-optimal AUC). Deterministic for a seed.",
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--patients", type=positive(int), required=True, help="number of patients")
    parser.add_argument("--seed", type=int, required=True, help="random seed (same seed, same bytes)")
    parser.add_argument(
        "--spacing-mm", type=positive(float), default=0.07, help="pixel spacing (default 0.07)"
    )
    parser.add_argument(
        "--roi-size", type=positive(int), default=512, help="ROI side in pixels (default 512)"
    )
    parser.add_argument(
        "--background",
        action="append",
        metavar="FILE",
        default=None,
        help="insert the calcifications into this real mammogram instead (repeatable)",
    )
    parser.add_argument(
        "--background-spacing-mm",
        type=positive(float),
        default=None,
        help="pixel spacing of background files that do not state one",
    )
    parser.add_argument(
        "--negatives",
        type=int,
        default=0,
        metavar="N",
        help="also write N ROIs without calcification per image (default 0)",
    )
    parser.add_argument("--views", default="CC,MLO", help="views per breast: CC, MLO or CC,MLO (default)")
    parser.add_argument("--one-breast", action="store_true", help="image only the breast with findings")
    parser.add_argument(
        "--findings",
        type=_range,
        default=(1, 2),
        metavar="MIN,MAX",
        help="calcification findings per affected breast (default 1,2)",
    )
    parser.add_argument(
        "--spot",
        action="store_true",
        help="small spot fields of tissue around each finding instead of full fields (fast)",
    )
    parser.add_argument(
        "--field-size",
        type=positive(int),
        default=None,
        help="side of a spot field in pixels, at least the ROI size (default 1.5 x ROI size)",
    )
    parser.add_argument("--bits", type=int, default=14, help="bits stored, 8 to 16 (default 14)")
    parser.add_argument(
        "--beta",
        type=float,
        default=None,
        help="parenchymal spectral exponent (default: drawn per patient from 2.6..3.4)",
    )
    parser.add_argument(
        "--density",
        type=float,
        default=None,
        help="glandular fraction 0..1 (default: drawn from BI-RADS density categories)",
    )
    parser.add_argument(
        "--morphologies",
        default=None,
        help="comma-separated morphologies to use (default: all, at their default weights)",
    )
    parser.add_argument("--png", action="store_true", help="also write each mammogram as a 16-bit PNG")
    parser.add_argument("--roi-png", action="store_true", help="also write each ROI as an 8-bit PNG")
    parser.add_argument(
        "--workers",
        type=positive(int),
        default=1,
        help="worker processes, each making whole patients (default 1; for full-field sets, one per core)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    _register_exams(subparsers)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction within 0..1")
    return value


def _register_exams(subparsers) -> None:
    from microcalcai.phantom.exam import BILATERAL_FRACTION, IMAGE_PREVALENCE

    parser = subparsers.add_parser(
        "synth-exams",
        help="generate synthetic four-view exams with breast arterial calcification (BAC)",
        description="Generate four-view screening exams (L/R x CC/MLO) as DICOM MG, some breasts with "
        "calcified arteries (tram-line calcified walls, seen in both views of the breast), with "
        "vessel masks, a whole-image manifest.csv (label: malignant = BAC present; bac, exam_bac "
        "columns) and phantom.json. Deterministic for a seed. See docs/phantom.md.",
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--exams", type=positive(int), required=True, help="number of exams (women)")
    parser.add_argument("--seed", type=int, required=True, help="random seed (same seed, same bytes)")
    parser.add_argument(
        "--spacing-mm",
        type=positive(float),
        default=0.2,
        help="pixel spacing of the whole views (default 0.2: 1200 x 900 pixels; 0.4 is the fast test size)",
    )
    parser.add_argument(
        "--prevalence",
        type=_fraction,
        default=IMAGE_PREVALENCE,
        help=f"share of breasts (= images) with BAC (default {IMAGE_PREVALENCE:.3f}, Mobini et al. 2024)",
    )
    parser.add_argument(
        "--bilateral",
        type=_fraction,
        default=BILATERAL_FRACTION,
        help=f"share of BAC-positive women with BAC in both breasts (default {BILATERAL_FRACTION})",
    )
    parser.add_argument(
        "--arteries",
        type=_range,
        default=(1, 3),
        metavar="MIN,MAX",
        help="calcified arteries per BAC-positive breast (default 1,3)",
    )
    parser.add_argument("--bits", type=int, default=14, help="bits stored, 8 to 16 (default 14)")
    parser.add_argument("--png", action="store_true", help="also write each view as an 8-bit PNG")
    parser.add_argument("--workers", type=positive(int), default=1, help="worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_exams)


def run_exams(args: argparse.Namespace) -> int:
    from microcalcai.phantom.exam import generate_exams

    result = generate_exams(
        args.out,
        exams=args.exams,
        seed=args.seed,
        spacing_mm=args.spacing_mm,
        prevalence=args.prevalence,
        bilateral_fraction=args.bilateral,
        arteries_per_breast=args.arteries,
        bits_stored=args.bits,
        write_png=args.png,
        workers=args.workers,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    counts, prevalence = result.summary["counts"], result.summary["prevalence"]
    print(
        f"{result.manifest_path}: {counts['images']} images of {counts['exams']} exams; BAC in "
        f"{counts['bac_images']} images ({prevalence['images_drawn']:.1%}, expected "
        f"{prevalence['images_expected']:.1%}) and {counts['bac_exams']} exams "
        f"({prevalence['exams_drawn']:.1%}, expected {prevalence['exams_expected']:.1%})"
    )
    print("Bayes-optimal AUC: 1 (BAC present exactly where a calcified artery is drawn; see phantom.json)")
    return 0


def run(args: argparse.Namespace) -> int:
    import json

    from microcalcai.phantom import generate_dataset

    views = tuple(v.strip().upper() for v in args.views.split(",") if v.strip())
    morphologies = [m.strip() for m in args.morphologies.split(",")] if args.morphologies else None
    result = generate_dataset(
        args.out,
        patients=args.patients,
        seed=args.seed,
        spacing_mm=args.spacing_mm,
        roi_size=args.roi_size,
        backgrounds=args.background,
        background_spacing_mm=args.background_spacing_mm,
        negatives=args.negatives > 0,
        negatives_per_image=max(args.negatives, 0),
        views=views,
        bilateral=not args.one_breast,
        findings_per_breast=args.findings,
        full_field=not args.spot,
        field_size=args.field_size,
        bits_stored=args.bits,
        beta=args.beta,
        density=args.density,
        morphologies=morphologies,
        write_png=args.png,
        roi_png=args.roi_png,
        workers=args.workers,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    summary = json.loads(result.settings_path.read_text())
    counts = summary["counts"]
    auc = summary["bayes_auc"]
    drawn = "n/a (one class)" if auc["drawn_rois"] is None else f"{auc['drawn_rois']:.3f}"
    print(
        f"{result.manifest_path}: {counts['rois']} ROIs ({counts['calcification_rois']} calcification, "
        f"{counts['malignant_rois']} malignant, {counts['negative_rois']} normal) "
        f"from {counts['patients']} patients"
    )
    print(f"Bayes-optimal AUC: expected {auc['expected']:.3f}, on the drawn labels {drawn}")
    return 0

"""`microcalcai import FORMAT SRC --out DIR`: a public data set (or a folder of crops) -> manifest.csv.

Writes DIR/manifest.csv atomically, DIR/skipped.csv (every source row not imported, and why) and
prints a summary: ROIs per finding and label, rows skipped grouped by reason. With --crops N or
--crops-mm MM it also cuts every ROI into DIR/crops/<label>/<patient>/ (the folder-per-class
layout) with its own manifest.csv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The crop command's positive-number argument type (standard library only, like this module).
from microcalcai.cli.argtypes import positive

FORMATS = {
    "cbis-ddsm": "CBIS-DDSM: calc/mass_case_description_*_set.csv and the DICOM tree with ROI masks",
    "inbreast": "INbreast: AllDICOMs/, AllXML/ (ROI point lists) and INbreast.csv (BI-RADS)",
    "mias": "mini-MIAS: Info.txt and the mdb*.pgm images",
    "cmmd": "CMMD: CMMD_clinicaldata_revision.xlsx and the DICOM tree (whole images only: --whole-image)",
    "folder": "ROI crops in benign/ and malignant/ folders (the layout of Kang et al.)",
    "manifest": "an existing manifest.csv (SRC is the file): validate it, then split, preview or cut crops",
}


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1)")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src",
        metavar="SRC",
        type=Path,
        help="folder holding the data set as distributed (a file for `manifest`)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="output folder; DIR/manifest.csv and DIR/skipped.csv are written there",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DIR/manifest.csv")
    parser.add_argument(
        "--finding",
        metavar="F[,F...]",
        help="keep only these findings (e.g. calcification); the others are reported as skipped",
    )
    group = parser.add_argument_group("splits (patient-level: no patient in two splits)")
    group.add_argument(
        "--split",
        choices=("keep", "patient", "temporal"),
        default="keep",
        help="keep: the data set's own split if any (CBIS-DDSM train/test); patient: random "
        "by patient, stratified by label; temporal: test = patients with studies in the "
        "last --test-years years",
    )
    group.add_argument("--val", type=_fraction, default=0.15, help="fraction of patients for validation")
    group.add_argument(
        "--test", type=_fraction, default=0.15, help="fraction of patients for test (--split patient)"
    )
    group.add_argument(
        "--test-years", type=float, default=2.0, help="--split temporal: years at the end for test"
    )
    group.add_argument(
        "--test-after",
        metavar="YYYY-MM-DD",
        help="--split temporal: test = patients with a study after this date (instead of --test-years)",
    )
    group.add_argument("--seed", type=int, default=0, help="random seed of the split")
    group.add_argument("--no-stratify", action="store_true", help="do not stratify the split by label")
    parser.add_argument(
        "--preview",
        action="store_true",
        help="also draw DIR/preview.png: a few ROIs per label cut from their images, to check by eye",
    )
    crops = parser.add_argument_group(
        "ROI crops in the folder-per-class layout (DIR/crops/<label>/<patient>/)"
    )
    crops.add_argument("--crops", type=positive(int), metavar="N", help="also cut each ROI as an N-pixel PNG")
    crops.add_argument(
        "--crops-mm",
        type=positive(float),
        metavar="MM",
        help="also cut each ROI as MM millimetres (resampled to --crops-spacing-mm)",
    )
    crops.add_argument(
        "--crops-spacing-mm",
        type=positive(float),
        metavar="S",
        help="pixel spacing of the crops in mm (default: the image's)",
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="turn a public data set or a folder of ROI crops into a manifest.csv",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `microcalcai import FORMAT --help` for the options of one format.",
    )
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    sub = {name: formats.add_parser(name, help=text, description=text) for name, text in FORMATS.items()}
    for p in sub.values():
        _common(p)
        p.set_defaults(func=run)
    sub["cbis-ddsm"].add_argument(
        "--csv",
        action="append",
        type=Path,
        metavar="CSV",
        help="case-description CSV to read (repeatable; default: all found in SRC)",
    )
    sub["inbreast"].add_argument("--table", type=Path, help="INbreast.csv (default: found in SRC)")
    sub["inbreast"].add_argument(
        "--roi-names",
        default="Calcification,Cluster",
        help="ROI names to import from the XML files (default: %(default)s)",
    )
    sub["inbreast"].add_argument(
        "--malignant-from", default="4a", help="lowest BI-RADS counted malignant (default: %(default)s)"
    )
    sub["mias"].add_argument("--info", type=Path, help="Info.txt (default: found in SRC)")
    sub["cmmd"].add_argument(
        "--table", type=Path, help="CMMD_clinicaldata_revision.xlsx or .csv (default: found in SRC)"
    )
    sub["cmmd"].add_argument(
        "--whole-image",
        action="store_true",
        help="import one row per image standing for the whole image (CMMD has no ROI "
        "coordinates; without this flag the import refuses)",
    )
    sub["folder"].add_argument(
        "--label-finding",
        default="calcification",
        dest="folder_finding",
        help="finding written for every crop (default: %(default)s)",
    )
    sub["folder"].add_argument(
        "--patient-pattern",
        metavar="REGEX",
        help="regular expression whose first group (or match) in a file name is the patient",
    )


def _import(args):
    if args.format == "manifest":
        from microcalcai.data.manifest import read_manifest
        from microcalcai.data.report import ImportReport

        report = ImportReport("manifest", args.src)
        report.rows = read_manifest(args.src).to_dict("records")
        return report
    if args.format == "cbis-ddsm":
        from microcalcai.data.importers.cbis_ddsm import import_cbis_ddsm

        return import_cbis_ddsm(args.src, csv_files=args.csv)
    if args.format == "inbreast":
        from microcalcai.data.importers.inbreast import import_inbreast

        names = tuple(n.strip() for n in args.roi_names.split(",") if n.strip())
        return import_inbreast(
            args.src, table=args.table, roi_names=names, malignant_from=args.malignant_from
        )
    if args.format == "mias":
        from microcalcai.data.importers.mias import import_mias

        return import_mias(args.src, info=args.info)
    if args.format == "cmmd":
        from microcalcai.data.importers.cmmd import import_cmmd

        return import_cmmd(args.src, table=args.table, whole_image=args.whole_image)
    from microcalcai.data.folder import import_folder

    return import_folder(args.src, finding=args.folder_finding, patient_pattern=args.patient_pattern)


def _apply_split(frame, args):
    from microcalcai.data import splits

    stratify = not args.no_stratify
    if args.split == "patient":
        return splits.patient_split(frame, val=args.val, test=args.test, seed=args.seed, stratify=stratify)
    if args.split == "temporal":
        return splits.temporal_split(
            frame,
            test_years=args.test_years,
            test_after=args.test_after,
            val=args.val,
            seed=args.seed,
            stratify=stratify,
        )
    return frame


def _holds_images_of(folder, frame) -> bool:
    """Whether the new manifest reads images from `folder` (crops imported back, say)."""
    from pathlib import Path

    inside = Path(folder).resolve()
    return any(inside in Path(path).resolve().parents for path in frame["image_path"].astype(str))


def run(args) -> int:
    from microcalcai.atomic import atomic_write_text
    from microcalcai.data.manifest import write_manifest
    from microcalcai.errors import InputError

    out = args.out
    manifest = out / "manifest.csv"
    if manifest.exists() and not args.overwrite:
        raise InputError(f"{manifest} already exists; pass --overwrite to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    if (args.crops or args.crops_mm) and (out / "crops").exists() and not args.overwrite:
        raise InputError(
            f"{out / 'crops'} already exists; pass --overwrite to replace it or choose another --out"
        )
    report = _import(args)
    if args.finding:
        report.keep_findings([f for f in args.finding.split(",") if f.strip()])
    summary = report.summary()
    if not report.rows:
        raise InputError(f"nothing to import from {args.src}: every row was skipped\n{summary}")
    frame = _apply_split(report.manifest_rows(), args)
    if "split" in frame.columns and frame["split"].notna().any():
        counts = frame.groupby("split")["patient_id"].agg(["size", "nunique"])
        summary += "\nsplit (ROIs / patients): " + ", ".join(
            f"{name} {row['size']} / {row['nunique']}" for name, row in counts.iterrows()
        )
    write_manifest(frame, manifest)
    atomic_write_text(out / "skipped.csv", report.skipped_frame().to_csv(index=False, lineterminator="\n"))
    atomic_write_text(out / "import-summary.txt", summary + "\n")
    print(summary)
    print(f"wrote {manifest} ({len(frame)} rows); skipped rows listed in {out / 'skipped.csv'}")
    if args.overwrite:  # the earlier import's preview and crops showed the manifest just replaced
        import shutil

        for stale, made_again in (
            (out / "preview.png", args.preview),
            (out / "crops", args.crops or args.crops_mm),
        ):
            if stale.exists() and not made_again and not _holds_images_of(stale, frame):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
                print(f"removed {stale}: it belonged to the manifest this import replaced")
    if args.preview:
        from microcalcai.data.manifest import read_manifest
        from microcalcai.data.preview import write_preview

        print(f"wrote {write_preview(read_manifest(manifest), out / 'preview.png', seed=args.seed)}")
    if args.crops or args.crops_mm:
        from microcalcai.data.folder import export_crops
        from microcalcai.data.manifest import read_manifest

        crops = export_crops(
            read_manifest(manifest),
            out / "crops",
            size_px=args.crops,
            size_mm=args.crops_mm,
            spacing_mm=args.crops_spacing_mm,
            overwrite=args.overwrite,
        )
        print(crops.summary())
        print(f"wrote {len(crops.rows)} crops and their manifest.csv under {out / 'crops'}")
    sys.stdout.flush()
    return 0

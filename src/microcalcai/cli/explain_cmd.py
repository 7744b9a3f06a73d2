"""`microcalcai explain`: saliency maps (Grad-CAM family) for ROIs of mammograms.

One image:  microcalcai explain --model MODEL_OR_ENSEMBLE --image FILE --roi X,Y[,SIZE] [--roi ...] --out DIR
A manifest: microcalcai explain --model MODEL_OR_ENSEMBLE --manifest manifest.csv --out DIR

X,Y is the ROI centre in the image's stored pixels (X = column, Y = row, from the top-left);
SIZE its side in pixels (default: the crop size the model was trained on). Per ROI the folder gets
NAME.nrrd and NAME.npy (float map 0..1 with the crop's geometry on the source grid),
NAME_overlay.png, NAME_context.png (the map on the whole mammogram) and, for an ensemble,
NAME_members.png; summary.csv, saliency.json and montage.png cover all ROIs. With a manifest that
has mask_path (the phantom's), each ROI is also scored by the pointing game and the share of
saliency inside the calcification mask.

With --dicom-out DIR, each ROI of a DICOM image also gets a DICOM SR (TID 1500) and the map as
a fractional DICOM Segmentation over the mammogram, in DIR/<image file stem>/
(docs/dicom-out.md); ROIs of images that cannot be referenced are listed with the reason, and
the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from microcalcai.cli.argtypes import add_model_argument


def _roi(text: str) -> tuple[float, float, int | None]:
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
        size = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected X,Y or X,Y,SIZE (column,row in stored pixels, side in whole pixels), got {text!r}"
        ) from None
    if size is not None and size < 8:
        raise argparse.ArgumentTypeError(f"the ROI side must be at least 8 pixels, got {size}")
    return x, y, size


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="saliency maps (Grad-CAM family) for ROIs of a mammogram or of a manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--image", type=Path, metavar="FILE", help="a mammogram (DICOM, PNG, TIFF, PGM, NRRD)"
    )
    source.add_argument("--manifest", type=Path, metavar="CSV", help="explain every ROI of a manifest")
    parser.add_argument(
        "--roi",
        type=_roi,
        action="append",
        metavar="X,Y[,SIZE]",
        help="ROI centre (and side in pixels) on --image; repeat for several ROIs",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the outputs")
    parser.add_argument(
        "--method",
        default="gradcam",
        metavar="NAME",
        help="saliency method (default gradcam; docs/explain.md lists them, and an "
        "unknown name is answered with the list)",
    )
    parser.add_argument(
        "--target",
        default="malignant",
        choices=("malignant", "predicted", "benign"),
        help="class to explain: malignant (default), the predicted class, or benign",
    )
    parser.add_argument(
        "--layer",
        metavar="NAME",
        help="target layer (dotted module name, e.g. layer4); "
        "default: the architecture's last convolutional block",
    )
    parser.add_argument("--split", metavar="NAME", help="with --manifest: only rows of this split")
    parser.add_argument("--limit", type=int, metavar="N", help="with --manifest: only the first N rows")
    parser.add_argument(
        "--nrrd-units",
        default="pixel",
        choices=("pixel", "mm"),
        help="NRRD geometry in source pixels (default, as the server answers) or in mm",
    )
    parser.add_argument(
        "--dicom-out",
        type=Path,
        metavar="DIR",
        help="also write a DICOM SR and a saliency Segmentation per ROI into this folder",
    )
    parser.add_argument("--no-context", action="store_true", help="skip the whole-mammogram figure per ROI")
    parser.add_argument("--device", default=None, metavar="cpu|cuda", help="default: a GPU when there is one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from microcalcai.errors import InputError
    from microcalcai.explain.batch import RoiRequest, explain_requests, requests_from_manifest, safe_name
    from microcalcai.explain.methods import get_method
    from microcalcai.models.predictor import demonstration_note, load_predictor
    from microcalcai.train.predictions import crop_settings

    spec = get_method(args.method)  # before the seconds it takes to load a model
    if args.image is not None and not args.roi:
        raise InputError("--image needs at least one --roi X,Y[,SIZE] (the ROI centre in stored pixels)")
    if args.manifest is not None and args.roi:
        raise InputError("--roi goes with --image; a manifest gives its own ROIs (roi_x, roi_y, roi_size)")
    if args.image is not None and not args.image.is_file():
        raise InputError(f"image {args.image} does not exist")
    predictor = load_predictor(args.model, device=args.device)
    note = demonstration_note(predictor)
    if note:
        print(note, file=sys.stderr)
    default_size = int(crop_settings(predictor)["roi_size"])
    if args.image is not None:
        requests = [
            RoiRequest(
                safe_name(f"roi_x{x:g}_y{y:g}_s{size or default_size}"),
                args.image.absolute(),
                (x, y),
                size or default_size,
            )
            for x, y, size in args.roi
        ]
    else:
        requests = requests_from_manifest(_manifest_rows(args), default_size)
    rows = explain_requests(
        predictor,
        requests,
        args.out,
        method=spec.name,
        target=args.target,
        layer=args.layer,
        nrrd_units=args.nrrd_units,
        context=not args.no_context,
        progress=not args.no_progress,
        dicom_out=args.dicom_out,
    )
    for row in rows[:10]:
        print(
            f"{row['name']}: P(malignant) = {row['probability']:.3f}, {spec.title} for {row['explained']} "
            f"-> {args.out / row['file_overlay']}"
        )
    if len(rows) > 10:
        print(f"... and {len(rows) - 10} more (summary.csv)")
    scored = [r for r in rows if r["pointing_hit"] != ""]
    if scored:
        hits = sum(r["pointing_hit"] for r in scored) / len(scored)
        energy = sum(r["energy_in_mask"] for r in scored) / len(scored)
        area = sum(r["mask_area_share"] for r in scored) / len(scored)
        print(
            f"localisation on {len(scored)} ROI(s) with masks: pointing game {hits:.2f}, "
            f"saliency in mask {energy:.3f} (mask area {area:.3f})"
        )
    if args.dicom_out is not None:
        failed = [r for r in rows if r.get("dicom_error")]
        for row in failed:
            print(f"no DICOM results for {row['name']}: {row['dicom_error']}", file=sys.stderr)
        print(f"{len(rows) - len(failed)} ROI(s) as DICOM SR + Segmentation -> {args.dicom_out}")
        return 1 if failed else 0
    return 0


def _manifest_rows(args):
    from microcalcai.data.manifest import read_manifest
    from microcalcai.errors import InputError

    frame = read_manifest(args.manifest, require_label=False)
    if args.split:
        if "split" not in frame.columns:
            raise InputError(
                f"manifest {args.manifest} has no split column, so --split {args.split} selects nothing"
            )
        frame = frame[frame["split"].astype(str) == args.split]
        if frame.empty:
            raise InputError(f"manifest {args.manifest} has no rows with split {args.split!r}")
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit must be at least 1, got {args.limit}")
        frame = frame.head(args.limit)
    return frame

"""`microcalcai crop FILE --center X,Y --size N [--size-mm MM --spacing-mm S] --out OUT.npy|OUT.png`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from microcalcai.cli.argtypes import positive

PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")  # microcalcai.roi.PAD_MODES


def _center(text: str) -> tuple[float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        x, y = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected X,Y (column,row in stored pixels), got {text!r}"
        ) from None
    return x, y


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crop",
        help="cut a square ROI around a point of a mammogram into a .npy or .png",
        description="Cut a square ROI centred at X,Y (stored pixel coordinates: X = column, Y = row, from "
        "the top-left of the image as stored, no display flip) from a mammogram. The .npy is float32 of "
        "shape (N, N), values 0..1, higher = denser; a .png is 16-bit grey. Sizes: --size N pixels "
        "(no resampling); or --size-mm MM, resampled to --spacing-mm S (default: the image's spacing); "
        "both --size and --size-mm give N pixels covering MM millimetres.",
    )
    parser.add_argument("file", metavar="FILE", help="the mammogram (DICOM, PNG, TIFF, PGM or NRRD)")
    parser.add_argument(
        "--center",
        required=True,
        type=_center,
        metavar="X,Y",
        help="ROI centre in stored pixels: X = column, Y = row from the top-left",
    )
    parser.add_argument("--size", type=positive(int), metavar="N", help="ROI side in pixels")
    parser.add_argument("--size-mm", type=positive(float), metavar="MM", help="ROI side in millimetres")
    parser.add_argument(
        "--spacing-mm",
        type=positive(float),
        metavar="S",
        help="pixel spacing of the output in mm (with --size-mm; default the image's)",
    )
    parser.add_argument(
        "--image-spacing-mm",
        type=positive(float),
        metavar="S",
        help="the image's pixel spacing in mm, used only when the file has none (e.g. 0.2 for mini-MIAS)",
    )
    parser.add_argument(
        "--pad-mode",
        choices=PAD_MODES,
        default="constant",
        help="how the ROI is filled where it leaves the image (default: constant 0 = air)",
    )
    parser.add_argument("--out", required=True, metavar="OUT.npy|OUT.png", help="output file")
    parser.add_argument(
        "--voi",
        choices=("auto", "window", "lut", "none"),
        default="auto",
        help="DICOM display transform: the VOI LUT Sequence if present else the window (auto), "
        "or force one (default: auto)",
    )
    parser.add_argument(
        "--window-index", type=int, default=0, metavar="K", help="which of several windows/VOI LUTs (0-based)"
    )
    parser.add_argument(
        "--for-processing",
        choices=("auto", "window", "percentile"),
        default="auto",
        help="For Processing DICOMs: the file's window if any, else percentiles (auto; see docs/io.md)",
    )
    parser.add_argument(
        "--preview",
        metavar="PREVIEW.png",
        help="also draw the whole image with the ROI outlined, beside the crop, into this PNG",
    )
    parser.add_argument("--json", action="store_true", help="print what was cropped as JSON")
    parser.set_defaults(func=run, _parser=parser)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".npy", ".png"):
        args._parser.error(f"argument --out: must end in .npy or .png, got {args.out!r}")
    if args.preview and not args.preview.lower().endswith(".png"):
        args._parser.error(f"argument --preview: must end in .png, got {args.preview!r}")
    if args.size is None and args.size_mm is None:
        args._parser.error("give the ROI size: --size N (pixels) or --size-mm MM")
    if args.spacing_mm is not None and args.size_mm is None:
        args._parser.error("--spacing-mm needs --size-mm")

    from microcalcai.io import read_image
    from microcalcai.io.export import write_crop
    from microcalcai.roi import crop_roi

    image = read_image(
        args.file,
        default_spacing_mm=args.image_spacing_mm,
        voi=args.voi,
        window_index=args.window_index,
        for_processing=args.for_processing,
    )
    crop = crop_roi(
        image,
        args.center,
        size_px=args.size,
        size_mm=args.size_mm,
        spacing_mm=args.spacing_mm,
        pad_mode=args.pad_mode,
    )
    write_crop(crop, out)
    if args.preview:
        from microcalcai.io.preview import write_crop_preview

        write_crop_preview(image, crop, args.preview, title=Path(args.file).name)
    summary = {
        "out": str(out),
        "size_px": crop.size_px,
        "center_xy": list(crop.center_xy),
        "spacing_mm": list(crop.spacing_mm) if crop.spacing_mm else None,
        "size_mm": crop.size_mm,
        "pad_mode": crop.pad_mode,
        "padded": crop.padded,
        "to_source": crop.to_source.tolist(),
        "preview": args.preview,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        spacing = f", {crop.spacing_mm[0]:g} mm/pixel" if crop.spacing_mm else ""
        padded = f", padded ({crop.pad_mode})" if crop.padded else ""
        print(
            f"{out}: {crop.size_px} x {crop.size_px} pixels around x={crop.center_xy[0]:g}, "
            f"y={crop.center_xy[1]:g}{spacing}{padded}"
        )
    return 0

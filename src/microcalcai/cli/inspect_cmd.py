"""`microcalcai inspect FILE [--json]`: what a mammogram file says about itself (header only)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show modality, size, bits, photometric, intent, spacing, laterality and view of an image",
        description="Read an image's header (DICOM MG/DX, PNG, TIFF, PGM or NRRD) without decoding its "
        "pixels and show modality, rows, columns, bits stored, photometric interpretation, presentation "
        "intent, pixel spacing in mm with the tag it came from, laterality and view.",
    )
    parser.add_argument("file", metavar="FILE", help="the image file")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with the keys modality, rows, columns, bits_stored, "
        "photometric, presentation_intent, pixel_spacing_mm, spacing_source, laterality, view",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from microcalcai.io import inspect_file

    info = inspect_file(args.file)
    if args.json:
        print(json.dumps(info))
        return 0
    width = max(len(key) for key in info)
    for key, value in info.items():
        if key == "pixel_spacing_mm" and value is not None:
            value = " x ".join(f"{v:g}" for v in value) + " (row x column)"
        print(f"{key:<{width}}  {'-' if value is None else value}")
    return 0

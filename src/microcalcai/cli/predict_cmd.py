"""`microcalcai predict --model MODEL_OR_ENSEMBLE --data MANIFEST --out predictions.csv`.

One row per ROI of the manifest: case_id, patient_id, image_id, label (empty when unknown), split,
p_<member> per member model, threshold_<member> (that member's own validation threshold, from
its model.json), probability (combined), threshold, decision, model (docs/DESIGN.md,
predictions.csv). Crops are taken as the model was trained (its card's crop size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from microcalcai.cli.argtypes import add_model_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="probabilities of malignancy for every ROI of a manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(parser)
    parser.add_argument(
        "--data", required=True, type=Path, metavar="MANIFEST", help="manifest.csv of the ROIs"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="CSV", help="predictions file to write")
    parser.add_argument("--split", metavar="NAME", help="only rows of this split (train, val or test)")
    parser.add_argument("--device", default=None, metavar="cpu|cuda", help="default: a GPU when there is one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from microcalcai.data.manifest import read_manifest
    from microcalcai.errors import InputError
    from microcalcai.models.predictor import load_predictor
    from microcalcai.train.predictions import predict_frame, write_predictions

    predictor = load_predictor(args.model, device=args.device)
    frame = read_manifest(args.data, require_label=False)
    if args.split:
        if "split" not in frame.columns:
            raise InputError(
                f"manifest {args.data} has no split column, so --split {args.split} selects nothing"
            )
        frame = frame[frame["split"].astype(str) == args.split].reset_index(drop=True)
        if frame.empty:
            raise InputError(f"manifest {args.data} has no rows with split {args.split!r}")
    table = predict_frame(predictor, frame, progress=not args.no_progress)
    write_predictions(table, args.out)
    malignant = int((table["decision"] == "malignant").sum())
    print(
        f"{len(table)} ROI(s) -> {args.out} ({malignant} above the threshold {predictor.threshold:.3f} "
        f"of {predictor.name})"
    )
    return 0

"""`microcalcai predict --model MODEL_OR_ENSEMBLE --data MANIFEST --out predictions.csv`.

One row per ROI of the manifest: case_id, patient_id, image_id, label (empty when unknown), split,
p_<member> per member model, threshold_<member> (that member's own validation threshold, from
its model.json), probability (combined), threshold, decision, model (docs/DESIGN.md,
predictions.csv). Crops are taken as the model was trained (its card's crop size).

With --dicom-out DIR, every ROI of a DICOM image also gets a DICOM SR (TID 1500: the ROI on
the image, each model's and the ensemble's probability, threshold and decision) in
DIR/<image file stem>/ (docs/dicom-out.md); ROIs of images that cannot be referenced (not
DICOM, missing UIDs) are listed with the reason, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
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
    parser.add_argument(
        "--dicom-out", type=Path, metavar="DIR", help="also write one DICOM SR per ROI into this folder"
    )
    parser.add_argument("--split", metavar="NAME", help="only rows of this split (train, val or test)")
    parser.add_argument("--device", default=None, metavar="cpu|cuda", help="default: a GPU when there is one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from microcalcai.cli.argtypes import refuse_overwriting_inputs
    from microcalcai.data.manifest import read_manifest
    from microcalcai.errors import InputError
    from microcalcai.models.predictor import demonstration_note, load_predictor
    from microcalcai.train.predictions import predict_frame, write_predictions

    refuse_overwriting_inputs(args.out, [("the manifest", args.data), ("the model", args.model)])
    predictor = load_predictor(args.model, device=args.device)
    note = demonstration_note(predictor)
    if note:
        print(note, file=sys.stderr)
    frame = read_manifest(args.data, require_label=False)
    frame = _with_training_split(frame, predictor, args.data)
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
    failed = _write_dicom(args.dicom_out, predictor, frame, table) if args.dicom_out else 0
    malignant = int((table["decision"] == "malignant").sum())
    print(
        f"{len(table)} ROI(s) -> {args.out} ({malignant} above the threshold {predictor.threshold:.3f} "
        f"of {predictor.name})"
    )
    return 1 if failed else 0


def _with_training_split(frame, predictor, manifest):
    """A manifest without split values, the one the model was trained on: each row gets the split
    it had in training, so that evaluate reports on the held-out test rows only."""
    from microcalcai.train.data import case_ids
    from microcalcai.train.split_record import training_split

    if "split" in frame.columns and (frame["split"].fillna("").astype(str).str.strip() != "").any():
        return frame
    known = training_split(predictor, manifest)
    if not known:
        return frame
    frame = frame.copy()
    frame["split"] = [known.get(case_id, "") for case_id in case_ids(frame)]
    counts = frame["split"].replace("", "not used").value_counts().to_dict()
    shown = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    print(f"split from the model's training on this manifest: {shown}", file=sys.stderr)
    return frame


def _write_dicom(folder: Path, predictor, frame, table) -> int:
    """One SR per ROI; returns how many ROIs got none (each said on stderr with its reason)."""
    from microcalcai_logic.contract import PixelRoi
    from tqdm.auto import tqdm

    from microcalcai.dicom_out.results import write_roi_results
    from microcalcai.errors import MicrocalcError
    from microcalcai.train.data import _crop_size
    from microcalcai.train.predictions import crop_settings

    crop = crop_settings(predictor)
    default_size, whole_image = int(crop["roi_size"]), crop["task"] in ("whole_image", "tiles")
    written, failed = 0, 0
    members = [m.name for m in predictor.members]
    for (_, row), (_, result) in tqdm(
        zip(frame.iterrows(), table.iterrows(), strict=True), total=len(table), desc="DICOM SR", unit="ROI"
    ):
        roi = (
            None
            if whole_image
            else PixelRoi(float(row["roi_x"]), float(row["roi_y"]), _crop_size(row, default_size))
        )
        probabilities = {name: float(result[f"p_{name}"]) for name in members}
        try:
            probability = float(result["probability"])
            write_roi_results(folder, row["image_path"], roi, predictor, probability, probabilities)
            written += 1
        except MicrocalcError as exc:
            failed += 1
            print(f"no DICOM SR for {result['case_id']}: {exc}", file=sys.stderr)
    print(f"{written} DICOM SR(s) -> {folder}" + (f"; {failed} ROI(s) without one (above)" if failed else ""))
    return failed

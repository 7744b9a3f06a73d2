"""`microcalcai ensemble --member RUN_DIR_OR_MODEL ... --out ENSEMBLE_DIR`: combine models into one.

Members are combined by the mean of their probabilities (Kang et al.) or by majority vote. The
ensemble's own threshold is the maximal Youden index of the combined score on validation ROIs:
the members' predictions_val.csv (written by `microcalcai train`) when they share their validation
cases, else the val rows of --data MANIFEST. The members are copied into the ensemble folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ensemble",
        help="combine trained models into an ensemble folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--member",
        action="append",
        required=True,
        type=Path,
        metavar="RUN_DIR_OR_MODEL",
        help="a model folder or a run folder (all its RUN_DIR/<arch>/model); repeatable",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="ENSEMBLE_DIR", help="folder to write")
    parser.add_argument(
        "--combine",
        choices=("mean", "vote"),
        default="mean",
        help="mean of probabilities (default) or majority vote",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="MANIFEST",
        help="choose the threshold on this manifest's val rows instead of the members' files",
    )
    parser.add_argument("--name", help="ensemble name (default: the folder name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing ENSEMBLE_DIR")
    parser.set_defaults(func=run)


def _validation_tables(model_dirs, names, args):
    import pandas as pd

    from microcalcai.errors import InputError

    if args.data is None:
        files = [d.parent / "predictions_val.csv" for d in model_dirs]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InputError(
                f"no validation predictions at {', '.join(missing)}; give --data MANIFEST with val rows"
            )
        text = {"case_id": str, "label": str}
        return {name: pd.read_csv(f, dtype=text) for name, f in zip(names, files, strict=True)}
    from microcalcai.data.manifest import read_manifest
    from microcalcai.models.predictor import load_predictor
    from microcalcai.train.predictions import predict_frame

    frame = read_manifest(args.data)
    if "split" not in frame.columns or not (frame["split"].astype(str) == "val").any():
        raise InputError(f"manifest {args.data} has no rows with split 'val' to choose the threshold on")
    frame = frame[frame["split"].astype(str) == "val"].reset_index(drop=True)
    return {
        name: predict_frame(load_predictor(d), frame, progress=True)
        for name, d in zip(names, model_dirs, strict=True)
    }


def run(args) -> int:
    from microcalcai.cli.argtypes import refuse_overwriting_inputs
    from microcalcai.errors import InputError
    from microcalcai.models.artifact import read_card
    from microcalcai.models.ensemble import (
        ensemble_threshold,
        member_model_dirs,
        save_ensemble,
        unique_member_names,
    )

    model_dirs = [d for member in args.member for d in member_model_dirs(member)]
    refuse_overwriting_inputs(args.out, [("the member", d) for d in [*args.member, *model_dirs]])
    if len({d.resolve() for d in model_dirs}) != len(model_dirs):
        raise InputError("a model is named twice among the members")
    cards = [read_card(d) for d in model_dirs]
    names = unique_member_names([c.name for c in cards])
    tables = _validation_tables(model_dirs, names, args)
    thresholds = {name: card.threshold for name, card in zip(names, cards, strict=True)}
    choice, metrics = ensemble_threshold(tables, thresholds, args.combine)
    out = save_ensemble(
        model_dirs,
        args.out,
        combine=args.combine,
        threshold=choice.threshold,
        threshold_method=choice.method,
        val_metrics=metrics,
        name=args.name,
        overwrite=args.overwrite,
    )
    print(
        f"ensemble of {len(model_dirs)} ({', '.join(names)}), {args.combine}: "
        f"validation AUC {metrics['auc']:.3f}, "
        f"threshold {choice.threshold:.3f} -> {out}"
    )
    return 0

"""argparse value types shared by several subcommands (standard library only: keeps --help fast)."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive(kind: type):
    """An argparse `type` that accepts a number of `kind` greater than zero, with a clear message."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"expected a {noun}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """`--model`: a trained model folder or an ensemble folder, as every consumer of models reads them."""
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        metavar="MODEL_OR_ENSEMBLE",
        help="a model folder (model.json) or an ensemble folder (ensemble.json)",
    )


def refuse_overwriting_inputs(out: Path, inputs: list[tuple[str, Path]]) -> None:
    """Refuse an output that is one of the command's inputs or a folder holding one: writing it
    would replace or delete what the command reads (a manifest, a member model)."""
    from microcalcai.errors import InputError

    target = Path(out).resolve()
    for what, path in inputs:
        source = Path(path).resolve()
        if source == target or target in source.parents:
            raise InputError(
                f"--out {out} would write over {what} {path}, which this command reads; "
                "choose another output path"
            )

"""Entry point of the `microcalcai` console script.

Each subcommand lives in its own module under `microcalcai.cli` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a callable taking the parsed
arguments and returning an exit status. Command modules import only the standard library at
module level, so `--help` stays fast (torch and MONAI cost seconds to import).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from microcalcai import __version__
from microcalcai.errors import MicrocalcError

# (subcommand, module under microcalcai.cli); the order is the order shown in --help.
COMMANDS = (
    ("inspect", "inspect_cmd"),
    ("crop", "crop_cmd"),
    ("import", "import_cmd"),
    ("synth", "synth_cmd"),
    ("train", "train_cmd"),
    ("weights", "weights_cmd"),
    ("predict", "predict_cmd"),
    ("ensemble", "ensemble_cmd"),
    ("explain", "explain_cmd"),
    ("stats", "stats_cmd"),
    ("evaluate", "evaluate_cmd"),
    ("serve", "serve_cmd"),
    ("web", "web_cmd"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microcalcai",
        description="Benign vs malignant microcalcification classification: data, models, "
        "saliency, statistics and the MONAI Label server.",
    )
    parser.add_argument("--version", action="version", version=f"microcalcai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module_name in COMMANDS:
        try:
            module = importlib.import_module(f"microcalcai.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"microcalcai.cli.{module_name}":
                raise
            continue  # a command whose module is not part of this build
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except MicrocalcError as exc:
        print(f"microcalcai {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A read-only or full disk, a file where a folder goes: the user's to fix, in one line
        # (the traceback with --verbose).
        logging.getLogger(__name__).debug("%s failed", args.command, exc_info=True)
        print(f"microcalcai {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = getattr(args, "interrupted", "")
        print(f"microcalcai {args.command}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130


def _os_error(exc: OSError) -> str:
    if not exc.filename:
        return str(exc)
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
    return f"{where}: {exc.strerror or type(exc).__name__}; check the path and its folder's permissions"


if __name__ == "__main__":
    sys.exit(main())

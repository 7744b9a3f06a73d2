"""`microcalcai evaluate`: a diagnostic-performance report from predictions.csv files."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Table 1, ROC curves with bootstrap bands, confusion matrices and calibration from predictions",
        description="Evaluate one or more predictions.csv files (written by `microcalcai predict`) against "
        "their labels: a Markdown and HTML report with a Table 1 (cut-off, AUC with DeLong CI, sensitivity, "
        "specificity, accuracy, PPV, NPV with CIs, overall and Holm-adjusted pairwise p-values), figures, "
        "and every number as JSON and CSV.",
    )
    parser.add_argument(
        "--predictions",
        required=True,
        action="append",
        metavar="CSV",
        help="predictions.csv (repeatable; several files must hold the same cases)",
    )
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder to write the report into")
    parser.add_argument(
        "--split",
        default="auto",
        help="rows to evaluate: 'auto' (default: split 'test' when present, else all), 'all', "
        "or a split name",
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicas (default 1000, as Kang)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--conf-level", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument(
        "--ci",
        choices=("wilson", "clopper-pearson", "bootstrap"),
        default="wilson",
        help="intervals for sensitivity, specificity, accuracy, PPV, NPV in Table 1 (default wilson); "
        "metrics.json always holds all of them",
    )
    parser.add_argument(
        "--target-sensitivity",
        type=float,
        default=0.90,
        help="operating point: the best specificity at at least this sensitivity (default 0.90)",
    )
    parser.add_argument(
        "--target-specificity",
        type=float,
        default=0.90,
        help="operating point: the best sensitivity at at least this specificity (default 0.90)",
    )
    parser.add_argument(
        "--reader-threshold",
        metavar="SCORE",
        help="cut-off for reader_<name> columns, e.g. 4 or 4a for BI-RADS (scores at or above it are "
        "positive); default: the maximal-Youden cut-off on the same cases, flagged in the report",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from microcalcai.errors import InputError
    from microcalcai.evaluate.analysis import Options, evaluate_predictions
    from microcalcai.evaluate.predictions import read_predictions, reader_score
    from microcalcai.evaluate.report import check_destination, write_report

    if args.n_boot < 10:
        raise InputError(f"--n-boot must be at least 10, not {args.n_boot}")
    if not 0.0 < args.conf_level < 1.0:
        raise InputError(f"--conf-level must lie strictly between 0 and 1, not {args.conf_level}")
    for name in ("target_sensitivity", "target_specificity"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise InputError(f"--{name.replace('_', '-')} must lie in [0, 1], not {getattr(args, name)}")
    check_destination(Path(args.out))
    data = read_predictions(args.predictions, split=args.split)
    options = Options(
        n_boot=args.n_boot,
        seed=args.seed,
        conf_level=args.conf_level,
        ci_method=args.ci,
        target_sensitivity=args.target_sensitivity,
        target_specificity=args.target_specificity,
        reader_threshold=reader_score(args.reader_threshold) if args.reader_threshold else None,
        reader_threshold_text=args.reader_threshold or "",
    )
    result = evaluate_predictions(data, options)
    out = write_report(result, args.out)
    logging.getLogger("microcalcai.evaluate").info("report written to %s", out)
    print(out / "report.md")
    return 0

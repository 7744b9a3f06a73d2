"""`microcalcai stats`: ROC statistics on any CSV (AUC, DeLong variance and CI, paired DeLong
tests), the Wilcoxon signed-rank test of per-fold metrics, and exam-level metrics of per-view
scores."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="ROC AUC with DeLong CIs and tests, and cross-validation fold comparisons, on a CSV",
        description="Statistics on a CSV file of labels and scores. Results agree with the R package pROC.",
    )
    sub = parser.add_subparsers(dest="stats_command", metavar="STATISTIC")
    sub.required = True

    roc = sub.add_parser(
        "roc",
        help="AUC, DeLong variance and 95%% CI per score; paired DeLong test for every pair of scores",
        description="AUC, DeLong variance and CI for each score column, and DeLong's paired test between "
        "every pair of score columns (Sun & Xu's fast algorithm). Numbers agree with pROC's auc(), var(), "
        "ci.auc() and roc.test().",
    )
    roc.add_argument("--csv", required=True, metavar="FILE", help="CSV file with one row per case")
    roc.add_argument("--label", required=True, metavar="COL", help="column holding the true class")
    roc.add_argument(
        "--positive", required=True, metavar="VALUE", help="value of --label that marks a positive case"
    )
    roc.add_argument(
        "--score", required=True, action="append", metavar="COL", help="score column (repeatable)"
    )
    roc.add_argument(
        "--direction",
        choices=("auto", "higher", "lower"),
        default="auto",
        help="'higher': positives score higher; 'lower': they score lower; 'auto' (default, as pROC): "
        "chosen per score by comparing the class medians",
    )
    roc.add_argument(
        "--conf-level", type=float, default=0.95, help="confidence level of the CI (default 0.95)"
    )
    roc.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    roc.set_defaults(func=run)

    folds = sub.add_parser(
        "folds",
        help="Wilcoxon signed-rank test of two models' per-fold metrics (exact p)",
        description="Exact two-sided Wilcoxon signed-rank test of per-fold values (one row per fold). Warns "
        "when the number of folds cannot reach p < alpha (five folds: the smallest p is 0.0625).",
    )
    folds.add_argument("--csv", required=True, metavar="FILE", help="CSV with one row per fold")
    folds.add_argument("--a", required=True, metavar="COL", help="first model's metric column")
    folds.add_argument("--b", required=True, metavar="COL", help="second model's metric column")
    folds.add_argument(
        "--alpha", type=_probability, default=0.05, help="significance level for the warning (0 < alpha < 1)"
    )
    folds.add_argument("--json", action="store_true", help="print one JSON object")
    folds.set_defaults(func=run)

    exams = sub.add_parser(
        "exams",
        help="per-image and per-exam AUC, PR-AUC, sensitivity at fixed specificity, F1, MCC with CIs",
        description="Aggregate per-view scores to exams (max, mean or noisy-OR) and report, per image and "
        "per exam, ROC AUC, PR-AUC (average precision), sensitivity at a fixed specificity, and F1, MCC, "
        "sensitivity and specificity at an operating point, with patient-clustered bootstrap CIs. The "
        "scores come from --predictions (one row per view, e.g. a run's predictions_test.csv); exam and "
        "label columns from the same file or, joined on image_id, from --manifest.",
    )
    exams.add_argument("--predictions", required=True, metavar="FILE", help="CSV with one row per view")
    exams.add_argument("--manifest", metavar="FILE", help="manifest with the exam and label columns")
    exams.add_argument("--score", default="probability", metavar="COL", help="score column (probability)")
    exams.add_argument("--label", default="bac", metavar="COL", help="0/1 label column (default bac)")
    exams.add_argument("--exam", default="exam_id", metavar="COL", help="exam column (default exam_id)")
    exams.add_argument(
        "--how", choices=("max", "mean", "noisy_or"), default="max", help="view aggregation (default max)"
    )
    exams.add_argument(
        "--specificity", type=float, default=0.9, help="fixed specificity for the sensitivity (default 0.9)"
    )
    exams.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="operating point (default: the predictions' threshold column, chosen on validation data, "
        "when it holds one value; else the threshold reaching --specificity); for exams too with --how max",
    )
    exams.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicas (default 1000)")
    exams.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    exams.add_argument("--json", action="store_true", help="print one JSON object")
    exams.set_defaults(func=run)


def _read_columns(path: str, columns: list[str]):
    import pandas as pd

    from microcalcai.errors import InputError

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"--csv {path} does not exist") from None
    except Exception as exc:  # pandas' parser errors have several types
        raise InputError(f"cannot read --csv {path}: {exc}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{path} has no column(s) {', '.join(repr(c) for c in missing)}; its columns are "
            f"{', '.join(df.columns[:20])}"
        )
    return df


def _numbers(df, column: str, path: str):
    from microcalcai.evaluate.inputs import finite_scores

    return finite_scores(df[column].str.strip().replace("", "nan").to_numpy(), name=column, source=path)


def run(args: argparse.Namespace) -> int:
    runners = {"roc": _run_roc, "folds": _run_folds, "exams": _run_exams}
    return runners[args.stats_command](args)


def _run_exams(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from microcalcai.errors import InputError
    from microcalcai.evaluate.exam import evaluate_exams

    views = _read_columns(args.predictions, [args.score])
    if args.manifest:
        manifest = _read_columns(args.manifest, ["image_id"])
        wanted = [c for c in (args.exam, args.label, "patient_id") if c in manifest.columns]
        if "image_id" not in views.columns:
            raise InputError(f"{args.predictions} has no image_id column to join with {args.manifest}")
        views = views.drop(columns=[c for c in wanted if c in views.columns]).merge(
            manifest[["image_id", *wanted]].drop_duplicates("image_id"), on="image_id", how="left"
        )
    for column in (args.exam, args.label):
        if column not in views.columns or (views[column] == "").any() or views[column].isna().any():
            raise InputError(
                f"no {column!r} for every view: give it in {args.predictions} "
                "or in --manifest (joined on image_id)"
            )
    threshold = args.threshold
    if threshold is None and "threshold" in views.columns:
        values = pd.to_numeric(views["threshold"], errors="coerce").unique()
        threshold = float(values[0]) if len(values) == 1 and np.isfinite(values[0]) else None
    result = evaluate_exams(
        views,
        score=args.score,
        label=args.label,
        exam=args.exam,
        patient="patient_id" if "patient_id" in views.columns else None,
        how=args.how,
        threshold=threshold,
        exam_threshold=threshold if args.how == "max" else None,
        specificity=args.specificity,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(result, allow_nan=False))
        return 0
    print(f"{args.predictions}: views aggregated by {args.how}; 95% CIs: patient-clustered bootstrap")
    names = [
        ("auc", "ROC AUC"),
        ("pr_auc", "PR-AUC (AP)"),
        ("sensitivity_at_specificity", f"sens @ spec {args.specificity:g}"),
        ("f1", "F1"),
        ("mcc", "MCC"),
        ("sensitivity", "sensitivity"),
        ("specificity", "specificity"),
    ]
    for level in ("image", "exam"):
        m = result[level]
        op = m["operating_point"]
        print(
            f"\n{level}: n = {m['n']}, positive {m['n_positive']} ({m['prevalence']:.1%}); "
            f"threshold {op['threshold']:.4g} ({op['chosen']})"
        )
        for key, text in names:
            lo, hi = m[key]["ci"]
            print(f"  {text:<20} {m[key]['estimate']:.3f}  ({lo:.3f} - {hi:.3f})")
    return 0


def _run_roc(args: argparse.Namespace) -> int:
    from microcalcai.errors import InputError
    from microcalcai.evaluate import compare, inputs, roc

    if len(set(args.score)) != len(args.score):
        raise InputError("each --score column may be given once")
    if not 0.0 < args.conf_level < 1.0:
        raise InputError(f"--conf-level must lie strictly between 0 and 1, not {args.conf_level}")
    df = _read_columns(args.csv, [args.label, *args.score])
    y = inputs.binary_labels(df[args.label].to_numpy(), args.positive, name=args.label, source=args.csv)
    inputs.check_two_classes(y, name=args.label, source=args.csv)
    scores = {name: _numbers(df, name, args.csv) for name in args.score}
    results = {
        name: roc.auc_delong(y, s, direction=args.direction, conf_level=args.conf_level)
        for name, s in scores.items()
    }
    comparisons = []
    names = list(scores)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            t = compare.delong_paired(
                y, scores[a], scores[b], names=(a, b), directions=(results[a].direction, results[b].direction)
            )
            comparisons.append((t, results[a].direction != results[b].direction))
    if args.json:
        out = {
            "scores": {name: r.as_dict() for name, r in results.items()},
            "comparisons": [
                {"a": t.a, "b": t.b, "method": t.method, "z": t.statistic, "p": t.p} for t, _ in comparisons
            ],
        }
        print(json.dumps(out, allow_nan=False))
    else:
        _print_roc_table(args, results, comparisons)
    for name, r in results.items():
        if args.direction == "auto" and r.direction == "lower":
            print(
                f"note: {name}: positives score lower than negatives (direction chosen by median)",
                file=sys.stderr,
            )
    for t, opposite in comparisons:
        if opposite:
            print(
                f"warning: {t.a} and {t.b} run in opposite directions; DeLong's test assumes one",
                file=sys.stderr,
            )
    return 0


def _print_roc_table(args, results, comparisons) -> None:
    level = f"{100 * args.conf_level:g}%"
    first = next(iter(results.values()))
    print(
        f"{args.csv}: {first.n_positive} positive ({args.label} = {args.positive}), "
        f"{first.n_negative} negative"
    )
    print(f"{'score':<20} {'AUC':>8} {level + ' CI (DeLong)':>22} {'variance':>12} direction")
    for name, r in results.items():
        print(
            f"{name:<20} {r.auc:>8.4f} {r.ci[0]:>10.4f} - {r.ci[1]:<9.4f} {r.variance:>12.6g} {r.direction}"
        )
    if comparisons:
        print("\npaired DeLong tests")
        for t, _ in comparisons:
            if t.p is None:
                print(f"{t.a} vs {t.b}: {t.note}, difference {t.difference:+.4f}")
            else:
                print(f"{t.a} vs {t.b}: Z = {t.statistic:.4f}, p = {t.p:.4g}, difference {t.difference:+.4f}")


def _run_folds(args: argparse.Namespace) -> int:
    import warnings

    from microcalcai.evaluate.compare import wilcoxon_folds

    df = _read_columns(args.csv, [args.a, args.b])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same warning is printed below, once
        result = wilcoxon_folds(
            _numbers(df, args.a, args.csv),
            _numbers(df, args.b, args.csv),
            alpha=args.alpha,
            names=(args.a, args.b),
        )
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **result.as_dict()}, allow_nan=False))
    else:
        print(
            f"{args.a} vs {args.b} over {result.n_folds} folds: W = {result.statistic:g}, exact two-sided "
            f"p = {result.p:.4g}, median difference {result.median_difference:+.4g}"
        )
    if result.warning:
        print(f"warning: {result.warning}", file=sys.stderr)
    return 0


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value

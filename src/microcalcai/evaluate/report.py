"""The evaluation report: Markdown and HTML with a Table 1 in the style of Kang et al. (2021),
figures, and every number also as JSON and CSV.

The folder is built beside its destination and moved into place only when complete
(atomic_dir), so a reader never sees half a report. An existing folder is replaced only when
it holds an earlier report (its metrics.json says so); anything else is refused.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

from microcalcai import __version__
from microcalcai.atomic import atomic_dir
from microcalcai.errors import InputError
from microcalcai.evaluate import figures
from microcalcai.evaluate.binary import METRIC_LABELS, METRICS

GENERATOR = "microcalcai evaluate"
DAGGER = "\u2020"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _pct_ci(m: dict) -> str:
    if m["value"] is None:
        return "n/a"
    text = f"{100 * m['value']:.2f}"
    if m["ci"] is not None:
        text += f" ({100 * m['ci'][0]:.2f}\u2013{100 * m['ci'][1]:.2f})"
    return text


def _cutoff_text(m: dict) -> str:
    cut = m["cutoff"]
    mark = DAGGER if cut["method"] == "youden" else ""
    return f"{cut['label']}{mark}"


def table1_rows(result: dict) -> list[list[str]]:
    level = int(round(result["conf_level"] * 100))
    header = ["Model", "Cut-off", f"AUC ({level}% CI)"] + [
        f"{METRIC_LABELS[k]}, % ({level}% CI)" for k in METRICS
    ]
    rows = [header]
    for name, m in result["models"].items():
        lo, hi = m["auc_ci"]
        label = name if m["kind"] != "reader" else f"{name} (reader)"
        row = [label, _cutoff_text(m), f"{m['auc']:.3f} ({lo:.3f}\u2013{hi:.3f})"]
        row += [_pct_ci(m["metrics"][k]) for k in METRICS]
        rows.append(row)
    comps = result["comparisons"]
    if comps:
        rows.append(["p (overall)", ""] + [fmt_p(comps[k]["p"]) for k in ("auc", *METRICS)])
    return rows


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def pairwise_rows(result: dict) -> list[list[str]]:
    comps = result["comparisons"]
    if not comps:
        return []
    keys = ("auc", *METRICS)
    pairs = [(t["a"], t["b"]) for t in comps["auc"]["pairwise"]]
    rows = [["Pair"] + [("AUC" if k == "auc" else METRIC_LABELS[k]) for k in keys]]
    for a, b in pairs:
        row = [f"{a} vs {b}"]
        for k in keys:
            match = next((t for t in comps[k]["pairwise"] if t["a"] == a and t["b"] == b), None)
            row.append(fmt_p(match["p_holm"]) if match else "n/a")
        rows.append(row)
    methods = ["AUC: " + _method_name(comps["auc"]["pairwise"][0]["method"])]
    for k in METRICS:
        used = sorted({t["method"] for t in comps[k]["pairwise"]})
        methods.append(f"{METRIC_LABELS[k]}: " + ", ".join(_method_name(u) for u in used))
    rows.append(["Test"] + [m.split(": ", 1)[1] for m in methods])
    return rows


def _overall_methods_text(comparisons: dict) -> str:
    """How the overall p-values of the proportions were computed, in words."""
    used = {comparisons[k]["method"] for k in METRICS}
    parts = []
    links = sorted(m.split("-")[1] for m in used if m in ("gee-logit", "gee-identity"))
    if links:
        parts.append(
            f"a Wald test in a GEE with the model as factor, clustered by patient ({' or '.join(links)} link)"
        )
    if "mcnemar-exact" in used:
        parts.append("the exact McNemar test")
    return "; ".join(parts) or "no test (not defined)"


def _method_name(method: str) -> str:
    return {
        "delong-paired": "paired DeLong",
        "delong-chi2": "DeLong chi-square",
        "mcnemar-exact": "exact McNemar",
        "gee-logit": "GEE (logit)",
        "gee-identity": "GEE (identity)",
    }.get(method, method)


def render_markdown(result: dict, figure_files: dict[str, str]) -> str:
    level = int(round(result["conf_level"] * 100))
    out = [
        "# Diagnostic performance",
        "",
        f"{result['n_cases']} ROIs ({result['n_malignant']} malignant, {result['n_benign']} benign) from "
        f"{result['n_patients']} patients. Sources: {', '.join(Path(s).name for s in result['sources'])}.",
        "",
        *[
            f"> **Scores from a demonstration model**: {use}. The figures below describe it on these "
            "cases only."
            for use in result.get("demonstration", [])
        ],
        *([""] if result.get("demonstration") else []),
        "## Table 1. Diagnostic performance",
        "",
        _md_table(table1_rows(result)),
        "",
    ]
    ci_text = {"wilson": "Wilson score", "clopper-pearson": "exact Clopper-Pearson"}.get(result["ci_method"])
    prop_ci = (
        f"{ci_text} intervals"
        if ci_text
        else (
            f"{result['bootstrap']['resampling']} bootstrap percentile intervals "
            f"({result['bootstrap']['n_boot']} replicas)"
        )
    )
    foot = [
        f"AUC {level}% CI by DeLong's method; sensitivity, specificity, accuracy, PPV and NPV in percent "
        f"with {prop_ci}. A case is called malignant when its score is at or above the cut-off.",
    ]
    if any(m["cutoff"]["method"] == "youden" for m in result["models"].values()):
        foot.append(
            f"{DAGGER} No validation threshold stored for this column: "
            "maximal-Youden cut-off chosen on these "
            "same cases, so its sensitivity and specificity are optimistic."
        )
    if result["comparisons"]:
        c = result["comparisons"]
        foot.append(
            f"Overall p: AUC by {_method_name(c['auc']['method'])}"
            + (f" ({int(c['auc']['df'])} df)" if c["auc"]["p"] is not None else "")
            + f"; proportions by {_overall_methods_text(c)}."
        )
    undefined = [
        f"{name} {METRIC_LABELS[k]}: {m['metrics'][k]['note']}"
        for name, m in result["models"].items()
        for k in METRICS
        if m["metrics"][k]["value"] is None
    ]
    undefined += [f"overall {k}: {v['note']}" for k, v in result["comparisons"].items() if v["p"] is None]
    if undefined:
        foot.append("n/a: " + "; ".join(undefined) + ".")
    out += [f"*{f}*  " for f in foot]
    if result["comparisons"]:
        out += [
            "",
            "## Pairwise comparisons (p-values, Holm-adjusted within each metric)",
            "",
            _md_table(pairwise_rows(result)),
            "",
        ]
    out += ["", "## Further measures", "", _md_table(_further_rows(result)), ""]
    captions = {
        "roc_curves": "ROC curves of all models with AUC (95% CI).",
        "roc_bands": f"ROC curve with its pointwise {level}% bootstrap band ({result['bootstrap']['n_boot']} "
        f"{result['bootstrap']['resampling']} replicas, seed {result['bootstrap']['seed']}) "
        "and the operating point.",
        "confusion_matrices": "Confusion matrices at the cut-off (row percentages).",
        "calibration": "Reliability diagram with Wilson intervals per bin; ROIs per bin below.",
        "pr_curves": "Precision-recall curves with average precision (PR-AUC).",
    }
    out += ["## Figures", ""]
    for key, name in figure_files.items():
        out += [f"![{captions[key]}]({name})", "", f"*{captions[key]}*", ""]
    if result["notes"]:
        out += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    out += [
        "## Files",
        "",
        "`metrics.json` holds every number above and more (bootstrap and exact intervals, operating points, "
        "curves); `table1.csv`, `comparisons.csv`, `roc_curves.csv`, `roc_bands.csv` and `calibration.csv` "
        "hold the same as tables.",
        "",
        f"Generated by microcalcai {__version__}.",
        "",
    ]
    return "\n".join(out)


def _further_rows(result: dict) -> list[list[str]]:
    rows = [
        [
            "Model",
            "AUC bootstrap CI (percentile)",
            "AUC bootstrap CI (BCa)",
            "PR-AUC",
            "F1",
            "Weighted F1",
            "Brier",
            "Sens. at spec. \u2265 target",
            "Spec. at sens. \u2265 target",
        ]
    ]
    for name, m in result["models"].items():
        b = m["auc_bootstrap"]
        boot = [
            f"{b[k]['ci'][0]:.3f}\u2013{b[k]['ci'][1]:.3f}" if b[k]["ci"] else "n/a"
            for k in ("percentile", "bca")
        ]
        op_sens, op_spec = m["operating_points"]
        rows.append(
            [
                name,
                *boot,
                f"{m['pr_auc']:.3f}",
                f"{m['f1']:.3f}",
                f"{m['f1_weighted']:.3f}",
                f"{m['brier']:.3f}" if "brier" in m else "n/a (not a probability)",
                _op_text(op_spec, "sensitivity", "spec."),
                _op_text(op_sens, "specificity", "sens."),
            ]
        )
    return rows


def _op_text(point: dict, shown: str, other_label: str) -> str:
    other = "specificity" if shown == "sensitivity" else "sensitivity"
    if point[shown] is None:
        return f"n/a ({point['method']} not reachable)"
    return f"{100 * point[shown]:.1f}% ({other_label} {100 * point[other]:.1f}%, {point['method']})"


def render_html(markdown_text: str, out_dir: Path) -> str:
    """Markdown -> HTML (python-markdown, tables extension), images embedded so the file stands alone."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])

    def embed(match: re.Match) -> str:
        data = base64.b64encode((out_dir / match.group(1)).read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"/]+\.png)"', embed, body)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "th,td{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eef}"
        "img{max-width:100%}em{color:#444}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Diagnostic performance</title><style>{style}</style></head><body>\n{body}\n</body></html>\n"
    )


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def csv_tables(result: dict) -> dict[str, str]:
    """Machine-readable tables: raw fractions (not percent), one row per model, pair or point."""
    t1 = [["model", "kind", "cutoff", "cutoff_method", "auc", "auc_ci_low", "auc_ci_high", "auc_variance"]]
    for k in METRICS:
        t1[0] += [k, f"{k}_ci_low", f"{k}_ci_high", f"{k}_successes", f"{k}_total"]
    t1[0] += ["ci_method", "pr_auc", "f1", "f1_weighted", "brier", "tp", "fp", "tn", "fn"]
    for name, m in result["models"].items():
        row = [
            name,
            m["kind"],
            m["cutoff"]["threshold"],
            m["cutoff"]["method"],
            m["auc"],
            *m["auc_ci"],
            m["auc_variance"],
        ]
        for k in METRICS:
            p = m["metrics"][k]
            row += [p["value"], *(p["ci"] or [None, None]), p["successes"], p["total"]]
        c = m["confusion"]
        row += [
            m["metrics_ci_method"],
            m["pr_auc"],
            m["f1"],
            m["f1_weighted"],
            m.get("brier"),
            c["tp"],
            c["fp"],
            c["tn"],
            c["fn"],
        ]
        t1.append(row)
    comp = [
        [
            "metric",
            "a",
            "b",
            "method",
            "statistic",
            "p",
            "p_holm",
            "estimate_a",
            "estimate_b",
            "overall_method",
            "overall_statistic",
            "overall_df",
            "overall_p",
        ]
    ]
    for metric, c in result["comparisons"].items():
        for t in c["pairwise"]:
            comp.append(
                [
                    metric,
                    t["a"],
                    t["b"],
                    t["method"],
                    t["statistic"],
                    t["p"],
                    t["p_holm"],
                    t["estimate_a"],
                    t["estimate_b"],
                    c["method"],
                    c["statistic"],
                    c["df"],
                    c["p"],
                ]
            )
    roc = [["model", "fpr", "tpr", "threshold"]]
    band = [["model", "fpr", "tpr_lower", "tpr_median", "tpr_upper"]]
    cal = [["model", "mean_predicted", "observed", "observed_ci_low", "observed_ci_high", "count"]]
    for name, m in result["models"].items():
        rc = m["roc_curve"]
        roc += [[name, f, t, th] for f, t, th in zip(rc["fpr"], rc["tpr"], rc["threshold"], strict=True)]
        b = m["roc_band"]
        band += [
            [name, *v] for v in zip(b["fpr"], b["tpr_lower"], b["tpr_median"], b["tpr_upper"], strict=True)
        ]
        if "reliability" in m:
            r = m["reliability"]
            cal += [
                [name, x, o, ci[0], ci[1], n]
                for x, o, ci, n in zip(
                    r["mean_predicted"], r["observed"], r["observed_ci"], r["count"], strict=True
                )
            ]
    tables = {"table1.csv": t1, "roc_curves.csv": roc, "roc_bands.csv": band, "calibration.csv": cal}
    if len(comp) > 1:
        tables["comparisons.csv"] = comp
    return {
        name: _csv_text([["" if v is None else v for v in r] for r in rows]) for name, rows in tables.items()
    }


def check_destination(out_dir: Path) -> None:
    """Refuse an --out folder that holds something other than an earlier report (checked first, so
    a long evaluation is not wasted)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    marker = out_dir / "metrics.json"
    try:
        previous = json.loads(marker.read_text()).get("generator")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous != GENERATOR:
        raise InputError(
            f"--out {out_dir} exists and does not hold an earlier evaluation report; "
            "choose a new or empty folder"
        )


def write_report(result: dict, out_dir: str | Path) -> Path:
    """Write report.md, report.html, metrics.json, the CSV tables and the PNG figures."""
    out_dir = Path(out_dir)
    check_destination(out_dir)
    payload = {"generator": GENERATOR, "version": __version__, **result}
    # allow_nan=False: a NaN that slipped through would stop the report here, not reach a reader.
    text = json.dumps(payload, indent=1, allow_nan=False)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        made = figures.write_all(result, tmp)
        md = render_markdown(result, made)
        (tmp / "report.md").write_text(md, encoding="utf-8")
        (tmp / "report.html").write_text(render_html(md, tmp), encoding="utf-8")
        (tmp / "metrics.json").write_text(text, encoding="utf-8")
        for name, content in csv_tables(result).items():
            (tmp / name).write_text(content, encoding="utf-8")
    return out_dir

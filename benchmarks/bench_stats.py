"""Speed of the evaluation statistics: DeLong on a million scores, 1000 bootstrap replicas on 260
cases (Kang's test set size), and a whole `microcalcai evaluate` report.

Run: .venv/bin/python benchmarks/bench_stats.py [--repeats 3]
Prints a Markdown section for benchmarks/RESULTS.md. Baselines (scikit-learn's AUC, a loop of
scikit-learn AUCs over index-resampled replicas) are timed in the same run, so ratios are
comparable even on a busy machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from microcalcai.evaluate import bootstrap, compare, roc

    rng = np.random.default_rng(0)
    rows = []

    # DeLong on one million scores (40% positive), one column and a paired test of two.
    n = 1_000_000
    y = rng.random(n) < 0.4
    s1 = y * 0.8 + rng.normal(size=n)
    s2 = s1 + rng.normal(0, 0.5, n)
    t_delong = best_of(lambda: roc.auc_delong(y, s1), args.repeats)
    t_paired = best_of(lambda: compare.delong_paired(y, s1, s2), args.repeats)
    t_sklearn = best_of(lambda: roc_auc_score(y, s1), args.repeats)
    rows += [
        ("DeLong AUC + variance + CI, 1,000,000 scores", t_delong, ""),
        ("paired DeLong test, 2 x 1,000,000 scores", t_paired, ""),
        (
            "scikit-learn roc_auc_score (AUC only), 1,000,000 scores",
            t_sklearn,
            f"DeLong / sklearn = {t_delong / t_sklearn:.2f}",
        ),
    ]

    # 1000 stratified bootstrap replicas on 260 cases (Kang's test set).
    m = 260
    y = rng.random(m) < 0.37
    s = y * 1.2 + rng.normal(size=m)
    stat = bootstrap.weighted_auc(y, s)
    t_pct = best_of(lambda: bootstrap.bootstrap_ci(stat, y, n_boot=1000, seed=1), args.repeats)
    t_bca = best_of(lambda: bootstrap.bootstrap_ci(stat, y, n_boot=1000, seed=1, method="bca"), args.repeats)
    patients = np.sort(rng.integers(0, 145, m))
    t_cl = best_of(
        lambda: bootstrap.bootstrap_ci(stat, y, n_boot=1000, seed=1, clusters=patients), args.repeats
    )

    def loop_baseline():
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        r = np.random.default_rng(1)
        for _ in range(1000):
            idx = np.r_[r.choice(pos, pos.size), r.choice(neg, neg.size)]
            roc_auc_score(y[idx], s[idx])

    t_loop = best_of(loop_baseline, args.repeats)
    rows += [
        (
            "1000 stratified bootstrap AUC replicas, 260 cases, percentile CI",
            t_pct,
            f"loop / ours = {t_loop / t_pct:.0f}x",
        ),
        ("the same with BCa (adds the 260-case jackknife)", t_bca, ""),
        ("1000 patient-clustered replicas, 260 ROIs of 145 patients", t_cl, ""),
        ("baseline: loop of 1000 scikit-learn AUCs on resampled indices", t_loop, ""),
    ]

    # A whole report: ensemble of five members + reader, 260 ROIs, 1000 replicas.
    import pandas as pd

    from microcalcai.evaluate.analysis import evaluate_predictions
    from microcalcai.evaluate.predictions import read_predictions
    from microcalcai.evaluate.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        df = pd.DataFrame(
            {
                "case_id": [f"c{i}" for i in range(m)],
                "patient_id": [f"p{p}" for p in patients],
                "image_id": [f"i{i}" for i in range(m)],
                "label": np.where(y, "malignant", "benign"),
            }
        )
        members = []
        for k in range(5):
            p = 1 / (1 + np.exp(-(1.3 * (2 * y - 1) + rng.normal(0, 1.2, m))))
            df[f"p_m{k}"] = p
            members.append(p)
        df["probability"] = np.mean(members, axis=0)
        df["threshold"] = 0.5
        df["decision"] = np.where(df["probability"] >= 0.5, "malignant", "benign")
        df["model"] = "ensemble"
        df["reader_r1"] = np.clip(np.round(3 + 1.2 * y + rng.normal(0, 0.9, m)), 2, 5)
        path = Path(tmp) / "predictions.csv"
        df.to_csv(path, index=False)
        t0 = time.perf_counter()
        result = evaluate_predictions(read_predictions([path]))
        t_eval = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_report(result, Path(tmp) / "report")
        t_write = time.perf_counter() - t0
    rows += [
        ("evaluate: statistics for 7 score columns, 260 ROIs, 1000 replicas, GEE + DeLong", t_eval, ""),
        ("evaluate: report (5 PNG figures, Markdown, HTML, JSON, CSV)", t_write, ""),
    ]

    cpu = platform.processor() or platform.machine()
    print(
        f"Machine: {platform.node()}, {cpu}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
        f"numpy {np.__version__}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"best of {args.repeats}."
    )
    print()
    print("| what | seconds | note |")
    print("|---|---|---|")
    for what, sec, note in rows:
        print(f"| {what} | {sec:.3f} | {note} |")


if __name__ == "__main__":
    main()

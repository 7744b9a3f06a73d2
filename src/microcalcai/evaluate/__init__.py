"""Evaluation statistics and reports: ROC/AUC with DeLong and bootstrap CIs, binary metrics,
model comparisons (DeLong, McNemar, GEE, Wilcoxon), calibration, and the Table 1 report.

Modules: inputs, roc, compare, gee, bootstrap, binary, calibration, predictions, analysis,
figures, report. See docs/evaluate.md.
"""

"""Report figures (matplotlib, Agg): ROC curves, ROC with bootstrap band, confusion matrices,
reliability diagram, precision-recall curves. Each function takes the dict that
analysis.evaluate_predictions returns and writes one PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from microcalcai_logic.contract import LABELS

DPI = 150


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def _panels(result: dict, width: float, height: float):
    """A grid with one panel per model (unused cells hidden): (figure, [(axes, model name)])."""
    names = list(result["models"])
    rows, cols = _grid(len(names))
    fig, axes = _plt().subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained"
    )
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    return fig, list(zip(axes.flat, names, strict=False))


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)  # constrained layout; bbox "tight" would draw everything twice
    _plt().close(fig)
    return path


def _roc_axes(ax, title: str = "") -> None:
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("Sensitivity")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def roc_curves(result: dict, path: Path) -> Path:
    """All models on one plot, AUC (95% CI) in the legend (Kang Fig. 1a)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), layout="constrained")
    for name, m in result["models"].items():
        lo, hi = m["auc_ci"]
        ax.plot(
            m["roc_curve"]["fpr"],
            m["roc_curve"]["tpr"],
            lw=1.5,
            label=f"{name}: {m['auc']:.3f} ({lo:.3f}-{hi:.3f})",
        )
    _roc_axes(ax, "ROC curves, AUC (95% CI, DeLong)")
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def roc_bands(result: dict, path: Path) -> Path:
    """One panel per model: the ROC curve with its pointwise bootstrap band (Kang Fig. 1b)."""
    fig, panels = _panels(result, 4.2, 4.2)
    level = int(round(result["conf_level"] * 100))
    for ax, name in panels:
        m = result["models"][name]
        band = m["roc_band"]
        ax.fill_between(
            band["fpr"],
            band["tpr_lower"],
            band["tpr_upper"],
            color="tab:blue",
            alpha=0.25,
            lw=0,
            label=f"{level}% CI ({result['bootstrap']['n_boot']} bootstrap replicas)",
        )
        ax.plot(
            m["roc_curve"]["fpr"],
            m["roc_curve"]["tpr"],
            color="tab:blue",
            lw=1.5,
            label=f"AUC {m['auc']:.3f}",
        )
        cut = m["cutoff"]
        sens, spec = m["metrics"]["sensitivity"]["value"], m["metrics"]["specificity"]["value"]
        if sens is not None and spec is not None:
            ax.plot(
                [1 - spec],
                [sens],
                "o",
                color="tab:red",
                ms=5,
                label=f"cut-off {cut['label']} ({cut['method']})",
            )
        _roc_axes(ax, name)
        ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def confusion_matrices(result: dict, path: Path) -> Path:
    fig, panels = _panels(result, 3.4, 3.2)
    for ax, name in panels:
        c = result["models"][name]["confusion"]
        mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(mat, cmap="Blues", vmin=0, vmax=max(int(mat.max()), 1))
        for (i, j), v in np.ndenumerate(mat):
            share = v / mat[i].sum() if mat[i].sum() else 0.0
            ax.text(
                j,
                i,
                f"{v}\n({share:.0%})",
                ha="center",
                va="center",
                color="white" if v > mat.max() / 2 else "black",
                fontsize=9,
            )
        ax.set_xticks([0, 1], LABELS)
        ax.set_yticks([0, 1], LABELS)
        ax.set_xlabel("Predicted")
        ax.set_ylabel("Histology")
        ax.set_title(f"{name} (cut-off {result['models'][name]['cutoff']['label']})", fontsize=9)
    return _save(fig, path)


def calibration_plot(result: dict, path: Path) -> Path | None:
    """Reliability diagram (observed vs predicted, Wilson CIs) with the counts per bin below."""
    models = {n: m for n, m in result["models"].items() if "reliability" in m}
    if not models:
        return None
    plt = _plt()
    fig, (ax, axh) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True, layout="constrained"
    )
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8, label="perfect calibration")
    width = 0.8 / (10 * len(models))
    for k, (name, m) in enumerate(models.items()):
        r = m["reliability"]
        x, obs = np.array(r["mean_predicted"]), np.array(r["observed"])
        ci = np.array(r["observed_ci"]).reshape(-1, 2)
        yerr = np.clip([obs - ci[:, 0], ci[:, 1] - obs], 0.0, None)  # Wilson bounds can miss obs by 1e-17
        ax.errorbar(
            x, obs, yerr=yerr, marker="o", ms=4, capsize=2, lw=1, label=f"{name} (Brier {m['brier']:.3f})"
        )
        axh.bar(x + (k - len(models) / 2) * width, r["count"], width=width, label=name)
    ax.set_ylabel("Observed fraction malignant")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Calibration (reliability diagram)", fontsize=10)
    axh.set_xlabel("Predicted probability of malignancy")
    axh.set_ylabel("ROIs")
    axh.grid(alpha=0.3)
    return _save(fig, path)


def pr_curves(result: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
    for name, m in result["models"].items():
        ax.step(
            m["pr_curve"]["recall"],
            m["pr_curve"]["precision"],
            where="post",
            lw=1.5,
            label=f"{name}: AP {m['pr_auc']:.3f}",
        )
    prevalence = next(iter(result["models"].values()))["prevalence"]
    ax.axhline(prevalence, color="0.6", ls="--", lw=0.8, label=f"prevalence {prevalence:.3f}")
    ax.set_xlabel("Recall (sensitivity)")
    ax.set_ylabel("Precision (PPV)")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("Precision-recall curves", fontsize=10)
    return _save(fig, path)


def write_all(result: dict, out_dir: Path) -> dict[str, str]:
    """Every figure into out_dir; returns {figure key: file name}."""
    made = {
        "roc_curves": roc_curves(result, out_dir / "roc_curves.png"),
        "roc_bands": roc_bands(result, out_dir / "roc_bootstrap_bands.png"),
        "confusion_matrices": confusion_matrices(result, out_dir / "confusion_matrices.png"),
        "calibration": calibration_plot(result, out_dir / "calibration.png"),
        "pr_curves": pr_curves(result, out_dir / "pr_curves.png"),
    }
    return {k: p.name for k, p in made.items() if p is not None}

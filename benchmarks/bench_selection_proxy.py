"""Selection strategies on frozen features: many seeds and long curves in minutes, not hours.

bench_active_learning.py measures the real loop (server, /train of whole networks), 25-40 min a
round for three seeds on this machine: three seeds give paired differences of +-0.05 AUC, wider
than any gap between strategies. This benchmark asks the question underneath it, cheaply: with
the representation held fixed and only a classifier head learning (scikit-learn's logistic
regression on the served models' features: a late loop's regime, or an early one's with the
ImageNet weights' features), does
any way of choosing labels reach random's AUC with 70% of its labels on this phantom, and how
much do label noise and sampling bias cost?

Inputs are the active-learning benchmark's own data (its OUT/data: pool, test) and the features
of a served ensemble (its members' pooled features, as the `uncertain` strategies use them), or
of the ImageNet weights. Strategies reuse the server's selection functions (diverse, balanced,
typical); stochastic ("power") acquisition and its importance-weighted form are tried here
first, before any of them is worth a server strategy. Diagnostics that see the phantom's truth
say what label noise costs.

Usage: .venv/bin/python benchmarks/bench_selection_proxy.py --data /tmp/al/data \
    --features-from /tmp/al/work/cold-seed0/workspace/models/ensemble/versions/3 --out /tmp/proxy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_active_learning import (  # noqa: E402
    CLEAN_NOISE,
    TestSet,
    labels_to_reach,
    load_average,
    log,
    machine,
    make_members,
    phantom_rows,
    utc_now,
)

POWER_BETA = 1.0  # Kirsch et al. 2023's default: sample in proportion to the score itself
WEIGHT_CAP = 20.0  # importance weights clipped (a confident ROI drawn by chance would swamp the fit)
C = 0.03  # logistic regression's inverse L2 strength; chosen on random's curve (see --tune)
COMPONENTS = 64
PARTS = ("pool", "test", "val")
LOOKAHEAD = 20  # oracle-lookahead: random batches tried per round, the best on the validation ROIs kept


def feature_source(source: str, scratch: Path) -> Path:
    """The ensemble folder to take features from: the one given, or two ImageNet members
    (bench_active_learning's, fresh heads) built under `scratch`."""
    if source != "imagenet":
        return Path(source).resolve()
    make_members(scratch / "workspace", scratch / "built")
    ensemble = scratch / "workspace" / "models" / "ensemble"
    return ensemble / "versions" / (ensemble / "current").read_text().strip()


def load_features(args) -> dict:
    import tempfile

    from microcalcai.models.predictor import load_predictor
    from microcalcai.server.uncertainty import embeddings

    rows = {part: phantom_rows(args.data / part) for part in PARTS}
    missing = [part for part in PARTS if not (args.out / f"features-{part}.npy").is_file()]
    if missing:
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            # the members' pooled features, each member's at unit length, as the server's
            # `uncertain` strategies see the pool (server/uncertainty.py)
            predictor = load_predictor(feature_source(args.features_from, Path(scratch)), device="cpu")
            for part in missing:
                started = time.monotonic()
                crops = TestSet(args.data / part, rows[part]).crops  # cropped as /infer crops
                np.save(args.out / f"features-{part}.npy", embeddings(predictor, crops))
                log(f"features of {len(rows[part])} {part} ROIs in {time.monotonic() - started:.0f} s")
    saved = {part: np.load(args.out / f"features-{part}.npy") for part in PARTS}
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    # unsupervised reduction fitted on the pool alone (the unlabelled ROIs any strategy may see)
    pca = PCA(n_components=COMPONENTS, random_state=0).fit(saved["pool"])
    scaler = StandardScaler().fit(pca.transform(saved["pool"]))
    data = {"pool_raw": saved["pool"]}
    for part in PARTS:
        data[part] = scaler.transform(pca.transform(saved[part]))
        data[f"{part}_p"] = np.array([float(r["p_malignant"]) for r in rows[part]])
        data[f"{part}_y"] = np.array([int(r["label"] == "malignant") for r in rows[part]])
    return data


def fit(x, y, weight=None, c=C):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x, y, sample_weight=weight)


def gumbel_top(log_weight: np.ndarray, count: int, rng) -> np.ndarray:
    """`count` draws without replacement with chance proportional to exp(log_weight)."""
    keys = log_weight + rng.gumbel(size=len(log_weight))
    return np.argsort(-keys)[:count]


def entropy(p):
    from microcalcai.server.uncertainty import binary_entropy

    return binary_entropy(np.clip(p, 1e-7, 1 - 1e-7))


def choose(strategy, data, labelled, model, count, rng, round_seed):
    """(indices into the pool, importance weights for them or None)."""
    from microcalcai.server.typicality import typical_batch
    from microcalcai.server.uncertainty import balanced_batch, diverse_batch

    free = np.flatnonzero(~labelled)
    if strategy in ("random", "denoised"):
        return rng.choice(free, size=count, replace=False), None
    if strategy == "oracle-clean":
        p = data["pool_p"][free]
        clear = free[p * (1 - p) <= CLEAN_NOISE]
        return rng.choice(clear, size=count, replace=False), None
    if strategy == "oracle-noisy-first":  # the ROIs whose labels are most random, by truth
        p = data["pool_p"][free]
        return free[gumbel_top(np.log(p * (1 - p) + 1e-9) * 4, count, rng)], None
    if strategy == "oracle-lookahead":
        return lookahead(data, labelled, count, rng), None
    if strategy == "typical":
        return np.asarray(typical_batch(data["pool_raw"], labelled, count, seed=round_seed)), None
    prob = model.predict_proba(data["pool"][free])[:, 1]
    score = entropy(prob)
    if strategy == "entropy":
        return free[np.argsort(-score)[:count]], None
    if strategy == "diverse":
        return free[diverse_batch(score, data["pool_raw"][free], count, seed=round_seed)], None
    if strategy == "balanced":
        return free[balanced_batch(score, prob, count, threshold=np.median(prob))], None
    if strategy in ("power", "power-iw"):
        log_weight = POWER_BETA * np.log(np.maximum(score, 1e-9))
        picked = gumbel_top(log_weight, count, rng)
        if strategy == "power":
            return free[picked], None
        # chance of each ROI per draw, relative to uniform: weight = mean score / its score
        chance = np.exp(log_weight - log_weight.max())
        chance /= chance.sum()
        weight = np.minimum(1.0 / (len(free) * chance[picked]), WEIGHT_CAP)
        return free[picked], weight
    if strategy == "mix":  # half random, half the most uncertain
        top = list(free[np.argsort(-score)[: count // 2]])
        rest = np.setdiff1d(free, top)
        return np.concatenate([top, rng.choice(rest, size=count - len(top), replace=False)]), None
    raise ValueError(strategy)


def lookahead(data, labelled, count, rng) -> np.ndarray:
    """Of LOOKAHEAD random batches, the one whose labels (the annotator's answers, seen ahead)
    give the best AUC on the validation ROIs of other patients. Not a strategy (no deployable
    strategy knows the labels before it asks), and no upper bound either: on 113 validation ROIs
    the AUCs of the batches differ by less than their noise (benchmarks/RESULTS.md)."""
    from sklearn.metrics import roc_auc_score

    free = np.flatnonzero(~labelled)
    best, best_auc = None, -1.0
    for _ in range(LOOKAHEAD):
        batch = rng.choice(free, size=count, replace=False)
        rows = np.concatenate([np.flatnonzero(labelled), batch])
        if len(set(data["pool_y"][rows])) < 2:
            continue
        model = fit(data["pool"][rows], data["pool_y"][rows])
        auc = roc_auc_score(data["val_y"], model.predict_proba(data["val"])[:, 1])
        if auc > best_auc:
            best, best_auc = batch, auc
    return best if best is not None else rng.choice(free, size=count, replace=False)


def run(strategy, data, seed, cold, batch, upto, c=C):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = len(data["pool"])
    labelled = np.zeros(n, dtype=bool)
    weight = np.ones(n)
    y = data["pool_y"].copy()
    if strategy == "denoised":
        y = (data["pool_p"] > 0.5).astype(int)
    first = np.random.default_rng(10_000 + seed).choice(n, size=cold, replace=False)  # shared cold start
    labelled[first] = True
    curve, model, step = [], None, 0
    while True:
        rows = np.flatnonzero(labelled)
        if len(set(y[rows])) < 2:
            auc = 0.5
            model = None
        else:
            model = fit(data["pool"][rows], y[rows], weight[rows], c=c)
            auc = float(roc_auc_score(data["test_y"], model.predict_proba(data["test"])[:, 1]))
        curve.append((int(labelled.sum()), auc))
        if labelled.sum() + batch > upto:
            return curve
        step += 1
        kind = strategy if model is not None else "random"
        picked, w = choose(kind, data, labelled, model, batch, rng, 1000 * seed + step)
        labelled[picked] = True
        if w is not None:
            weight[picked] = w


def summarise(curves: dict, labels: list[int]) -> dict:
    from scipy.integrate import trapezoid  # np.trapz is gone from numpy 2's namespace

    random = np.array([[a for _, a in c] for c in curves["random"]])
    target = float(random.mean(axis=0)[-1])
    out = {}
    for name, runs in curves.items():
        auc = np.array([[a for _, a in c] for c in runs])
        mean = auc.mean(axis=0)
        reach = labels_to_reach(labels, mean, target)
        diff = auc - random
        half = 1.96 * diff.std(axis=0, ddof=1) / np.sqrt(len(runs))
        out[name] = {
            "mean_auc": [round(float(v), 4) for v in mean],
            "minus_random": [round(float(v), 4) for v in diff.mean(axis=0)],
            "minus_random_ci95_half": [round(float(v), 4) for v in half],
            "area_under_curve": round(float(trapezoid(mean, labels) / (labels[-1] - labels[0])), 4),
            "labels_to_random_final": reach,
            "share_of_random_labels": None if reach is None else round(reach / labels[-1], 3),
        }
    return out


def draw(summary: dict, labels: list[int], figure: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, found in summary.items():
        style = "--" if name.startswith(("oracle", "denoised")) else "-"
        colour = "0.2" if name == "random" else None
        ax.plot(
            labels, found["mean_auc"], style, label=name, color=colour, lw=2.2 if name == "random" else 1.3
        )
    ax.set_xlabel("labels")
    ax.set_ylabel("test AUC (logistic head on frozen features)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    plt.close(fig)


STRATEGIES = [
    "random",
    "entropy",
    "diverse",
    "balanced",
    "typical",
    "mix",
    "power",
    "power-iw",
    "denoised",
    "oracle-clean",
    "oracle-noisy-first",
    "oracle-lookahead",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="bench_active_learning.py's OUT/data")
    parser.add_argument("--features-from", required=True, help="a served ensemble folder, or imagenet")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--cold-start", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--upto", type=int, default=600)
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--tune", action="store_true", help="only random's final AUC for a range of C")
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = load_features(args)
    from sklearn.metrics import roc_auc_score

    bayes = float(roc_auc_score(data["test_y"], data["test_p"]))
    if args.tune:
        for c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
            finals = [
                run("random", data, s, args.cold_start, args.batch, args.upto, c=c)[-1][1] for s in range(5)
            ]
            log(f"C {c}: random's AUC at {args.upto} labels {np.mean(finals):.3f}")
        return 0
    curves, started = {}, time.monotonic()
    for done, strategy in enumerate(args.strategies, 1):
        curves[strategy] = [
            run(strategy, data, s, args.cold_start, args.batch, args.upto) for s in range(args.seeds)
        ]
        rate = (time.monotonic() - started) / done
        log(f"{strategy}: {curves[strategy][0][-1]}; ETA {rate * (len(args.strategies) - done) / 60:.1f} min")
    labels = [n for n, _ in curves["random"][0]]
    (args.out / "curves.json").write_text(json.dumps(curves) + "\n")
    summary = {
        "config": {
            "features_from": args.features_from,
            "pool_rois": len(data["pool"]),
            "test_rois": len(data["test"]),
            "seeds": args.seeds,
            "cold_start": args.cold_start,
            "batch": args.batch,
            "C": C,
            "components": COMPONENTS,
            "power_beta": POWER_BETA,
            "weight_cap": WEIGHT_CAP,
        },
        "labels": labels,
        "test_bayes_auc": round(bayes, 4),
        "machine": machine(),
        "load_average": load_average(),
        "finished": utc_now(),
        "strategies": summarise(curves, labels),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name, found in summary["strategies"].items():
        log(
            f"{name:20s} AUC@{labels[len(labels) // 4]} {found['mean_auc'][len(labels) // 4]:.3f} "
            f"@{labels[len(labels) // 2]} {found['mean_auc'][len(labels) // 2]:.3f} "
            f"final {found['mean_auc'][-1]:.3f} "
            f"area {found['area_under_curve']:.3f} share {found['share_of_random_labels']}"
        )
    draw(
        summary["strategies"],
        labels,
        args.figure or args.out / "selection-proxy.png",
        f"{args.seeds} seeds, features of {Path(args.features_from).name}, test Bayes AUC {bayes:.3f}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reading predictions.csv files (docs/DESIGN.md) into aligned score columns for evaluation.

One file per `microcalcai predict` run: one row per ROI with `case_id, patient_id, image_id,
label, split, p_<member>..., probability, threshold, decision, model` and optional
`threshold_<member>` (each member's validation threshold), `reader_<name>` and `intended_use`
(what the demonstration models that made the scores are for) columns.
Several files (one per model, or an ensemble file beside its members' files) are aligned on
case_id; they must hold the same cases with the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from microcalcai_logic.contract import (
    INTENDED_USE_COLUMN,
    LABELS,
    MEMBER_PROBABILITY_PREFIX,
    MEMBER_THRESHOLD_PREFIX,
    POSITIVE_LABEL,
    PREDICTION_REQUIRED_COLUMNS,
    READER_PREFIX,
    label_of,
)

from microcalcai.errors import InputError
from microcalcai.evaluate.inputs import check_two_classes

REQUIRED = PREDICTION_REQUIRED_COLUMNS
# BI-RADS assessment categories as ordinal numbers; 4a < 4b < 4c sit between 4 and 5.
BIRADS = {"4a": 4.25, "4b": 4.5, "4c": 4.75}


@dataclass
class ScoreColumn:
    name: str
    scores: np.ndarray
    kind: str  # "model", "ensemble", "member" or "reader"
    source: str  # file and column it came from
    # Stored, chosen on validation data by `microcalcai predict`: one number, or one per row for
    # out-of-fold predictions whose folds each chose their own.
    threshold: float | np.ndarray | None = None
    decision: np.ndarray | None = None  # stored decisions for the rows, when the file has them

    @property
    def is_probability(self) -> bool:
        return self.kind != "reader"


@dataclass
class PredictionSet:
    case_id: np.ndarray
    y: np.ndarray  # True = malignant
    patient_id: np.ndarray | None
    columns: list[ScoreColumn]
    sources: list[str]
    notes: list[str] = field(default_factory=list)
    # what the demonstration models among the scores' makers are for ("" entries never)
    demonstration: list[str] = field(default_factory=list)

    @property
    def clustered(self) -> bool:
        """True when some patient contributes more than one ROI."""
        return self.patient_id is not None and np.unique(self.patient_id).size < self.patient_id.size

    @property
    def clusters(self) -> np.ndarray:
        return self.patient_id if self.patient_id is not None else self.case_id


def read_predictions(paths: list[str | Path], *, split: str = "auto") -> PredictionSet:
    """Read, validate and align one or more predictions.csv files.

    `split`: "auto" keeps the rows of split `test` when the column has any, else every row;
    "all" keeps every row; any other value keeps that split's rows.
    """
    if not paths:
        raise InputError("give at least one predictions file (--predictions predictions.csv)")
    tables = [_read_one(Path(p), split) for p in paths]
    base = tables[0]
    notes = list(base["notes"])
    columns = list(base["columns"])
    demonstration = list(dict.fromkeys(use for t in tables for use in t["demonstration"]))
    for other in tables[1:]:
        order = _align(base, other)
        notes.extend(other["notes"])
        for col in other["columns"]:
            col.scores = col.scores[order]
            if col.decision is not None:
                col.decision = col.decision[order]
            if isinstance(col.threshold, np.ndarray):
                col.threshold = col.threshold[order]
            columns = _merge_column(columns, col)
    y = base["y"]
    check_two_classes(y, name="label", source=base["path"])
    if len(paths) > 1:
        notes.append(f"{len(paths)} prediction files aligned on case_id ({y.size} cases)")
    sources = [str(p) for p in paths]
    return PredictionSet(base["case_id"], y, base["patient_id"], columns, sources, notes, demonstration)


def _read_one(path: Path, split: str) -> dict:
    import pandas as pd

    if not path.is_file():
        raise InputError(f"predictions file {path} does not exist")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several parser errors
        raise InputError(f"cannot read {path} as CSV: {exc}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(
            f"{path} lacks the column(s) {', '.join(missing)}; a predictions file needs "
            f"{', '.join(REQUIRED)} (see docs/DESIGN.md, predictions.csv)"
        )
    notes = []
    if split != "all":
        has_split = "split" in df.columns and (df["split"].str.strip() != "").any()
        if split == "auto":
            if has_split and (df["split"].str.strip() == "test").any():
                df = df[df["split"].str.strip() == "test"]
                notes.append(f"{path.name}: evaluated on the {len(df)} rows of split 'test'")
            else:
                notes.append(
                    f"{path.name}: no rows of split 'test', so all {len(df)} rows were evaluated; "
                    "if the model learned from some of these cases the figures overstate it "
                    "(predict a held-out set, or choose rows with --split)"
                )
        else:
            if not has_split:
                raise InputError(
                    f"{path} has no split values (the column is missing or empty), so --split {split} "
                    "cannot select rows; `microcalcai predict` fills them on the manifest a model was "
                    "trained on"
                )
            df = df[df["split"].str.strip() == split]
            if df.empty:
                raise InputError(f"{path} has no rows with split {split!r}")
    label_text = df["label"].str.strip().str.lower()
    unknown = label_text == ""
    if unknown.any():
        notes.append(f"{path.name}: {int(unknown.sum())} row(s) without a label left out")
        df, label_text = df[~unknown], label_text[~unknown]
    label_text = label_text.map(label_of)
    bad = label_text.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{path}: label {df['label'].iloc[row]!r} in case {df['case_id'].iloc[row]!r} is neither "
            "'benign' nor 'malignant' (nor 0/1)"
        )
    if df.empty:
        raise InputError(f"{path} has no labelled rows to evaluate")
    case_id = df["case_id"].str.strip().to_numpy()
    if (case_id == "").any():
        raise InputError(f"{path}: {int((case_id == '').sum())} row(s) have an empty case_id")
    dup = pd.Series(case_id).duplicated()
    if dup.any():
        raise InputError(
            f"{path}: case_id {case_id[dup.to_numpy()][0]!r} occurs more than once; "
            "case ids are unique per ROI"
        )
    patient = None
    if "patient_id" in df.columns and (df["patient_id"].str.strip() != "").all():
        patient = df["patient_id"].str.strip().to_numpy()
    else:
        notes.append(f"{path.name}: no complete patient_id column; each ROI is treated as its own patient")
    table = {
        "path": str(path),
        "case_id": case_id,
        "y": (label_text == POSITIVE_LABEL).to_numpy(dtype=bool),
        "patient_id": patient,
        "notes": notes,
        "demonstration": _demonstration_uses(df),
    }
    table["columns"] = _score_columns(df, path)
    return table


def _numeric(df, column: str, path: Path) -> np.ndarray:
    """A numeric column; a bad cell is named by its line in the file and its case_id (row
    positions would mislead once the split and unlabelled rows have been left out)."""
    import pandas as pd

    text = df[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = bad[0]
        what = "empty" if text.iloc[i] == "" else repr(text.iloc[i])
        raise InputError(
            f"{path}: column {column!r} has {bad.size} missing, non-numeric or infinite value(s); the "
            f"first is {what} at line {df.index[i] + 2} (case {df['case_id'].iloc[i]!r}). Every case "
            "needs a finite number: fix or remove those rows"
        )
    return values


def _constant(df, column: str, path: Path) -> str:
    values = df[column].str.strip().unique()
    if len(values) > 1:
        raise InputError(
            f"{path}: column {column!r} holds several values ({', '.join(values[:4])}); "
            "one file holds one model"
        )
    return values[0] if len(values) else ""


def _thresholds(df, path: Path, column: str = "threshold") -> float | np.ndarray | None:
    """A stored threshold column (`threshold`, or `threshold_<member>`): one number, or one per
    row (out-of-fold predictions keep each fold's own), or None when the column is absent or
    empty (files written before member thresholds were stored)."""
    if column not in df.columns or (df[column].str.strip() == "").all():
        return None
    values = _numeric(df, column, path)
    return float(values[0]) if np.all(values == values[0]) else values


def _demonstration_uses(df) -> list[str]:
    if INTENDED_USE_COLUMN not in df.columns:
        return []
    return list(dict.fromkeys(u for u in df[INTENDED_USE_COLUMN].str.strip() if u))


def _score_columns(df, path: Path) -> list[ScoreColumn]:
    model = _constant(df, "model", path) if "model" in df.columns else ""
    model = model or path.stem
    p_, reader_ = MEMBER_PROBABILITY_PREFIX, READER_PREFIX
    members = [c for c in df.columns if c.startswith(p_) and len(c) > len(p_)]
    probability = _numeric(df, "probability", path)
    if probability.min() < 0.0 or probability.max() > 1.0:
        raise InputError(f"{path}: column 'probability' must hold probabilities in [0, 1]")
    threshold = _thresholds(df, path)
    decision = None
    if threshold is not None and "decision" in df.columns:
        text = df["decision"].str.strip().str.lower()
        if not text.isin(LABELS).all():
            raise InputError(f"{path}: column 'decision' must hold 'benign' or 'malignant' in every row")
        decision = (text == POSITIVE_LABEL).to_numpy()
    columns = []
    member_scores = {c[len(p_) :]: _numeric(df, c, path) for c in members}
    single_same = len(member_scores) == 1 and np.allclose(next(iter(member_scores.values())), probability)
    kind = "model" if (not member_scores or single_same) else "ensemble"
    columns.append(ScoreColumn(model, probability, kind, f"{path.name}:probability", threshold, decision))
    if not single_same:
        for name, scores in member_scores.items():
            # The member's own validation threshold when the file stores it; else evaluation
            # falls back to a Youden cut-off on the evaluated cases (flagged as optimistic).
            member_threshold = _thresholds(df, path, MEMBER_THRESHOLD_PREFIX + name)
            columns.append(ScoreColumn(name, scores, "member", f"{path.name}:{p_}{name}", member_threshold))
    for c in df.columns:
        if c.startswith(reader_) and len(c) > len(reader_):
            name = c[len(reader_) :]
            columns.append(ScoreColumn(name, _reader_scores(df, c, path), "reader", f"{path.name}:{c}"))
    return columns


def reader_score(text: str) -> float:
    """One reader score as a number: '4a' -> 4.25 (BI-RADS), '3' -> 3.0."""
    value = BIRADS.get(str(text).strip().lower(), str(text).strip())
    try:
        return float(value)
    except ValueError:
        raise InputError(
            f"reader score {text!r} is neither a number nor a BI-RADS category 4a/4b/4c"
        ) from None


def _reader_scores(df, column: str, path: Path) -> np.ndarray:
    """Numbers, or BI-RADS categories with 4a/4b/4c placed between 4 and 5."""
    text = df[column].str.strip()
    birads = text.str.lower().map(lambda v: str(BIRADS[v]) if v in BIRADS else None)
    return _numeric(df.assign(**{column: birads.fillna(text)}), column, path)


def _align(base: dict, other: dict) -> np.ndarray:
    """Row order that puts `other`'s cases in `base`'s order; refuses different case sets."""
    a, b = base["case_id"], other["case_id"]
    only_a, only_b = np.setdiff1d(a, b), np.setdiff1d(b, a)
    if only_a.size or only_b.size:
        raise InputError(
            f"the prediction files hold different cases: {only_a.size} case id(s) only in {base['path']} "
            f"(e.g. {', '.join(only_a[:3])}) and {only_b.size} only in {other['path']} "
            f"(e.g. {', '.join(only_b[:3])}); evaluate files predicted on the same ROIs"
        )
    pos = {cid: i for i, cid in enumerate(b)}
    order = np.array([pos[cid] for cid in a])
    differ = np.flatnonzero(base["y"] != other["y"][order])
    if differ.size:
        raise InputError(
            f"case {a[differ[0]]!r} is labelled differently in {base['path']} and {other['path']} "
            f"({differ.size} case(s) disagree)"
        )
    if base["patient_id"] is not None and other["patient_id"] is not None:
        if np.any(base["patient_id"] != other["patient_id"][order]):
            raise InputError(f"{base['path']} and {other['path']} assign some cases to different patients")
    return order


def _merge_column(columns: list[ScoreColumn], new: ScoreColumn) -> list[ScoreColumn]:
    """Add a column; the same model seen in two files (same name and scores) is kept once."""
    for i, old in enumerate(columns):
        if old.name != new.name:
            continue
        if np.allclose(old.scores, new.scores, rtol=0.0, atol=1e-9):
            if old.threshold is None and new.threshold is not None:
                columns[i] = new  # prefer the copy that carries its validation threshold
            return columns
        new.name = f"{new.name} [{new.source.split(':')[0]}]"
    return [*columns, new]

"""Patient-level splits of a manifest: train/val/test, k folds, and temporal.

Every split keeps all rows of a patient together, so no patient is in two splits. Stratification
is by patient: a patient counts as malignant when any of their ROIs is malignant. Fractions are
fractions of patients. The same seed and the same manifest give the same split.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from microcalcai.data.manifest import parse_dates
from microcalcai.errors import InputError

log = logging.getLogger(__name__)


def _check(df: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"the manifest has no {', '.join(missing)} column; splits need {', '.join(columns)}")
    if df.empty:
        raise InputError("the manifest has no rows to split")
    blank = df["patient_id"].isna()
    if blank.any():
        raise InputError(
            f"{int(blank.sum())} row(s) have no patient_id; every row needs one to split by patient"
        )


def patient_labels(df: pd.DataFrame) -> pd.Series:
    """One label per patient: malignant if any of the patient's ROIs is malignant."""
    return (
        (df["label"] == "malignant")
        .groupby(df["patient_id"], sort=True)
        .any()
        .map({True: "malignant", False: "benign"})
    )


def _split_patients(patients: pd.Series, fraction: float, seed: int, stratify: bool, name: str):
    """Split a Series of patient labels into (rest, chosen) with `fraction` of patients chosen."""
    if fraction <= 0:
        return patients, patients.iloc[:0]
    count = int(round(fraction * len(patients)))
    if count < 1 or count >= len(patients):
        raise InputError(
            f"{name}={fraction:g} of {len(patients)} patients leaves an empty split; "
            "use a fraction that gives at least one patient on each side"
        )
    try:
        rest, chosen = train_test_split(
            patients.index.to_numpy(),
            test_size=count,
            random_state=seed,
            shuffle=True,
            stratify=patients.to_numpy() if stratify else None,
        )
    except ValueError as exc:  # too few patients of a label to put some on both sides
        raise InputError(
            f"cannot draw {name}={fraction:g} of {len(patients)} patients stratified by label "
            f"({exc}); add data, change the fraction, or pass stratify=False (--no-stratify)"
        ) from exc
    return patients.loc[sorted(rest)], patients.loc[sorted(chosen)]


def patient_split(
    df: pd.DataFrame, val: float = 0.15, test: float = 0.15, seed: int = 0, stratify: bool = True
) -> pd.DataFrame:
    """A copy of `df` with a `split` column: train, val or test, by patient."""
    _check(df, ("patient_id", "label"))
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise InputError(f"val={val:g} and test={test:g} must be fractions in [0, 1) summing to less than 1")
    patients = patient_labels(df)
    rest, test_patients = _split_patients(patients, test, seed, stratify, "test")
    # val is a fraction of all patients, so it is rescaled to the patients left after test.
    train, val_patients = _split_patients(rest, val * len(patients) / len(rest), seed, stratify, "val")
    split = pd.Series("train", index=patients.index, dtype=object)
    split[val_patients.index] = "val"
    split[test_patients.index] = "test"
    out = df.copy()
    out["split"] = df["patient_id"].map(split).astype("str")
    return out


def patient_kfold(df: pd.DataFrame, k: int = 5, seed: int = 0) -> pd.DataFrame:
    """A copy of `df` with a `fold` column (0..k-1): patient-grouped, label-stratified folds."""
    _check(df, ("patient_id", "label"))
    patients = patient_labels(df)
    if k < 2 or k > len(patients):
        raise InputError(f"k={k} folds need 2 <= k <= the number of patients ({len(patients)})")
    # StratifiedGroupKFold keeps each patient's rows in one fold and balances labels across folds.
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.full(len(df), -1)
    for number, (_, held_out) in enumerate(
        splitter.split(np.zeros(len(df)), df["label"].to_numpy(), groups=df["patient_id"].to_numpy())
    ):
        fold[held_out] = number
    out = df.copy()
    out["fold"] = fold
    return out


def temporal_split(
    df: pd.DataFrame,
    test_after: str | None = None,
    *,
    test_years: float = 2.0,
    val: float = 0.0,
    seed: int = 0,
    stratify: bool = True,
) -> pd.DataFrame:
    """A copy of `df` with `split`: test for patients with a study after `test_after`, else train.

    `test_after` (a date) defaults to `test_years` before the latest study date, which makes the
    test set the last two years of studies as in Kang et al. A patient with studies on both
    sides of the date goes to test entirely, so training sees only earlier data and no patient is
    in two splits. `val` (a fraction of all patients) is then drawn from the training patients.
    """
    _check(df, ("patient_id", "label", "study_date"))
    dates, bad = parse_dates(df["study_date"])
    missing = dates.isna()
    if missing.any():
        rows = ", ".join(str(i) for i in df.index[missing][:8])
        raise InputError(
            f"{int(missing.sum())} row(s) have {'an unreadable' if bad.any() else 'no'} study_date "
            f"(rows {rows}); a temporal split needs a date on every row (YYYY-MM-DD)"
        )
    if test_after is None:
        cut = dates.max() - pd.DateOffset(years=int(test_years), days=int(round((test_years % 1) * 365.25)))
    else:
        cut, bad_cut = parse_dates(pd.Series([test_after]))
        if bad_cut.any():
            raise InputError(f"test_after {test_after!r} is not a date; use YYYY-MM-DD")
        cut = cut.iloc[0]
    late = (dates > cut).groupby(df["patient_id"]).any()
    if late.all() or not late.any():
        raise InputError(
            f"every patient falls on one side of {cut:%Y-%m-%d} (studies from {dates.min():%Y-%m-%d} "
            f"to {dates.max():%Y-%m-%d}); choose a cut inside that range (--test-after DATE, or "
            "--test-years shorter than the span)"
        )
    spanning = ((dates <= cut).groupby(df["patient_id"]).any() & late).sum()
    if spanning:
        log.info(
            "%d patient(s) have studies before and after %s: all their rows are in test",
            spanning,
            f"{cut:%Y-%m-%d}",
        )
    split = pd.Series(np.where(late, "test", "train"), index=late.index, dtype=object)
    if val > 0:
        labels = patient_labels(df)
        train_patients = labels[split[labels.index] == "train"]
        fraction = val * len(labels) / len(train_patients)
        _, val_patients = _split_patients(train_patients, fraction, seed, stratify, "val")
        split[val_patients.index] = "val"
    out = df.copy()
    out["split"] = df["patient_id"].map(split).astype("str")
    out.attrs["test_after"] = f"{cut:%Y-%m-%d}"
    return out


def check_patient_level(df: pd.DataFrame, column: str = "split") -> list[str]:
    """Patients that appear in more than one value of `column` (empty when the split is clean)."""
    counts = df.groupby("patient_id")[column].nunique()
    return sorted(counts.index[counts > 1])

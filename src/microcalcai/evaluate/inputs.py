"""Validation of labels and scores before any statistic is computed.

Every statistic in this package starts here, so that bad input (one class only, NaN or
infinite scores, too few cases, a positive value that never occurs) stops with one message
that names the column and says what to do, instead of a NaN deep inside a report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microcalcai.errors import InputError

# DeLong's variance divides by (m - 1) and (n - 1): two cases per class is the least it needs.
MIN_PER_CLASS = 2


def binary_labels(values: Sequence, positive, *, name: str = "label", source: str = "") -> np.ndarray:
    """Labels -> bool array (True = positive class), checking that `positive` occurs and that the
    column holds two classes.

    Values are compared as text, or as numbers when they are numbers, so `--positive 1` matches
    a column of 1/0 or 1.0/0.0 and `--positive Poor` a column of strings.
    """
    where = f" in {source}" if source else ""
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"column {name!r}{where} is empty: it needs one label per case")
    text = np.array([_label_text(v) for v in arr], dtype=object)
    missing = np.flatnonzero(text == "")
    if missing.size:
        raise InputError(
            f"column {name!r}{where} has {missing.size} empty label(s) (first at row {missing[0] + 1}); "
            "drop unlabelled cases before computing statistics"
        )
    pos = _label_text(positive)
    present = sorted(set(text.tolist()))
    numbers = [_as_number(v) for v in present]
    classes = set(numbers) if None not in numbers else set(present)
    if len(classes) > 2:
        # Positive-vs-rest would silently fold a third class (e.g. "unknown") into the negatives.
        raise InputError(
            f"column {name!r}{where} holds {len(classes)} different values "
            f"({', '.join(repr(v) for v in present[:10])}); ROC statistics need exactly two classes: "
            "keep only the cases of the two classes to compare"
        )
    if _as_number(pos) is not None:
        # "--positive 1" also matches 1.0 in the column (and the reverse): compare as numbers.
        matches = [v for v in present if _as_number(v) == _as_number(pos)]
        if matches:
            return np.isin(text, matches)
    if pos not in present:
        raise InputError(
            f"positive value {pos!r} does not occur in column {name!r}{where}; "
            f"the column holds {', '.join(repr(v) for v in present[:10])}: "
            "pass one of these as the positive class"
        )
    return text == pos


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _label_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if np.isnan(value):
            return ""
        if value.is_integer():  # 1.0 read by pandas from a column with blanks is the label 1
            return str(int(value))
    return str(value).strip()


def finite_scores(values, *, name: str = "score", source: str = "") -> np.ndarray:
    """Scores -> float64 array; refuses NaN, infinity and text with the row that holds it."""
    where = f" in {source}" if source else ""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        bad = _first_non_numeric(values)
        raise InputError(
            f"score column {name!r}{where} is not numeric (row {bad[0] + 1} holds {bad[1]!r}); "
            "scores must be numbers, higher meaning more likely positive"
        ) from None
    if arr.ndim != 1:
        raise InputError(f"score column {name!r}{where} must be one-dimensional, got shape {arr.shape}")
    bad_rows = np.flatnonzero(~np.isfinite(arr))
    if bad_rows.size:
        kind = "NaN (empty)" if np.isnan(arr[bad_rows[0]]) else "infinite"
        raise InputError(
            f"score column {name!r}{where} has {bad_rows.size} missing or non-finite value(s); the first, "
            f"at row {bad_rows[0] + 1}, is {kind}. Every case needs a finite score: remove those cases "
            "or fix the scores"
        )
    return arr


def _first_non_numeric(values) -> tuple[int, object]:
    for i, v in enumerate(values):
        try:
            float(v)
        except (TypeError, ValueError):
            return i, v
    return 0, None


def check_two_classes(y: np.ndarray, *, name: str = "label", source: str = "", minimum: int = MIN_PER_CLASS):
    """Refuse a label vector with one class only or with fewer than `minimum` cases in a class."""
    where = f" in {source}" if source else ""
    n_pos = int(np.count_nonzero(y))
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        only = "positive" if n_neg == 0 else "negative"
        raise InputError(
            f"column {name!r}{where} holds only {only} cases ({y.size} of them); ROC statistics need "
            "both classes: check the label column and the positive value"
        )
    if min(n_pos, n_neg) < minimum:
        raise InputError(
            f"column {name!r}{where} has {n_pos} positive and {n_neg} negative case(s); at least "
            f"{minimum} of each are needed for a variance or confidence interval"
        )
    return n_pos, n_neg

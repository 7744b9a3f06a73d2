"""Splits: patient-level, stratified by label, seeded; k-fold; temporal (last two years as test)."""

from __future__ import annotations

import pandas as pd
import pytest

from microcalcai.data.splits import (
    check_patient_level,
    patient_kfold,
    patient_labels,
    patient_split,
    temporal_split,
)
from microcalcai.errors import InputError


@pytest.fixture
def frame(fmt):
    return fmt.manifest_frame(n_patients=60, rois_per_patient=3)


def test_patient_split_keeps_patients_together_and_stratifies(frame):
    out = patient_split(frame, val=0.2, test=0.2, seed=1)
    assert check_patient_level(out) == []
    assert len(out) == len(frame) and frame.columns.tolist() + ["split"] == out.columns.tolist()
    assert "split" not in frame.columns  # a copy, the input is untouched
    per_patient = out.groupby("patient_id")["split"].first()
    assert per_patient.value_counts().to_dict() == {"train": 36, "val": 12, "test": 12}
    labels = patient_labels(frame)
    overall = (labels == "malignant").mean()
    for name in ("train", "val", "test"):
        share = (labels[per_patient[per_patient == name].index] == "malignant").mean()
        assert abs(share - overall) <= 0.05, (name, share, overall)


def test_patient_split_is_seeded(frame):
    a = patient_split(frame, seed=3)["split"].tolist()
    assert a == patient_split(frame, seed=3)["split"].tolist()
    assert a != patient_split(frame, seed=4)["split"].tolist()


def test_patient_with_any_malignant_roi_counts_as_malignant(fmt):
    df = fmt.manifest_frame(n_patients=2, rois_per_patient=2, malignant_every=5)
    df.loc[1, "label"] = "malignant"  # P000 has both labels (already malignant), P001 benign
    df.loc[3, "label"] = "malignant"  # now P001 mixed as well
    assert patient_labels(df).to_dict() == {"P000": "malignant", "P001": "malignant"}


def test_patient_split_bad_requests(frame, fmt):
    with pytest.raises(InputError, match="fractions"):
        patient_split(frame, val=0.6, test=0.5)
    tiny = fmt.manifest_frame(n_patients=4, malignant_every=4)  # one malignant patient
    with pytest.raises(InputError, match="stratified by label"):
        patient_split(tiny, val=0.25, test=0.25)
    unstratified = patient_split(tiny, val=0.25, test=0.25, stratify=False)
    assert sorted(unstratified.groupby("patient_id")["split"].first()) == ["test", "train", "train", "val"]
    with pytest.raises(InputError, match="no patient_id column"):
        patient_split(frame.drop(columns="patient_id"))


def test_kfold_patients_in_one_fold_each_with_both_labels(frame):
    out = patient_kfold(frame, k=5, seed=0)
    assert check_patient_level(out, "fold") == []
    assert sorted(out["fold"].unique()) == [0, 1, 2, 3, 4]
    for _, fold in out.groupby("fold"):
        assert set(fold["label"]) == {"benign", "malignant"}
        assert 10 <= fold["patient_id"].nunique() <= 14
    assert out["fold"].tolist() == patient_kfold(frame, k=5, seed=0)["fold"].tolist()
    with pytest.raises(InputError, match="k=1 folds"):
        patient_kfold(frame, k=1)


def test_temporal_split_last_two_years_is_test(frame):
    out = temporal_split(frame)  # studies from 2010-01-15 to 2019-03-15
    assert out.attrs["test_after"] == "2017-03-15"
    dates = pd.to_datetime(out["study_date"])
    assert (dates[out["split"] == "train"] <= "2017-03-15").all()
    assert set(out.loc[dates > "2017-03-15", "split"]) == {"test"}
    assert check_patient_level(out) == []


def test_temporal_split_patient_spanning_the_cut_goes_to_test(fmt):
    df = fmt.manifest_frame(n_patients=20, rois_per_patient=2)
    df.loc[df["patient_id"] == "P000", "study_date"] = ["2012-01-01", "2019-05-01"]
    out = temporal_split(df, test_after="2018-01-01", val=0.2, seed=0)
    p0 = out[out["patient_id"] == "P000"]
    assert set(p0["split"]) == {"test"}  # all of P000, also the 2012 study
    train_dates = pd.to_datetime(out.loc[out["split"] != "test", "study_date"])
    assert (train_dates <= "2018-01-01").all()
    assert out.loc[out["split"] == "val", "patient_id"].nunique() == 4
    assert check_patient_level(out) == []


def test_temporal_split_needs_dates(frame):
    with pytest.raises(InputError, match="study_date"):
        temporal_split(frame.drop(columns="study_date"))
    broken = frame.copy()
    broken.loc[5, "study_date"] = "someday"
    with pytest.raises(InputError, match="unreadable study_date"):
        temporal_split(broken)
    with pytest.raises(InputError, match="one side of 2030-01-01"):
        temporal_split(frame, test_after="2030-01-01")

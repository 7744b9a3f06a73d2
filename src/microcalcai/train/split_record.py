"""Which cases a model learned from: its training's split, kept beside its weights.

`microcalcai predict` fills an empty `split` column from it when the manifest is the one the
model was trained on, so that `microcalcai evaluate` reports on the held-out test cases instead
of the training cases.
"""

from __future__ import annotations

from pathlib import Path

SPLIT_FILE = "split.csv"


def split_csv(parts: dict) -> str:
    """The text of SPLIT_FILE; `parts`: split name -> the crops of that split (with case ids).
    Saved with the model in one atomic step (save_model's extra_files): a model never exists
    without it."""
    import pandas as pd

    rows = [(case_id, name) for name, crops in parts.items() for case_id in crops.case_ids]
    return pd.DataFrame(rows, columns=["case_id", "split"]).to_csv(index=False)


def training_split(predictor, manifest) -> dict[str, str] | None:
    """case_id -> split of the predictor's training on `manifest`: `test` only where every member
    held the case out for testing, `train` where any member learned from it, else `val`. None
    when a member was trained on other data or kept no record."""
    import pandas as pd

    from microcalcai.data.manifest import manifest_sha256

    digest = manifest_sha256(manifest)
    records = []
    for member in predictor.members:
        path = Path(member.path) / SPLIT_FILE
        if member.card.manifest_sha256 != digest or not path.is_file():
            return None
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        records.append(dict(zip(table["case_id"], table["split"], strict=True)))
    merged = {}
    for case_id in set().union(*records):
        seen = {record.get(case_id, "") for record in records}
        merged[case_id] = "test" if seen == {"test"} else "train" if "train" in seen else "val"
    return merged

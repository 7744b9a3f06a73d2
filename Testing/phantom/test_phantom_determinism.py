"""Same seed, same bytes (whatever the number of workers); another seed, another data set."""

from __future__ import annotations

import hashlib

from microcalcai.phantom import generate_dataset

SMALL = dict(
    patients=3,
    spacing_mm=0.1,
    roi_size=64,
    full_field=False,
    bilateral=False,
    views=("CC",),
    negatives=True,
    progress=False,
)


def _digests(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path):
    a = _digests(generate_dataset(tmp_path / "a", seed=5, **SMALL).out_dir)
    b = _digests(generate_dataset(tmp_path / "b", seed=5, workers=2, **SMALL).out_dir)
    assert len(a) > 10 and any(k.endswith(".dcm") for k in a)
    assert a == b


def test_different_seed_gives_different_data(tmp_path):
    a = _digests(generate_dataset(tmp_path / "a", seed=5, **SMALL).out_dir)
    c = _digests(generate_dataset(tmp_path / "c", seed=6, **SMALL).out_dir)
    shared = set(a) & set(c)
    assert "manifest.csv" in shared and a["manifest.csv"] != c["manifest.csv"]
    assert not any(a[k] == c[k] for k in shared if k.endswith((".dcm", ".npy")))

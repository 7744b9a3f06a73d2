"""Atomic writes keep what was stored when a write fails, and leave ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from microcalcai.atomic import atomic_dir, atomic_write_bytes, atomic_write_text


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "labels.json"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"], "temporary file left behind"


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "m.csv", "a,b\n")
        with atomic_dir(tmp_path / "model") as folder:
            (folder / "model.json").write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as folder:
        (folder / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, overwrite=True) as folder:
            (folder / "weights").write_text("v2-partial")
            raise RuntimeError("training crashed")
    assert (target / "weights").read_text() == "v1"
    with pytest.raises(FileExistsError):
        with atomic_dir(target):
            pass
    with atomic_dir(target, overwrite=True) as folder:
        (folder / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_never_replaces_a_file(tmp_path):
    """overwrite=True replaces a folder; a file of the same name is refused and left as it was."""
    target = tmp_path / "manifest.csv"
    target.write_text("case_id\n")
    with pytest.raises(FileExistsError, match="is a file, not a folder"):
        with atomic_dir(target, overwrite=True):
            pass
    assert target.read_text() == "case_id\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]

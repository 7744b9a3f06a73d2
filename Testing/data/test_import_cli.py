"""`microcalcai import`: manifest written atomically, summary printed, clear failures."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from microcalcai.cli.main import main
from microcalcai.data.manifest import read_manifest


def test_import_mias_writes_manifest_summary_and_skipped(mias_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["import", "mias", str(mias_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mias: imported 3 ROI(s) from 1 patient(s)" in printed
    assert "calcification" in printed and "skipped 4 source row(s)" in printed
    assert "no centre coordinates" in printed
    df = read_manifest(out / "manifest.csv")
    assert len(df) == 3 and df["image_path"].map(lambda p: p.endswith(".pgm")).all()
    assert "../mias/all-mias/mdb001.pgm" in (out / "manifest.csv").read_text()  # stored relative
    skipped = pd.read_csv(out / "skipped.csv")
    assert len(skipped) == 4 and set(skipped.columns) == {"source", "where", "reason"}
    assert (out / "import-summary.txt").read_text().startswith("mias: imported 3")


def test_import_refuses_to_overwrite_and_filters_findings(mias_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["import", "mias", str(mias_dir), "--out", str(out)]) == 0
    before = (out / "manifest.csv").read_bytes()
    assert main(["import", "mias", str(mias_dir), "--out", str(out)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "manifest.csv").read_bytes() == before
    assert (
        main(
            ["import", "mias", str(mias_dir), "--out", str(out), "--overwrite", "--finding", "calcification"]
        )
        == 0
    )
    assert "finding mass not requested" in capsys.readouterr().out
    assert set(read_manifest(out / "manifest.csv")["finding"]) == {"calcification"}


def test_import_with_patient_split(tmp_path, fmt, capsys):
    root = tmp_path / "crops"
    for p in range(12):
        label = "malignant" if p % 2 else "benign"
        for r in range(2):
            fmt.write_png(root / label / f"pat{p:02d}" / f"roi{r}.png", 6, 6)
    out = tmp_path / "out"
    assert (
        main(
            [
                "import",
                "folder",
                str(root),
                "--out",
                str(out),
                "--split",
                "patient",
                "--val",
                "0.17",
                "--test",
                "0.17",
                "--seed",
                "2",
            ]
        )
        == 0
    )
    assert "split (ROIs / patients): test 4 / 2, train 16 / 8, val 4 / 2" in capsys.readouterr().out
    df = read_manifest(out / "manifest.csv")
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()


def test_import_cmmd_without_whole_image_fails_with_advice(cmmd_dir, tmp_path, capsys):
    assert main(["import", "cmmd", str(cmmd_dir), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("microcalcai import: error: CMMD has no lesion coordinates")
    assert not (tmp_path / "o" / "manifest.csv").exists()
    assert main(["import", "cmmd", str(cmmd_dir), "--out", str(tmp_path / "o"), "--whole-image"]) == 0


def test_import_nothing_importable_is_a_failure(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Info.txt").write_text("mdb001 G NORM\nmdb002 F CALC B\n")
    assert main(["import", "mias", str(tmp_path / "src"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "every row was skipped" in err and "no centre coordinates" in err


def test_command_line_exit_codes(tmp_path):
    """The installed entry point: usage errors exit 2, data errors 1 with one line on stderr."""
    usage = subprocess.run(
        [sys.executable, "-m", "microcalcai", "import", "dicomdir", "x", "--out", "y"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert usage.returncode == 2 and "invalid choice: 'dicomdir'" in usage.stderr
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "microcalcai",
            "import",
            "inbreast",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"microcalcai import: error: INbreast folder {tmp_path / 'none'} does not "
        "exist; give the folder holding AllDICOMs, AllXML and INbreast.csv"
    )


@pytest.mark.parametrize("fraction", ["1.5", "x"])
def test_bad_fraction_is_a_usage_error(fraction, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "import",
                "mias",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--split",
                "patient",
                "--val",
                fraction,
            ]
        )
    assert exit_info.value.code == 2
    assert "--val" in capsys.readouterr().err


def test_import_with_crops(mias_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["import", "mias", str(mias_dir), "--out", str(out), "--crops", "6"]) == 0
    assert "wrote 3 crops" in capsys.readouterr().out
    crops = read_manifest(out / "crops" / "manifest.csv")
    assert len(crops) == 3 and (crops["roi_size"] == 6).all()
    assert sorted(p.parent.parent.name for p in (out / "crops").rglob("*.png")) == [
        "benign",
        "benign",
        "malignant",
    ]
    # The crops imported back over their own folder: they are the new manifest's images, kept.
    again = ["import", "manifest", str(out / "crops" / "manifest.csv"), "--out", str(out), "--overwrite"]
    assert main(again) == 0
    assert "removed" not in capsys.readouterr().out and len(list((out / "crops").rglob("*.png"))) == 3
    # An --overwrite without --crops replaces the manifest: the old crops described the old one.
    assert main(["import", "mias", str(mias_dir), "--out", str(out), "--overwrite", "--finding", "mass"]) == 0
    assert f"removed {out / 'crops'}" in capsys.readouterr().out
    assert not (out / "crops").exists() and (out / "manifest.csv").is_file()


def test_mias_rois_land_on_the_lesions_and_preview_is_drawn(tmp_path, capsys):
    """Bright disks drawn where Info.txt (origin bottom-left) says: the imported centres hit them."""
    import numpy as np
    from PIL import Image

    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    root = tmp_path / "mias"
    root.mkdir()
    lesions = {1: (30, 20), 2: (60, 70)}  # x, y from the bottom-left corner
    (root / "Info.txt").write_text("mdb001 G CALC B 30 20 6\nmdb002 G CALC M 60 70 8\n")
    rows, cols = np.mgrid[:100, :120]
    for number, (x, y) in lesions.items():
        pixels = np.full((100, 120), 40, np.uint8)
        pixels[(cols - x) ** 2 + (rows - (99 - y)) ** 2 < 25] = 250
        Image.fromarray(pixels).save(root / f"mdb{number:03d}.pgm")
    out = tmp_path / "out"
    assert main(["import", "mias", str(root), "--out", str(out), "--preview"]) == 0
    for _, row in read_manifest(out / "manifest.csv").iterrows():
        crop = crop_roi(read_image(row["image_path"]), (row["roi_x"], row["roi_y"]), size_px=5)
        assert crop.pixels.min() > 0.9  # all of the 5 x 5 centre lies on the bright disk
    with Image.open(out / "preview.png") as preview:
        assert preview.format == "PNG" and preview.size[0] >= 400 and preview.size[1] >= 400
        assert len(set(np.asarray(preview.convert("L")).ravel().tolist())) > 20  # a drawing, not a blank page
    assert f"wrote {out / 'preview.png'}" in capsys.readouterr().out


def test_import_manifest_validates_and_resplits(mias_dir, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["import", "mias", str(mias_dir), "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert (
        main(
            [
                "import",
                "manifest",
                str(first / "manifest.csv"),
                "--out",
                str(again),
                "--split",
                "patient",
                "--val",
                "0",
                "--test",
                "0",
                "--no-stratify",
            ]
        )
        == 0
    )
    df = read_manifest(again / "manifest.csv")
    assert df["image_path"].tolist() == read_manifest(first / "manifest.csv")["image_path"].tolist()
    assert set(df["split"]) == {"train"}
    broken = tmp_path / "broken.csv"
    broken.write_text((first / "manifest.csv").read_text().replace("benign", "benigne", 1))
    capsys.readouterr()
    assert main(["import", "manifest", str(broken), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "label must be benign or malignant in: line 2 ('benigne')" in err
    assert "image_path names a file that does not exist" in err  # relative to the copy's folder


def test_summary_counts_patients_by_label(inbreast_dir, tmp_path, capsys):
    assert main(["import", "inbreast", str(inbreast_dir), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    # One patient has a BI-RADS 2 image (benign ROIs) and a BI-RADS 4b image (malignant ROI).
    assert "patients by label: benign+malignant 1" in printed
    assert "5 source row(s)" in printed and "1 x BI-RADS '0' gives no label" in printed


def test_temporal_split_at_a_given_date(tmp_path, fmt, capsys):
    """--split temporal --test-after DATE: the patients with a study after DATE are the test set."""
    rows = ["patient_id,image_path,roi_x,roi_y,roi_size,label,finding,study_date"]
    for p in range(8):
        fmt.write_png(tmp_path / "img" / f"p{p}.png", 32, 32)
        label = "malignant" if p % 2 else "benign"
        rows.append(f"p{p},img/p{p}.png,16,16,16,{label},calcification,{2012 + p}-03-01")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    argv = ["import", "manifest", str(tmp_path / "m.csv"), "--split", "temporal", "--val", "0"]
    assert main([*argv, "--out", str(tmp_path / "o"), "--test-after", "2017-06-01"]) == 0
    split = read_manifest(tmp_path / "o" / "manifest.csv").set_index("patient_id")["split"]
    assert sorted(split[split == "test"].index) == ["p6", "p7"]
    assert main([*argv, "--out", str(tmp_path / "o2"), "--test-after", "2030-01-01"]) == 1
    assert "--test-after DATE" in capsys.readouterr().err


def test_a_folder_given_as_the_manifest_is_named_as_such(mias_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["import", "mias", str(mias_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["import", "manifest", str(out), "--out", str(tmp_path / "again")]) == 1
    assert "is a folder (it holds a manifest.csv); give the path of the manifest.csv file" in (
        capsys.readouterr().err
    )

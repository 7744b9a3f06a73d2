"""The manifest format: validation with lines and columns named, relative paths, atomic writes."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from microcalcai.data.manifest import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    manifest_sha256,
    read_manifest,
    write_manifest,
)
from microcalcai.errors import InputError

HEADER = "patient_id,image_path,roi_x,roi_y,label,finding"


@pytest.fixture
def images(tmp_path, fmt):
    folder = tmp_path / "data" / "images"
    return [fmt.write_png(folder / f"img{i}.png", 8, 6) for i in range(3)]


def _frame(images, **columns) -> pd.DataFrame:
    """Two valid manifest rows on the first two images; keyword arguments replace or add columns."""
    base = {
        "patient_id": ["1", "2"],
        "image_path": [str(images[0]), str(images[1])],
        "roi_x": [1, 2],
        "roi_y": [1, 2],
        "label": ["benign", "malignant"],
        "finding": ["calcification", "calcification"],
    }
    return pd.DataFrame({**base, **columns})


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_resolves_relative_paths_and_types(tmp_path, images):
    path = _write(
        tmp_path / "data" / "manifest.csv",
        [
            HEADER + ",study_date,laterality,roi_size,birads,extra",
            "0007,images/img0.png,10,20.5,Benign ,calcification,20190102,left,,4a,kept",
            "0008,images/img1.png,3,4,MALIGNANT,Calcification,2020-03-04,R,64,5,",
        ],
    )
    df = read_manifest(path)
    assert df["image_path"].tolist() == [str(images[0]), str(images[1])]
    assert df["patient_id"].tolist() == ["0007", "0008"]  # ids stay text: leading zeros kept
    assert df["label"].tolist() == ["benign", "malignant"]
    assert df["finding"].tolist() == ["calcification", "calcification"]
    assert df["roi_y"].tolist() == [20.5, 4.0]
    assert df["laterality"].tolist() == ["L", "R"]
    assert df["study_date"].tolist() == ["2019-01-02", "2020-03-04"]
    assert pd.isna(df["roi_size"].iloc[0]) and df["roi_size"].iloc[1] == 64
    assert df["birads"].tolist() == ["4a", "5"]
    assert df["extra"].iloc[0] == "kept"
    assert df.attrs["manifest_path"] == str(path)


def test_missing_required_columns_are_named(tmp_path):
    path = _write(tmp_path / "m.csv", ["patient_id,image_path,roi_x,label", "1,a.png,3,benign"])
    with pytest.raises(InputError) as err:
        read_manifest(path)
    message = str(err.value)
    assert "roi_y" in message and "finding" in message and str(path) in message
    assert "it has patient_id, image_path, roi_x, label" in message


def test_every_bad_value_is_reported_with_its_line(tmp_path, images):
    path = _write(
        tmp_path / "data" / "manifest.csv",
        [
            HEADER + ",split",
            "1,images/img0.png,10,20,benign,calcification,train",
            "2,images/img1.png,ten,20,maybe,calcification,train",
            "3,images/missing.png,-4,,malignant,calcification,holdout",
            ",images/img2.png,1,2,benign,,test",
        ],
    )
    with pytest.raises(InputError) as err:
        read_manifest(path)
    message = str(err.value)
    assert "label must be benign or malignant in: line 3 ('maybe')" in message
    assert "roi_x is not a number in: line 3 ('ten')" in message
    assert "roi_x must be a finite pixel coordinate >= 0 in: line 4 ('-4')" in message
    assert "empty roi_y in: line 4" in message
    assert "empty patient_id in: line 5" in message
    assert "empty finding in: line 5" in message
    assert "split must be one of train, val, test in: line 4 ('holdout')" in message
    assert "image_path names a file that does not exist" in message and "missing.png" in message


def test_missing_files_are_reported_with_lines(tmp_path, images):
    path = _write(
        tmp_path / "data" / "manifest.csv",
        [
            HEADER + ",mask_path",
            "1,images/img0.png,1,1,benign,calcification,",
            "2,images/nope.png,1,1,benign,calcification,images/nomask.png",
        ],
    )
    with pytest.raises(InputError) as err:
        read_manifest(path)
    message = str(err.value)
    assert "image_path names a file that does not exist" in message and "line 3" in message
    assert "nope.png" in message and "mask_path" in message and "nomask.png" in message
    assert len(read_manifest(path, check_files=False)) == 2


def test_empty_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="has no rows"):
        read_manifest(_write(tmp_path / "empty.csv", [HEADER]))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x00garbage")
    with pytest.raises(InputError, match="binary.csv"):
        read_manifest(binary)


def test_unlabelled_rows_allowed_only_when_asked(tmp_path, images):
    path = _write(tmp_path / "data" / "manifest.csv", [HEADER, "1,images/img0.png,1,1,,calcification"])
    with pytest.raises(InputError, match="empty label in: line 2"):
        read_manifest(path)
    assert read_manifest(path, require_label=False)["label"].isna().all()


def test_write_then_read_round_trip_with_relative_paths(tmp_path, images):
    df = _frame(
        images,
        patient_id=["007", "008"],
        roi_x=[10.0, 11.25],
        roi_y=[5, 6],
        custom=["a", "b"],
        view=["cc", "MLO"],
    )
    out = tmp_path / "elsewhere" / "manifest.csv"
    write_manifest(df, out)
    text = out.read_text()
    header, first = text.splitlines()[:2]
    assert header == "patient_id,image_path,roi_x,roi_y,label,finding,view,custom"
    assert first == "007,../data/images/img0.png,10,5,benign,calcification,CC,a"
    assert "11.25" in text
    back = read_manifest(out)
    assert back["image_path"].tolist() == [str(images[0]), str(images[1])]
    assert back["roi_x"].tolist() == [10.0, 11.25]
    assert list(back.columns[:6]) == list(REQUIRED_COLUMNS)


def test_write_refuses_invalid_frames_and_keeps_the_old_file(tmp_path, images):
    out = tmp_path / "manifest.csv"
    good = _frame(images)
    write_manifest(good, out)
    before = out.read_bytes()
    bad = good.assign(label=["unsure", "benign"])
    with pytest.raises(InputError, match="label must be benign or malignant"):
        write_manifest(bad, out)
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["data", "manifest.csv"]  # no temporary file left behind


def test_relative_paths_in_a_frame_are_taken_from_base_dir(tmp_path, images):
    df = _frame(images, image_path=["images/img0.png", "images/img1.png"])
    out = tmp_path / "out" / "manifest.csv"
    write_manifest(df, out, base_dir=tmp_path / "data")
    assert read_manifest(out)["image_path"].iloc[0] == str(images[0])


def test_sha256_identifies_content_not_line_endings(tmp_path):
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    c = tmp_path / "c.csv"
    a.write_bytes(b"patient_id,label\n1,benign\n")
    b.write_bytes(b"patient_id,label\r\n1,benign\r\n")
    c.write_bytes(b"patient_id,label\n1,malignant\n")
    assert manifest_sha256(a) == manifest_sha256(b)
    assert manifest_sha256(a) != manifest_sha256(c)
    assert len(manifest_sha256(a)) == 64
    with pytest.raises(InputError, match="cannot read manifest"):
        manifest_sha256(tmp_path / "missing.csv")


def test_documented_optional_columns():
    assert (
        "mask_path" in OPTIONAL_COLUMNS and "study_date" in OPTIONAL_COLUMNS and "split" in OPTIONAL_COLUMNS
    )


def test_spreadsheet_exports_are_read(tmp_path, images):
    """Excel's "CSV UTF-8" starts with a byte-order mark; some locales separate with semicolons."""
    rows = ["1;images/img0.png;1,5;2;benign;calcification", "2;images/img1.png;3;4;malignant;calcification"]
    semicolons = tmp_path / "data" / "semi.csv"
    semicolons.write_bytes(
        ("\ufeff" + HEADER.replace(",", ";") + "\r\n" + "\r\n".join(rows) + "\r\n").encode()
    )
    with pytest.raises(InputError, match=r"roi_x is not a number in: line 2 \('1,5'\)"):
        read_manifest(semicolons)  # a decimal comma is not silently misread
    semicolons.write_bytes(semicolons.read_bytes().replace(b"1,5", b"1.5"))
    df = read_manifest(semicolons)
    assert df["patient_id"].tolist() == ["1", "2"] and df["roi_x"].tolist() == [1.5, 3.0]
    bom = tmp_path / "data" / "bom.csv"
    bom.write_bytes(("\ufeff" + HEADER + "\n1,images/img0.png,1,2,benign,calcification\n").encode())
    assert read_manifest(bom)["patient_id"].tolist() == ["1"]


def test_label_codes_zero_and_one_are_names(tmp_path, images):
    path = _write(
        tmp_path / "data" / "manifest.csv",
        [HEADER, "1,images/img0.png,1,1,1,calcification", "2,images/img1.png,1,1,0,calcification"],
    )
    assert read_manifest(path)["label"].tolist() == ["malignant", "benign"]
    path.write_text(path.read_text().replace(",0,", ",2,"))
    with pytest.raises(InputError, match=r"label must be benign or malignant in: line 3 \('2'\)"):
        read_manifest(path)


def test_missing_optional_values_round_trip(tmp_path, images):
    df = _frame(images, study_date=["2019-01-01", None], birads=[None, "4a"], roi_size=[None, 32])
    back = read_manifest(write_manifest(df, tmp_path / "m.csv"))
    assert back["study_date"].iloc[0] == "2019-01-01" and pd.isna(back["study_date"].iloc[1])
    assert pd.isna(back["birads"].iloc[0]) and back["birads"].iloc[1] == "4a"
    assert pd.isna(back["roi_size"].iloc[0]) and back["roi_size"].iloc[1] == 32


def test_extra_path_columns_move_with_the_manifest(tmp_path, images):
    df = _frame(images, roi_png_path=[str(images[2]), None], note=["a_path_like/text", "b"])
    first = write_manifest(df, tmp_path / "one" / "manifest.csv")
    assert "../data/images/img2.png" in first.read_text()
    back = read_manifest(first)
    assert back["roi_png_path"].iloc[0] == str(images[2]) and pd.isna(back["roi_png_path"].iloc[1])
    assert back["note"].tolist() == ["a_path_like/text", "b"]  # not a *_path column: left alone
    moved = read_manifest(write_manifest(back, tmp_path / "deeper" / "two" / "manifest.csv"))
    assert moved["roi_png_path"].iloc[0] == str(images[2])

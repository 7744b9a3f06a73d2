"""What an annotator sees is what the server gets: a label goes to the ROI and the image on screen,
a volume of Slicer's DICOM module is classified on the pixels the server reads from the file, a
local image is sent once. Real MRML nodes (slicer-core), the real server on 127.0.0.1, real DICOM."""

from pathlib import Path

import numpy as np
import pytest
from microcalcai_logic import LogicError
from microcalcai_logic import geometry as g
from microcalcai_logic.client import ServerClient
from microcalcai_logic.volumes import load_volume, mark_from_server
from slicer_test_helpers import dicom_module_volume, folder_instance_lookup, make_volume

pytestmark = pytest.mark.server


def _server_image(logic, studies, index):
    row = studies["rows"][index]
    path = studies["folder"] / Path(row["image_path"]).name
    volume = load_volume(logic.scene, str(path))
    mark_from_server(volume, path.stem, logic.client.url)
    return volume, row, path.stem


def _box(logic, volume, roi, name="MicrocalcAI ROI"):
    node = logic.scene.GetFirstNodeByName(name) or logic.scene.AddNewNodeByClass(
        "vtkMRMLMarkupsROINode", name
    )
    g.place_roi_node(node, volume, roi)
    return node


def _stored(logic, image_id):
    """The labels the server's datastore holds for an image, read by another client."""
    if "final" not in (ServerClient(logic.client.url).datastore()["objects"][image_id].get("labels") or {}):
        return []
    return [
        (a["label"], g.PixelRoi.from_params(a["roi"]))
        for a in ServerClient(logic.client.url).labels(image_id).get("annotations", [])
    ]


def test_a_label_after_moving_the_box_lands_on_the_moved_box(logic, studies):
    volume, row, image_id = _server_image(logic, studies, 5)
    classified = g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"]))
    box = _box(logic, volume, classified)
    logic.classify(volume, roi_node=box)
    moved = g.PixelRoi(classified.x + 37.0, classified.y - 21.0, 40)
    g.place_roi_node(box, volume, moved)  # the annotator drags the box after Classify
    saved = logic.annotate("benign", volume_node=volume, roi_node=box)
    assert [g.PixelRoi.from_params(a["roi"]) for a in saved] == [moved]
    assert _stored(logic, image_id) == [("benign", moved)]


def test_a_label_after_switching_images_goes_to_the_new_image(logic, studies):
    first, row, first_id = _server_image(logic, studies, 6)
    roi = g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"]))
    box = _box(logic, first, roi)
    logic.classify(first, roi_node=box)
    before = _stored(logic, first_id)
    second, row2, second_id = _server_image(logic, studies, 7)
    logic.select_volume(second)  # the Mammogram selector now names the second image
    assert logic.saliency_node() is None and logic.results_table() is None  # the old map is gone
    roi2 = g.PixelRoi(float(row2["roi_x"]), float(row2["roi_y"]), int(row2["roi_size"]))
    g.place_roi_node(box, second, roi2)
    logic.annotate("malignant", volume_node=second, roi_node=box)
    assert _stored(logic, second_id) == [("malignant", roi2)]
    assert _stored(logic, first_id) == before


def test_an_ambiguous_label_is_refused_with_a_reason(logic, studies):
    import slicer

    volume, row, image_id = _server_image(logic, studies, 8)
    box = _box(logic, volume, g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"])))
    logic.classify(volume, roi_node=box)
    with pytest.raises(LogicError, match="Place the ROI box"):
        logic.annotate("benign", volume_node=volume)  # no box or point given: not the last Classify's
    with pytest.raises(LogicError, match="Select the mammogram"):
        logic.annotate("benign", roi_node=box)
    other, _, _ = _server_image(logic, studies, 9)
    view = logic.scene.AddNode(slicer.vtkMRMLSliceCompositeNode())
    view.SetBackgroundVolumeID(other.GetID())  # the views show another image than the selected one
    with pytest.raises(LogicError, match="views show"):
        logic.annotate("benign", volume_node=volume, roi_node=box)
    empty = logic.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "unplaced")
    view.SetBackgroundVolumeID(volume.GetID())
    with pytest.raises(LogicError, match="has not been placed"):
        logic.annotate("benign", volume_node=volume, roi_node=empty)
    assert _stored(logic, image_id) == []


def _roi_near_cluster(volume):
    return g.PixelRoi(126.0, 134.0, 48)


def test_a_dicom_module_volume_is_classified_on_the_pixels_the_server_reads(logic, studies):
    """MONOCHROME1 with a non-linear VOI LUT: the DICOM module's volume (no storage node, only
    DICOM.instanceUIDs) and the file loaded from disk give the server's own answer for the study."""
    from slicer.util import arrayFromVolume

    path = studies["identified"]
    logic.instance_lookup = folder_instance_lookup(path)
    by_file = load_volume(logic.scene, str(path))
    by_dicom_module = dicom_module_volume(logic.scene, path)
    assert by_dicom_module.GetStorageNode() is None
    roi = _roi_near_cluster(by_file)
    truth, _ = ServerClient(logic.client.url).infer(
        "ensemble", {"roi": roi.as_params(), "saliency": False}, image_id="identified", output="json"
    )
    from_file = logic.classify(by_file, roi_node=_box(logic, by_file, roi))
    from_module = logic.classify(by_dicom_module, roi_node=_box(logic, by_dicom_module, roi))
    assert from_file.probability == pytest.approx(truth["probability"], abs=1e-6)
    assert from_module.probability == pytest.approx(truth["probability"], abs=1e-6)
    assert from_module.image_id == from_file.image_id  # the same de-identified copy, sent once
    # The stored pixels alone (what was sent before) are a different image to the server.
    raw = make_volume(logic.scene, np.array(arrayFromVolume(by_file)[0]), name="raw pixels")
    from_raw = logic.classify(raw, roi_node=_box(logic, raw, roi))
    assert abs(from_raw.probability - truth["probability"]) > 1e-6


def test_a_real_cbis_ddsm_study_from_the_dicom_module_matches_the_servers_copy(
    logic, studies, real_mammograms
):
    volume = dicom_module_volume(logic.scene, real_mammograms[0])
    logic.instance_lookup = folder_instance_lookup(real_mammograms[0])
    cols, rows = g.image_size(volume)
    roi = g.PixelRoi(cols / 2, rows / 2, 64)
    truth, _ = ServerClient(logic.client.url).infer(
        "ensemble", {"roi": roi.as_params(), "saliency": False}, image_id="cbis_real", output="json"
    )
    result = logic.classify(volume, roi_node=_box(logic, volume, roi))
    assert result.probability == pytest.approx(truth["probability"], abs=1e-6)
    assert result.image_id.startswith("local-")


def test_a_dicom_module_volume_whose_file_is_gone_is_a_clear_error(logic, studies):
    volume = dicom_module_volume(logic.scene, studies["identified"])
    logic.instance_lookup = lambda uid: None  # the database no longer holds the instance
    with pytest.raises(LogicError, match="DICOM database.*cannot be found"):
        logic.classify(volume, roi_node=_box(logic, volume, _roi_near_cluster(volume)))
    assert not list(Path(logic.temp_folder).glob("upload-*"))  # nothing left behind


def test_a_study_the_server_holds_is_referred_to_not_sent(logic, studies):
    listing = set(ServerClient(logic.client.url).datastore()["objects"])
    assert studies["held_series_uid"] in listing
    logic.instance_lookup = folder_instance_lookup(studies["held"])
    volume = dicom_module_volume(logic.scene, studies["held"])
    result = logic.classify(volume, roi_node=_box(logic, volume, _roi_near_cluster(volume)))
    assert result.image_id == studies["held_series_uid"]
    assert set(ServerClient(logic.client.url).datastore()["objects"]) == listing


def test_a_local_image_is_sent_once_per_session_and_recognised_in_the_next(logic, studies, scene, tmp_path):
    from microcalcai_logic import MicrocalcAILogic
    from microcalcai_logic.settings import LogicSettings

    path = studies["folder"] / Path(studies["rows"][1]["image_path"]).name
    volume = load_volume(logic.scene, str(path))
    row = studies["rows"][1]
    box = _box(logic, volume, g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"])))
    before = set(ServerClient(logic.client.url).datastore()["objects"])
    first = logic.classify(volume, roi_node=box)
    logic.classify(volume, roi_node=box, model="tiny-a")
    logic.annotate("benign", volume_node=volume, roi_node=box)
    added = set(ServerClient(logic.client.url).datastore()["objects"]) - before
    assert added == {first.image_id}
    # Another session, the same file: the server's copy is found by its digest, not sent again.
    import slicer

    other = MicrocalcAILogic(
        slicer.vtkMRMLScene(), settings=LogicSettings(server_url=logic.client.url), remember=False
    )
    other.connect()
    other.set_upload_consent(True)
    again = load_volume(other.scene, str(path))
    other_box = _box(other, again, first.roi)
    assert other.classify(again, roi_node=other_box).image_id == first.image_id
    assert set(ServerClient(logic.client.url).datastore()["objects"]) - before == {first.image_id}
    assert not list(Path(logic.temp_folder).glob("upload-*"))  # the copies sent are removed

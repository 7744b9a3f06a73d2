"""Nothing about the patient leaves the machine: the Logic asks before the first image goes to a
server, remembers the answer, and sends a de-identified copy. Checked on what the real server's
datastore holds afterwards."""

import pydicom
import pytest
from microcalcai_logic import LogicError, MicrocalcAILogic
from microcalcai_logic import geometry as g
from microcalcai_logic.client import ServerClient
from microcalcai_logic.logic import ConsentRequired
from microcalcai_logic.settings import JsonFileStore, LogicSettings
from microcalcai_logic.volumes import load_volume
from slicer_test_helpers import PATIENT, dicom_module_volume, folder_instance_lookup

pytestmark = pytest.mark.server


def _fresh_logic(scene, server, tmp_path, store):
    """A session that reads and remembers its settings in `store`, as the module does."""
    logic = MicrocalcAILogic(
        scene, settings_store=store, cache_folder=str(tmp_path / "cache"), temp_folder=str(tmp_path / "temp")
    )
    logic.connect(server.url)
    return logic


def test_the_first_upload_waits_for_consent_and_the_answer_is_remembered(scene, server, studies, tmp_path):
    store = JsonFileStore(str(tmp_path / "settings.json"))
    logic = _fresh_logic(scene, server, tmp_path, store)
    volume = load_volume(scene, str(studies["identified"]))
    box = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    g.place_roi_node(box, volume, g.PixelRoi(126.0, 134.0, 48))
    listing = set(ServerClient(server.url).datastore()["objects"])
    assert logic.upload_consent() is None
    with pytest.raises(ConsentRequired, match="de-identified copy") as asked:
        logic.classify(volume, roi_node=box)
    assert server.url in str(asked.value)
    with pytest.raises(ConsentRequired):
        logic.annotate("benign", volume_node=volume, roi_node=box)
    logic.set_upload_consent(False)
    with pytest.raises(LogicError, match="not allowed"):
        logic.classify(volume, roi_node=box)
    assert set(ServerClient(server.url).datastore()["objects"]) == listing  # nothing was sent
    # A refusal lasts for the session; a new session asks again.
    assert _fresh_logic(scene, server, tmp_path, JsonFileStore(store.path)).upload_consent() is None
    logic.set_upload_consent(True)
    assert logic.classify(volume, roi_node=box).image_id.startswith("local-")
    assert _fresh_logic(scene, server, tmp_path, JsonFileStore(store.path)).upload_consent() is True
    # Images the server holds never need consent.
    other = MicrocalcAILogic(scene, settings=LogicSettings(server_url=server.url), remember=False)
    other.connect()
    assert other.needs_upload(volume) is False and other.upload_consent() is None


def test_what_reaches_the_datastore_carries_no_patient_identifiers(logic, studies, tmp_path):
    path = studies["identified"]
    original = pydicom.dcmread(str(path))
    assert str(original.PatientName) == PATIENT["PatientName"]  # the fixture has what must not leak
    logic.instance_lookup = folder_instance_lookup(path)
    volume = dicom_module_volume(logic.scene, path)
    box = logic.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    g.place_roi_node(box, volume, g.PixelRoi(126.0, 134.0, 48))
    logic.annotate("malignant", volume_node=volume, roi_node=box)
    image_id = volume.GetAttribute("MicrocalcAI.ImageId")
    assert image_id.startswith("local-") and "identified" not in image_id and "PAT" not in image_id
    stored_path = ServerClient(logic.client.url).download_image(image_id, str(tmp_path / "from-server"))
    raw = open(stored_path, "rb").read()
    for value in PATIENT.values():
        assert value.encode() not in raw, value
    assert original.SOPInstanceUID.encode() not in raw and original.StudyInstanceUID.encode() not in raw
    stored = pydicom.dcmread(stored_path)
    for keyword in PATIENT:
        assert keyword not in stored, keyword
    assert stored.PatientIdentityRemoved == "YES"
    # ... and everything the server needs to show the image as the original.
    assert stored.PixelData == original.PixelData
    for keyword in ("PhotometricInterpretation", "VOILUTSequence", "PixelSpacing", "ImageLaterality", "Rows"):
        assert stored[keyword].value == original[keyword].value, keyword
    # The server's record of the upload names no file of this machine.
    info = ServerClient(logic.client.url).image_info(image_id)
    assert "identified" not in str(info)

"""The panel stays responsive and honest: server calls run on a worker thread and come back on
the GUI thread's poll, Cancel gives the panel back, a training is followed through failed polls
and found at Connect, the buttons follow the Logic's state, and the saliency controls never touch
views they do not own. Real MRML nodes (slicer-core) and the real server."""

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from microcalcai_logic import MicrocalcAILogic, ServerError, results
from microcalcai_logic import geometry as g
from microcalcai_logic.settings import LogicSettings
from microcalcai_logic.volumes import load_volume, mark_from_server
from slicer_test_helpers import make_volume


def _server_image(logic, studies, index):
    row = studies["rows"][index]
    path = studies["folder"] / Path(row["image_path"]).name
    volume = load_volume(logic.scene, str(path))
    mark_from_server(volume, path.stem, logic.client.url)
    box = logic.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    g.place_roi_node(box, volume, g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"])))
    return volume, box


@pytest.mark.server
def test_classify_runs_on_a_worker_and_the_scene_changes_only_on_poll(logic, studies):
    volume, box = _server_image(logic, studies, 3)
    answers, threads = [], []

    def done(result):
        threads.append(threading.current_thread())
        answers.append(result)

    task = logic.submit_classify(done, pytest.fail, volume, roi_node=box)
    assert task.thread is not threading.current_thread() and logic.tasks.busy
    controls = logic.controls(volume, box)
    assert (
        not controls.classify.enabled
        and "Classifying" in controls.classify.reason
        and controls.cancel.enabled
    )
    task.thread.join(120)
    assert logic.results_table() is None  # the worker never touches the scene
    logic.tasks.wait()
    assert threads == [threading.current_thread()] and logic.results_table() is not None
    assert answers[0].probability == pytest.approx(logic.classify(volume, roi_node=box).probability, abs=1e-9)
    assert logic.controls(volume, box).classify.enabled


@pytest.mark.server
def test_cancel_gives_the_panel_back_and_drops_the_late_answer(logic, studies):
    volume, box = _server_image(logic, studies, 4)
    answers = []
    task = logic.submit_classify(answers.append, answers.append, volume, roi_node=box)
    logic.tasks.cancel()
    assert not logic.tasks.busy and logic.controls(volume, box).classify.enabled
    task.thread.join(120)
    assert logic.tasks.poll() is False
    assert answers == [] and logic.results_table() is None


@pytest.mark.server
def test_a_server_error_on_the_worker_reaches_the_error_callback(logic):
    errors = []
    logic.submit_connect("127.0.0.1:9", pytest.fail, errors.append)  # nothing listens there
    logic.tasks.wait()
    assert isinstance(errors[0], ServerError) and "Cannot reach" in str(errors[0])
    assert logic.client.url != "http://127.0.0.1:9"  # the panel stays connected where it was


@pytest.mark.server
def test_a_training_is_found_at_connect_and_followed_through_failed_polls(logic, server):
    import slicer

    logic.start_training("tiny-b", max_epochs=50, include_manifest_labels=True)
    assert logic.training_running and not logic.controls().train.enabled
    deadline = time.monotonic() + 150
    while not (logic.follow_training() or logic.monitor.last).running:
        assert time.monotonic() < deadline, logic.monitor.summary()
        time.sleep(0.5)
    # Another annotator's panel connects while it runs.
    other = MicrocalcAILogic(
        slicer.vtkMRMLScene(), settings=LogicSettings(server_url=server.url), remember=False
    )
    other.connect()
    assert (
        other.training_running and other.monitor.model == "tiny-b" and other.settings.train_model == "tiny-b"
    )
    controls = other.controls()
    assert not controls.train.enabled and "training is running" in controls.train.reason
    assert controls.stop_training.enabled
    # The server is out of reach for two polls: the following goes on, with a note.
    other.client.url = "http://127.0.0.1:9"
    for attempt in (1, 2):
        progress = other.follow_training()
        assert progress.running and other.training_running
        assert f"Lost contact with the server ({attempt} poll(s) failed)" in other.monitor.summary()
    other.client.url = server.url
    assert other.follow_training().running and other.monitor.note == ""
    other.stop_training()
    deadline = time.monotonic() + 150
    while other.training_running:
        assert time.monotonic() < deadline, other.monitor.summary()
        other.follow_training()
        time.sleep(0.5)
    assert other.monitor.last.state == "stopped" and other.controls().train.enabled


def test_buttons_follow_the_logics_state(scene):
    logic = MicrocalcAILogic(scene, remember=False)
    volume = make_volume(scene, np.zeros((64, 64), np.uint16))
    box = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    controls = logic.controls(volume, box)
    assert not controls.classify.enabled and "Connect" in controls.classify.reason
    assert controls.connect.enabled and not controls.stop_training.enabled and not controls.saliency.enabled
    # The state after a Connect, without a server: only the checks below run.
    logic.client = SimpleNamespace(url="http://127.0.0.1:8000")
    assert "Select or load a mammogram" in logic.controls(None, box).classify.reason
    assert "Draw the ROI box" in logic.controls(volume, box).classify.reason
    assert "Click a point" in logic.controls(volume, None, use_box=False).annotate.reason
    g.place_roi_node(box, volume, g.PixelRoi(30.0, 30.0, 16))
    assert logic.controls(volume, box).classify.enabled and logic.controls(volume, box).annotate.enabled
    assert logic.controls(volume, None, point_ras=[0.0, 0.0, 0.0], use_box=False).classify.enabled
    # Save to PACS only for an original the server holds, never for a local image or an upload.
    assert "not an image of the server's archive" in logic.controls(volume, box).save_pacs.reason
    mark_from_server(volume, "local-0123456789abcdef", logic.client.url)
    assert "de-identified copy" in logic.controls(volume, box).save_pacs.reason
    mark_from_server(volume, "P1_L_CC", logic.client.url)
    assert logic.controls(volume, box).save_pacs.enabled
    assert "Draw the ROI box" in logic.controls(volume, None).save_pacs.reason
    logic.missing_requirements = ["pynrrd"]
    blocked = logic.controls(volume, box)
    assert not blocked.classify.enabled and not blocked.next_sample.enabled and not blocked.train.enabled
    assert "pynrrd" in blocked.classify.reason
    assert blocked.connect.enabled and "pynrrd" in blocked.connect.reason  # Connect installs them


def test_saliency_controls_never_blank_the_views_and_a_stale_map_goes(scene):
    import slicer
    from microcalcai_logic.classify import Classification, SaliencyGeometry

    logic = MicrocalcAILogic(scene, remember=False)
    first = make_volume(scene, np.zeros((64, 64), np.uint16), name="first")
    second = make_volume(scene, np.zeros((64, 64), np.uint16), name="second")
    users_overlay = make_volume(scene, np.ones((64, 64), np.uint16), name="user's overlay")
    views = [scene.AddNode(slicer.vtkMRMLSliceCompositeNode()) for _ in range(2)]
    for view in views:
        view.SetBackgroundVolumeID(first.GetID())
        view.SetForegroundVolumeID(users_overlay.GetID())
    # No map yet: the opacity slider and the Show box change nothing in the views.
    assert logic.set_saliency_display(opacity=0.2, visible=False) == 0
    assert logic.set_saliency_display(visible=True) == 0
    assert all(v.GetForegroundVolumeID() == users_overlay.GetID() for v in views)
    roi = g.PixelRoi(30.0, 30.0, 16)
    result = Classification(
        model="m", version="1", probability=0.5, threshold=0.5, decision="benign", roi=roi, rows=[]
    )
    result.saliency = np.ones((16, 16), np.float32)
    result.saliency_geometry = SaliencyGeometry("gradcam", "malignant", (16, 16), roi.origin_xy(), (1, 1))
    node = results.update_saliency_node(scene, first, result)
    results.update_results_table(scene, result, first)
    assert node.GetHideFromEditors()  # not offered in the Mammogram selector
    logic.set_saliency_display(visible=True)
    assert all(v.GetForegroundVolumeID() == node.GetID() for v in views)
    assert logic.controls(first).saliency.enabled and not logic.controls(second).saliency.enabled
    logic.set_saliency_display(visible=False)
    assert all(v.GetForegroundVolumeID() is None for v in views)
    logic.set_saliency_display(visible=True)
    # Switching images removes the old map and table, and only the map leaves the views.
    views[1].SetForegroundVolumeID(users_overlay.GetID())
    assert logic.select_volume(second) is True
    assert logic.saliency_node() is None and logic.results_table() is None
    assert (
        views[0].GetForegroundVolumeID() is None and views[1].GetForegroundVolumeID() == users_overlay.GetID()
    )
    assert logic.select_volume(second) is False


def _local_image(logic, studies, index):
    row = studies["rows"][index]
    volume = load_volume(logic.scene, str(studies["folder"] / Path(row["image_path"]).name))
    box = logic.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    g.place_roi_node(box, volume, g.PixelRoi(float(row["roi_x"]), float(row["roi_y"]), int(row["roi_size"])))
    return volume, box


@pytest.mark.server
def test_an_upload_reports_its_progress_and_cancel_stops_it_midway(logic, studies):
    from microcalcai_logic.client import ServerClient

    before = set(ServerClient(logic.client.url).datastore()["objects"])
    volume, box = _local_image(logic, studies, 0)
    task = logic.submit_classify(pytest.fail, pytest.fail, volume, roi_node=box)
    logic.tasks.cancel()  # before the first bytes leave: the upload stops there
    task.thread.join(120)
    assert logic.tasks.poll() is False and volume.GetAttribute("MicrocalcAI.ImageId") is None
    assert set(ServerClient(logic.client.url).datastore()["objects"]) == before
    answers = []
    task = logic.submit_classify(answers.append, pytest.fail, volume, roi_node=box)
    logic.tasks.wait()
    sending = [f for message, f in task.steps if message.startswith("Sending the de-identified image")]
    assert sending[-1] == pytest.approx(1.0) and sending == sorted(sending)
    assert task.steps[-1][0] == "Classifying with ensemble" and answers[0].image_id.startswith("local-")
    assert set(ServerClient(logic.client.url).datastore()["objects"]) - before == {answers[0].image_id}


@pytest.mark.server
def test_next_sample_downloads_on_the_worker_with_progress(logic):
    samples = []
    task = logic.submit_next_sample(samples.append, pytest.fail, strategy="first")
    logic.tasks.wait()
    downloading = [f for message, f in task.steps if message.startswith("Downloading")]
    assert downloading[-1] == pytest.approx(1.0) and downloading[1:] == sorted(downloading[1:])
    sample = samples[0]
    assert sample is not None and logic.volume.GetAttribute("MicrocalcAI.ImageId") == sample.image_id
    box = logic.scene.GetFirstNodeByName("MicrocalcAI ROI")
    assert g.roi_from_markups(logic.volume, box) == sample.roi

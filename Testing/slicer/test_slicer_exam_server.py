"""Exam (BAC) and Classify view in the Logic, on real MRML nodes against the real server hosting a
tiny whole-image model: phantom four-view exams (the second lacks its R MLO view).

What the scene shows is compared with what the server answers any client (its exam JSON, its
one-view maps), and each view's map must lie exactly over its view.
"""

import numpy as np
import pytest
from exam_studies import WHOLE_IMAGE_MODEL as MODEL
from microcalcai_logic import LogicError, ServerError, exam_results, results
from microcalcai_logic import geometry as g
from microcalcai_logic.exam import DEMONSTRATION_WORDS

pytestmark = pytest.mark.server


@pytest.fixture
def logic(scene, bac_server, tmp_path):
    from microcalcai_logic import MicrocalcAILogic
    from microcalcai_logic.settings import LogicSettings

    core = MicrocalcAILogic(
        scene,
        settings=LogicSettings(server_url=bac_server.url, model=MODEL),
        cache_folder=str(tmp_path / "cache"),
        temp_folder=str(tmp_path / "temp"),
    )
    core.connect()
    core.set_upload_consent(True)
    return core


def _open(logic, image_id):
    from microcalcai_logic.datastore import open_image

    return open_image(logic.client, logic.scene, image_id, logic.cache_folder)


def _server_map(client, image_id):
    from microcalcai_logic.exam import read_map

    answer, nrrd_bytes = client.infer(MODEL, {"saliency": "gradcam++"}, image_id=image_id, output="all")
    return answer, read_map(nrrd_bytes, answer["saliency"])[0]


def test_exam_shows_the_servers_verdict_scores_and_a_map_over_each_view(logic, bac):
    import slicer
    from slicer.util import arrayFromVolume

    composites = [logic.scene.AddNode(slicer.vtkMRMLSliceCompositeNode()) for _ in range(2)]
    views = bac["complete"]
    selected = _open(logic, views["L MLO"])
    controls = logic.controls(selected, None, None)
    assert (
        controls.exam.enabled and not controls.classify.enabled and "whole images" in controls.classify.reason
    )

    exam = logic.exam_of(selected)

    truth, _ = logic.client.infer(MODEL, {"exam": True}, image_id=views["R CC"], output="json")
    assert exam.probability == pytest.approx(truth["exam"]["probability"], abs=1e-9)
    assert exam.positive == truth["exam"]["decision"]
    verdict = "BAC present" if truth["exam"]["decision"] else "no BAC"
    assert exam.verdict.startswith(
        f"Exam of {truth['exam']['patient_id']}, {truth['exam']['study_date']}: {verdict}"
    )
    assert f"P(BAC) = {truth['exam']['probability']:.3f}" in exam.verdict
    assert exam.verdict.endswith(DEMONSTRATION_WORDS)  # the test model is marked as a demonstration
    rows = results.table_rows(logic.exam_table())
    assert [r["View"] for r in rows] == ["L CC", "L MLO", "R CC", "R MLO", "Exam"]
    assert [r["Use"] for r in rows] == [results.DEMONSTRATION] * 5
    served = {v["image"]: v for v in truth["views"]}
    for row in rows[:-1]:
        assert row["Image"] == views[row["View"]]
        assert row["P(BAC)"] == pytest.approx(served[row["Image"]]["probability"], abs=1e-9)
        assert row["Decision"] == served[row["Image"]]["label"]
    assert rows[-1]["P(BAC)"] == pytest.approx(truth["exam"]["probability"], abs=1e-9)

    # Each view is a volume (the selected one, three downloaded) with its own map over it.
    for name, image_id in views.items():
        volume = exam_results.view_volume(logic.scene, image_id)
        assert volume is not None and volume.GetAttribute(exam_results.VIEW_ATTRIBUTE) == name
        node = exam_results.map_node(logic.scene, volume)
        np.testing.assert_allclose(g.ijk_to_ras(node), g.ijk_to_ras(volume), atol=1e-9)
        assert node.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
        answer, expected = _server_map(logic.client, image_id)
        assert answer["probability"] == pytest.approx(served[image_id]["probability"], abs=1e-9)
        assert np.array_equal(arrayFromVolume(node)[0], expected)
        assert expected.max() > expected.min()  # a map with something on it
    assert exam_results.view_volume(logic.scene, views["L MLO"]) is selected
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 8

    # The selected view is shown with its map; another view is one call away.
    shown_map = exam_results.map_node(logic.scene, selected)
    assert all(c.GetBackgroundVolumeID() == selected.GetID() for c in composites)
    assert all(c.GetForegroundVolumeID() == shown_map.GetID() for c in composites)
    other = logic.show_exam_view("R MLO")
    assert other.GetAttribute(exam_results.VIEW_ATTRIBUTE) == "R MLO" and logic.exam_shown() == views["R MLO"]
    assert all(c.GetBackgroundVolumeID() == other.GetID() for c in composites)
    assert all(
        c.GetForegroundVolumeID() == exam_results.map_node(logic.scene, other).GetID() for c in composites
    )
    assert logic.controls(other, None, None).saliency.enabled  # the map's opacity and switch work
    assert logic.set_saliency_display(visible=False) == 2
    assert all(c.GetForegroundVolumeID() is None for c in composites)
    logic.set_saliency_display(visible=True)

    # Again, from another view: nothing is added, nothing downloaded twice.
    logic.exam_of(other)
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 8
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1


def test_exam_runs_on_the_worker_thread_and_the_scene_changes_only_on_poll(logic, bac):
    volume = _open(logic, bac["complete"]["R CC"])
    answers, errors = [], []
    task = logic.submit_exam(answers.append, errors.append, volume)
    controls = logic.controls(volume, None, None)
    assert (
        not controls.exam.enabled and "Reading the exam" in controls.exam.reason and controls.cancel.enabled
    )
    task.thread.join(300)
    # The worker downloaded three views and fetched four maps, but never touched the scene.
    assert logic.exam_table() is None and logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1
    logic.tasks.wait(300)
    assert not errors and len(answers) == 1 and len(answers[0].views) == 4
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 8
    messages = [message for message, _ in task.steps]
    assert [m for m in messages if m.startswith("Map of")] == [
        "Map of L CC",
        "Map of L MLO",
        "Map of R CC",
        "Map of R MLO",
    ]
    assert [m for m in messages if m.startswith("Downloading")] == [
        "Downloading L CC",
        "Downloading L MLO",
        "Downloading R MLO",
    ]


def test_cancel_drops_the_exams_late_answer(logic, bac):
    volume = _open(logic, bac["complete"]["L CC"])
    answers = []
    task = logic.submit_exam(answers.append, answers.append, volume)
    logic.tasks.cancel()
    assert not logic.tasks.busy and logic.controls(volume, None, None).exam.enabled
    task.thread.join(300)
    assert logic.tasks.poll() is False
    assert answers == [] and logic.exam_table() is None
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1


def test_an_incomplete_exam_is_refused_naming_the_missing_view(logic, bac):
    volume = _open(logic, bac["incomplete"]["L CC"])
    with pytest.raises(LogicError, match=r"incomplete: it lacks R MLO \(it has L CC, L MLO, R CC\)"):
        logic.exam_of(volume)
    assert logic.exam_table() is None and logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1
    # Its views are still classified one by one.
    view = logic.classify_view(volume)
    assert view.view == "L CC" and exam_results.map_node(logic.scene, volume) is not None
    # the line the panel shows: the view's score, and that the test model is a demonstration
    assert view.summary.startswith(f"L CC: P(BAC) = {view.probability:.3f}, threshold ")
    assert view.summary.endswith(DEMONSTRATION_WORDS)
    assert [r["View"] for r in results.table_rows(logic.exam_table())] == ["L CC"]


def test_an_roi_model_is_refused_for_an_exam_with_the_whole_image_models_named(logic, bac):
    volume = _open(logic, bac["complete"]["L CC"])
    with pytest.raises(LogicError, match=r"'roi-tiny' classifies ROIs, not whole images: .*\(bac-tiny\)"):
        logic.exam_of(volume, model="roi-tiny")
    logic.settings.model = "roi-tiny"
    controls = logic.controls(volume, None, None)
    assert not controls.exam.enabled and "whole-image model" in controls.exam.reason
    assert logic.trainable_models() == ["roi-tiny"]  # the server does not fine-tune whole-image models


def test_a_local_view_is_classified_after_upload_but_an_exam_needs_the_servers_views(logic, bac, tmp_path):
    import shutil

    from microcalcai_logic.volumes import load_volume

    image_id = bac["complete"]["R CC"]
    local = tmp_path / "local-view.dcm"
    shutil.copy(bac["folder"] / f"{image_id}.dcm", local)
    volume = load_volume(logic.scene, str(local))
    with pytest.raises(LogicError, match="not an image of .*open a view of the exam from the server"):
        logic.exam_of(volume)
    controls = logic.controls(volume, None, None)
    assert not controls.exam.enabled and "open a view of the exam from it" in controls.exam.reason
    assert controls.classify_view.enabled
    view = logic.classify_view(volume)
    answer, expected = _server_map(logic.client, image_id)
    assert view.view == "R CC" and view.probability == pytest.approx(answer["probability"], abs=1e-6)
    node = exam_results.map_node(logic.scene, volume)
    np.testing.assert_allclose(g.ijk_to_ras(node), g.ijk_to_ras(volume), atol=1e-9)


def test_a_local_view_without_a_dicom_header_is_refused_before_anything_is_sent(logic, bac, tmp_path):
    """A PNG or NRRD (here the view's pixels in memory, sent as NRRD) names no laterality or
    projection, which the server needs for a whole view: Classify view says so instead of
    sending it for a 400 the user cannot act on."""
    from microcalcai_logic.logic import LOCAL_VIEW_REFUSAL
    from slicer.util import arrayFromVolume
    from slicer_test_helpers import make_volume

    opened = _open(logic, bac["complete"]["R CC"])
    pixels = arrayFromVolume(opened)[0].copy()
    volume = make_volume(logic.scene, pixels, name="pixels only")
    controls = logic.controls(volume, None, None)
    assert not controls.classify_view.enabled and controls.classify_view.reason == LOCAL_VIEW_REFUSAL
    assert "DICOM header" in LOCAL_VIEW_REFUSAL and "L/R, CC/MLO" in LOCAL_VIEW_REFUSAL
    held = logic.client.datastore()
    with pytest.raises(LogicError, match="laterality and projection"):
        logic.classify_view(volume)
    assert logic.client.datastore() == held  # nothing was sent
    assert exam_results.map_node(logic.scene, volume) is None


def test_a_server_gone_offline_is_a_clear_message(logic, bac):
    from microcalcai_logic.client import ServerClient
    from microcalcai_logic.volumes import mark_from_server

    from microcalcai.server.launch import free_port

    volume = _open(logic, bac["complete"]["L CC"])
    # Nothing listens there any more: as when the server stopped after Connect.
    logic.client = ServerClient(f"http://127.0.0.1:{free_port()}")
    mark_from_server(volume, bac["complete"]["L CC"], logic.client.url)
    with pytest.raises(
        ServerError, match="Cannot reach the MicrocalcAI server .*start it with `microcalcai serve`"
    ):
        logic.exam_of(volume)


def test_each_views_map_resampled_through_mrml_covers_exactly_its_view(logic, bac, tmp_path):
    """Carry every map pixel into its view's pixels using only the two nodes' MRML geometry, as a
    slice view does: each map pixel lands on its own view pixel, all of them covered once. Draws
    the exam (docs/images/slicer-exam.png comes from here with MICROCALCAI_FIGURES_DIR set)."""
    import os
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from slicer.util import arrayFromVolume

    exam = logic.exam_of(_open(logic, bac["complete"]["L CC"]))
    fig, axes = plt.subplots(1, 4, figsize=(9.6, 3.6), dpi=110)
    for ax, view in zip(axes, exam.views, strict=True):
        volume = exam_results.view_volume(logic.scene, view.image_id)
        node = exam_results.map_node(logic.scene, volume)
        image = np.asarray(arrayFromVolume(volume)[0], dtype=float)
        values = arrayFromVolume(node)[0]
        jj, ii = np.mgrid[0 : values.shape[0], 0 : values.shape[1]]
        points = np.c_[ii.ravel(), jj.ravel(), np.zeros(ii.size), np.ones(ii.size)].T
        xy = g.world_to_pixel(volume, (g.ijk_to_world(node) @ points).T[:, :3])[:, :2]
        np.testing.assert_allclose(xy, np.c_[ii.ravel(), jj.ravel()], atol=1e-6)
        overlay = np.full(image.shape, np.nan)
        overlay[np.rint(xy[:, 1]).astype(int), np.rint(xy[:, 0]).astype(int)] = values.ravel()
        assert not np.isnan(overlay).any()  # the map covers the whole view
        ax.imshow(image, cmap="gray")
        ax.imshow(np.ma.masked_less(overlay, 0.2), cmap="hot", vmin=0, vmax=1, alpha=0.5)
        ax.set_title(f"{view.view}: P(BAC) = {view.probability:.2f}", fontsize=9)
        ax.axis("off")
    fig.suptitle(exam.verdict.replace("; ", ";\n") + " - tiny random-weight test model", fontsize=9)
    fig.tight_layout()
    target = Path(os.environ.get("MICROCALCAI_FIGURES_DIR") or tmp_path) / "slicer-exam.png"
    fig.savefig(target)
    plt.close(fig)
    assert target.stat().st_size > 10_000

"""The scene side of whole-image (BAC) results without a server: a view's map placed from its
NRRD header over the whole view, the exam table, and the server's answers read as documented
(docs/server-api.md, Whole-image models)."""

import numpy as np
import pytest
from microcalcai_logic import LogicError, ServerError, exam_results, results
from microcalcai_logic import geometry as g
from microcalcai_logic.client import parse_info
from microcalcai_logic.exam import (
    DEMONSTRATION_WORDS,
    ExamResult,
    ViewResult,
    parse_exam,
    parse_view,
    read_map,
)
from slicer_test_helpers import GEOMETRIES, make_volume

EXAM_ANSWER = {
    "model": "bac-tiny",
    "version": "1",
    "task": "whole_image",
    "roi": None,
    "exam": {
        "study_uid": "1.2.826.0.1.3680043.8.498.123",
        "patient_id": "PH0003",
        "study_date": "2019-04-02",
        "probability": 0.82,
        "label": "bac",
        "decision": True,
        "threshold": 0.41,
        "aggregation": "max",
        "views_scored": 4,
        "complete": True,
        "missing_views": [],
    },
    "views": [
        {"name": n, "laterality": n[0], "view_position": n[1:], "image": f"PH0003-{n}", "probability": p,
         "label": "bac" if p >= 0.41 else "no_bac", "decision": p >= 0.41, "rows": 60, "cols": 45}
        for n, p in (("LCC", 0.82), ("LMLO", 0.66), ("RCC", 0.12), ("RMLO", 0.05))
    ],
    "missing_views": [],
}  # fmt: skip


def _nrrd(data: np.ndarray, origin=(0.0, 0.0), step=(1.0, 1.0)) -> bytes:
    """A map file as the server writes it: 2D, in the view's stored pixels (space dimension 2)."""
    import os
    import tempfile

    import nrrd

    header = {
        "space dimension": 2,
        "space origin": np.array(origin, dtype=float),
        "space directions": np.diag(np.array(step, dtype=float)),
        "space units": ["pixel", "pixel"],
        "microcalcai_method": "gradcam++",
    }
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "map.nrrd")
        nrrd.write(path, np.ascontiguousarray(data, dtype=np.float32), header, index_order="C")
        with open(path, "rb") as handle:
            return handle.read()


def _world_corners(node) -> np.ndarray:
    """World RAS of a 2D volume's outer pixel edges (its four corners)."""
    cols, rows = node.GetImageData().GetDimensions()[:2]
    matrix = g.parent_to_world(node) @ g.ijk_to_ras(node)
    corners = [(-0.5, -0.5), (cols - 0.5, -0.5), (-0.5, rows - 0.5), (cols - 0.5, rows - 0.5)]
    return np.array([(matrix @ [i, j, 0, 1])[:3] for i, j in corners])


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_a_whole_view_map_has_the_views_geometry_and_its_peak_lies_on_its_pixel(scene, name):
    import slicer
    from slicer.util import arrayFromVolume

    volume = make_volume(scene, np.zeros((60, 45), np.uint16), name=name, **GEOMETRIES[name])
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    moved = np.eye(4)
    moved[:3, 3] = (3.0, -2.0, 1.0)
    transform.SetMatrixTransformToParent(g.numpy_to_vtk_matrix(moved))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    views = [scene.AddNode(slicer.vtkMRMLSliceCompositeNode()) for _ in range(2)]
    data = np.zeros((60, 45), np.float32)
    data[7, 31] = 1.0  # the peak: map pixel (x=31, y=7), the view's stored pixel (31, 7)
    saliency, geometry = read_map(_nrrd(data))
    view = ViewResult("PH0003-LCC", "L CC", 0.8, 0.41, "bac", "bac-tiny", "1", {}, saliency, geometry)
    node = exam_results.update_view_map(scene, volume, view)
    np.testing.assert_allclose(g.ijk_to_ras(node), g.ijk_to_ras(volume), atol=1e-12)
    np.testing.assert_allclose(_world_corners(node), _world_corners(volume), atol=1e-9)
    assert node.GetImageData().GetDimensions()[:2] == volume.GetImageData().GetDimensions()[:2]
    peak = np.unravel_index(np.argmax(arrayFromVolume(node)[0]), data.shape)[::-1]
    peak_world = (g.parent_to_world(node) @ g.ijk_to_ras(node) @ [*peak, 0, 1])[:3]
    np.testing.assert_allclose(peak_world, g.pixel_to_world(volume, [(31, 7)])[0], atol=1e-9)
    assert node.GetDisplayNode().GetColorNode().GetName() == "MicrocalcAI saliency"
    assert exam_results.show_view(scene, volume, 0.4, True) == 2
    assert all(v.GetForegroundVolumeID() == node.GetID() for v in views)
    # Again: the same node, updated.
    assert exam_results.update_view_map(scene, volume, view) is node


def test_a_coarser_map_covers_the_whole_view_by_its_header_geometry(scene):
    """Placement follows the NRRD's space origin and directions, not an assumption of one map
    pixel per view pixel: a map at a quarter of the resolution still covers the whole view."""
    volume = make_volume(scene, np.zeros((60, 48), np.uint16), **GEOMETRIES["lps-flip"])
    step = 4.0
    saliency, geometry = read_map(_nrrd(np.ones((15, 12)), origin=(1.5, 1.5), step=(step, step)))
    assert geometry.step_xy == (4.0, 4.0) and geometry.origin_xy == (1.5, 1.5)
    view = ViewResult("v", "L CC", 0.5, 0.5, "bac", saliency=saliency, geometry=geometry)
    node = exam_results.update_view_map(scene, volume, view)
    np.testing.assert_allclose(_world_corners(node), _world_corners(volume), atol=1e-9)


def test_a_map_whose_header_disagrees_with_the_answer_is_refused():
    nrrd_bytes = _nrrd(np.zeros((6, 5)))
    with pytest.raises(ServerError, match="disagree"):
        read_map(nrrd_bytes, {"origin_xy": [2.0, 0.0]})
    with pytest.raises(ServerError, match="6x5 pixels but its answer says 60x45"):
        read_map(nrrd_bytes, {"shape": [60, 45]})
    with pytest.raises(ServerError, match="NRRD"):
        read_map(b"not a map", None)


def test_exam_answer_read_and_shown_as_one_table_with_the_verdict(scene):
    exam = parse_exam(EXAM_ANSWER, "bac-tiny")
    assert [v.view for v in exam.views] == ["L CC", "L MLO", "R CC", "R MLO"]
    assert [v.image_id for v in exam.views] == ["PH0003-LCC", "PH0003-LMLO", "PH0003-RCC", "PH0003-RMLO"]
    assert exam.positive is True and exam.threshold == 0.41 and exam.aggregation == "max"
    assert exam.verdict == (
        "Exam of PH0003, 2019-04-02: BAC present (P(BAC) = 0.820, threshold 0.410; max of 4 views)"
    )
    table = exam_results.update_exam_table(scene, exam)
    rows = results.table_rows(table)
    assert [r["View"] for r in rows] == ["L CC", "L MLO", "R CC", "R MLO", "Exam"]
    assert [r["P(BAC)"] for r in rows] == pytest.approx([0.82, 0.66, 0.12, 0.05, 0.82])
    assert [r["Decision"] for r in rows] == ["bac", "bac", "no_bac", "no_bac", "BAC"]
    assert table.GetAttribute("MicrocalcAI.Verdict") == exam.verdict
    # a model the server calls a demonstration says so after the verdict
    info = parse_info("http://127.0.0.1:8000", {"models": {"bac-tiny": {"demonstration": True}}})
    shown = parse_exam(EXAM_ANSWER, "bac-tiny", info)
    assert (
        shown.verdict == exam.verdict + DEMONSTRATION_WORDS and "not for real images" in DEMONSTRATION_WORDS
    )
    # ...and in the table's Use column, on every row (all rows come from that model)
    assert [r["Use"] for r in rows] == [""] * 5
    marked = results.table_rows(exam_results.update_exam_table(scene, shown))
    assert [r["Use"] for r in marked] == [results.DEMONSTRATION] * 5
    assert "synthetic" in table.GetColumnDescription("Use")
    negative = {**EXAM_ANSWER, "exam": {**EXAM_ANSWER["exam"], "probability": 0.2, "decision": False}}
    again = exam_results.update_exam_table(scene, parse_exam(negative, "bac-tiny"))
    assert again is table and scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert results.table_rows(again)[-1]["Decision"] == "no BAC"
    assert "no BAC (P(BAC) = 0.200" in again.GetAttribute("MicrocalcAI.Verdict")


def test_each_view_keeps_the_threshold_its_entry_gives():
    """The server's view entries carry the threshold their label was taken at; /info's threshold
    stands in only for entries without one."""
    from microcalcai_logic.client import parse_info

    entry = {"threshold": 0.41, "task": "whole_image"}
    info = parse_info("http://127.0.0.1:1", {"models": {"bac-tiny": entry}})
    views = [{**v, "threshold": 0.3 + 0.1 * k} for k, v in enumerate(EXAM_ANSWER["views"])]
    exam = parse_exam({**EXAM_ANSWER, "views": views}, "bac-tiny", info)
    assert [v.threshold for v in exam.views] == pytest.approx([0.3, 0.4, 0.5, 0.6])
    assert [v.threshold for v in parse_exam(EXAM_ANSWER, "bac-tiny", info).views] == [0.41] * 4


def test_one_view_answer_and_answers_lacking_fields():
    view = parse_view(
        {
            "model": "bac-tiny",
            "probability": 0.3,
            "label": "no_bac",
            "threshold": 0.41,
            "view": {"name": "RMLO", "laterality": "R", "view_position": "MLO", "source": "header"},
            "image": {"id": "PH0003-RMLO", "rows": 60, "cols": 45},
        }
    )
    assert (view.image_id, view.view, view.decision, view.image["rows"]) == (
        "PH0003-RMLO",
        "R MLO",
        "no_bac",
        60,
    )
    with pytest.raises(ServerError, match="lacks 'probability'"):
        parse_view({"label": "bac"})
    with pytest.raises(ServerError, match="exam answer lacks"):
        parse_exam({"views": []})
    # a field that is there but is no number: the message names the field and what was sent
    with pytest.raises(ServerError, match="invalid 'probability': it sent 'high' where a number belongs"):
        parse_view({"probability": "high"})
    with pytest.raises(ServerError, match=r"invalid 'threshold': it sent \[0.4\]"):
        parse_view({"probability": 0.3, "threshold": [0.4]})
    bad_entry = {**EXAM_ANSWER, "views": [{**EXAM_ANSWER["views"][0], "probability": None}]}
    with pytest.raises(ServerError, match="invalid 'probability': it sent None"):
        parse_exam(bad_entry, "bac-tiny")


def test_an_incomplete_exam_names_the_views_it_lacks():
    from microcalcai_logic.exam import missing_views_message

    incomplete = {
        **EXAM_ANSWER,
        "exam": {**EXAM_ANSWER["exam"], "complete": False, "missing_views": ["LMLO", "RCC"]},
        "views": [EXAM_ANSWER["views"][0], EXAM_ANSWER["views"][3]],
    }
    exam = parse_exam(incomplete, "bac-tiny")
    assert exam.missing == ["L MLO", "R CC"]
    message = missing_views_message(exam, exam.missing, [v.view for v in exam.views])
    assert "lacks L MLO, R CC (it has L CC, R MLO)" in message and "PH0003" in message


def test_a_view_answered_without_a_map_loses_its_older_map(scene):
    """Run again with maps off (or with a model without maps): the first run's map must not be
    laid over the view as if it were the new answer's."""
    import slicer

    composite = scene.AddNode(slicer.vtkMRMLSliceCompositeNode())
    volume = make_volume(scene, np.zeros((10, 8), np.uint16))
    saliency, geometry = read_map(_nrrd(np.ones((10, 8))))
    mapped = ViewResult("a", "L CC", 0.5, 0.5, "", model="m1", saliency=saliency, geometry=geometry)
    first = exam_results.update_view_map(scene, volume, mapped)
    exam_results.show_view(scene, volume, 0.5, True)
    assert composite.GetForegroundVolumeID() == first.GetID()
    unmapped = ViewResult("a", "L CC", 0.2, 0.5, "", model="m2")
    assert exam_results.update_view_map(scene, volume, unmapped) is None
    assert exam_results.map_node(scene, volume) is None
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1
    exam_results.show_view(scene, volume, 0.5, True)
    assert composite.GetBackgroundVolumeID() == volume.GetID() and not composite.GetForegroundVolumeID()


def test_forget_exam_removes_its_nodes_and_keeps_the_users_volume(scene):
    mine = make_volume(scene, np.zeros((10, 8), np.uint16))
    data = np.ones((10, 8), np.float32)
    saliency, geometry = read_map(_nrrd(data))
    exam_results.update_view_map(
        scene, mine, ViewResult("a", "L CC", 0.5, 0.5, "", saliency=saliency, geometry=geometry)
    )
    exam_results.update_exam_table(scene, ExamResult("m", "1", "s", 0.5, 0.5, True, "max", []))
    exam_results.forget_exam(scene)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0
    assert exam_results.map_node(scene, mine) is None


def test_a_views_summary_line_and_row_say_its_score_threshold_and_decision(scene):
    view = ViewResult("PH0003-LCC", "L CC", 0.8234, 0.41, "bac")
    assert view.summary == "L CC: P(BAC) = 0.823, threshold 0.410 -> bac"
    unnamed = ViewResult("PH0003-LCC", "", 0.2, None, "", demonstration=True)
    assert unnamed.summary == "PH0003-LCC: P(BAC) = 0.200, threshold n/a -> no decision" + DEMONSTRATION_WORDS
    [row] = results.table_rows(exam_results.update_view_table(scene, unnamed))
    assert row["View"] == "?" and row["Use"] == results.DEMONSTRATION
    [row] = results.table_rows(exam_results.update_view_table(scene, view))
    assert row["View"] == "L CC" and row["Decision"] == "bac" and row["Use"] == ""


def test_exam_and_classify_view_refuse_before_connecting(scene):
    from microcalcai_logic import MicrocalcAILogic

    logic = MicrocalcAILogic(scene, remember=False)
    with pytest.raises(LogicError, match="Connect"):
        logic.prepare_exam(make_volume(scene, np.zeros((10, 8), np.uint16)))


SERVER = "http://127.0.0.1:1"


def _study(patient: str) -> dict:
    """EXAM_ANSWER for another patient's study: its own image ids and study UID."""
    views = [{**v, "image": v["image"].replace("PH0003", patient)} for v in EXAM_ANSWER["views"]]
    exam = {**EXAM_ANSWER["exam"], "study_uid": f"1.2.3.{patient}", "patient_id": patient}
    return {**EXAM_ANSWER, "exam": exam, "views": views}


def _finished_exam(logic, scene, tmp_path, patient: str, known: dict):
    """finish_exam (the scene half of Exam (BAC)) of `patient`'s study, as run_exam leaves it: the
    views the scene lacked downloaded as files, each view answered with a map. Returns the
    selected view (the user's own volume of its L CC, an image of the server)."""
    import nrrd
    from microcalcai_logic.logic import ExamJob
    from microcalcai_logic.volumes import mark_from_server

    exam = parse_exam(_study(patient), "bac-tiny")
    selected = make_volume(scene, np.zeros((60, 45), np.uint16), name=f"{patient} mine")
    mark_from_server(selected, exam.views[0].image_id, SERVER)
    downloads = {}
    for view in exam.views:
        view.saliency, view.geometry = read_map(_nrrd(np.ones((60, 45))))
        if view.image_id not in known and view is not exam.views[0]:
            downloads[view.image_id] = str(tmp_path / f"{view.image_id}.nrrd")
            nrrd.write(downloads[view.image_id], np.zeros((60, 45), np.uint16), index_order="C")
    job = ExamJob(
        volume_node=selected,
        model="bac-tiny",
        saliency="gradcam++",
        server_url=SERVER,
        image_id=exam.views[0].image_id,
        whole_exam=True,
        known={**known, exam.views[0].image_id: selected},
        result=exam,
        downloads=downloads,
    )
    logic.finish_exam(job)
    return selected


def _exam_nodes(scene, role) -> list:
    from microcalcai_logic.volumes import IMAGE_ID_ATTRIBUTE, ROLE_ATTRIBUTE

    nodes = [
        scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))
    ]
    return sorted(n.GetAttribute(IMAGE_ID_ATTRIBUTE) for n in nodes if n.GetAttribute(ROLE_ATTRIBUTE) == role)


def test_an_exam_of_another_study_leaves_only_its_own_exam_nodes(scene, tmp_path):
    """Each exam loads full-resolution views and maps: reading another study's exam removes the
    views and maps the earlier exam left, never the user's own volumes."""
    from microcalcai_logic import MicrocalcAILogic

    logic = MicrocalcAILogic(scene, remember=False)
    first = _finished_exam(logic, scene, tmp_path, "PH0003", {})
    assert (
        _exam_nodes(scene, exam_results.EXAM_VIEW_ROLE)
        == ["PH0003-LCC", "PH0003-LMLO", "PH0003-RCC", "PH0003-RMLO"][1:]
    )
    assert len(_exam_nodes(scene, results.EXAM_MAP_ROLE)) == 4
    second = _finished_exam(logic, scene, tmp_path, "PH0004", {})
    assert _exam_nodes(scene, exam_results.EXAM_VIEW_ROLE) == ["PH0004-LMLO", "PH0004-RCC", "PH0004-RMLO"]
    assert _exam_nodes(scene, results.EXAM_MAP_ROLE) == [
        "PH0004-LCC",
        "PH0004-LMLO",
        "PH0004-RCC",
        "PH0004-RMLO",
    ]
    # the user's own volumes stay (the first study's without its map), 2 + 3 views + 4 maps
    assert scene.GetNodeByID(first.GetID()) is first and exam_results.map_node(scene, first) is None
    assert scene.GetNodeByID(second.GetID()) is second
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2 + 3 + 4
    assert logic.exam.exam_id == "1.2.3.PH0004" and scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    # the same study again reuses its views: nothing is removed or added
    _finished_exam(logic, scene, tmp_path, "PH0004", {})
    assert _exam_nodes(scene, exam_results.EXAM_VIEW_ROLE) == ["PH0004-LMLO", "PH0004-RCC", "PH0004-RMLO"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 3 + 3 + 4


def test_a_view_removed_while_the_exam_ran_is_a_clear_error(scene, tmp_path):
    """The scene held a view when the exam started (so it was not downloaded) and the user
    deleted it while the worker ran: a message saying what to do, not a KeyError."""
    from microcalcai_logic import MicrocalcAILogic
    from microcalcai_logic.volumes import mark_from_server

    logic = MicrocalcAILogic(scene, remember=False)
    held = make_volume(scene, np.zeros((60, 45), np.uint16), name="R CC")
    mark_from_server(held, "PH0003-RCC", SERVER)
    scene.RemoveNode(held)
    removed = r"view R CC \(PH0003-RCC\) was removed from the scene.*run Exam \(BAC\) again"
    with pytest.raises(LogicError, match=removed):
        _finished_exam(logic, scene, tmp_path, "PH0003", {"PH0003-RCC": held})

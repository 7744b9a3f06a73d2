"""Show a whole-image (BAC) answer in the scene: the exam's table, each view as a volume, and each
view's map as a volume lying over its whole view.

Nodes are found by role (and, for maps, by the view volume they lie over) and updated in place,
so running the exam again never piles up nodes. Plain MRML, the same for the Slicer application
and the web page.
"""

from typing import Optional

import numpy as np

from .exam import ExamResult, ViewResult
from .geometry import numpy_to_vtk_matrix, saliency_ijk_to_ras
from .results import (
    DEMONSTRATION,
    EXAM_MAP_ROLE,
    SOURCE_VOLUME_ATTRIBUTE,
    show_in_slice_views,
    style_map_node,
    write_result_table,
)
from .volumes import IMAGE_ID_ATTRIBUTE, ROLE_ATTRIBUTE, find_role, load_volume, mark_from_server, singleton

EXAM_TABLE_ROLE = "exam-results"
EXAM_VIEW_ROLE = "exam-view"  # a view the exam loaded from the server (not one the user opened)
VIEW_ATTRIBUTE = "MicrocalcAI.ExamView"  # "L CC", ... on views and maps
EXAM_ATTRIBUTE = "MicrocalcAI.Exam"
COLUMNS = ("View", "Image", "P(BAC)", "Threshold", "Decision", "Use")
EXAM_ROW = "Exam"


def update_exam_table(scene, exam: ExamResult):
    """One row per view (P(BAC), threshold, the view's decision) and a last row for the exam
    (its score and verdict); the verdict sentence is also the table's attribute."""
    return _write_table(scene, exam.views, exam)


def update_view_table(scene, view: ViewResult):
    """Classify view: the same table with that one view's row and no exam row."""
    return _write_table(scene, [view], None)


def _write_table(scene, views: list, exam: Optional[ExamResult]):
    table_node = singleton(scene, "vtkMRMLTableNode", EXAM_TABLE_ROLE, "MicrocalcAI exam")
    # every row comes from the one model asked, so one mark holds for all
    use = DEMONSTRATION if (exam or views[0]).demonstration else ""
    rows = [(v.view or "?", v.image_id, v.probability, v.threshold, v.decision, use) for v in views]
    if exam is not None:
        rows.append(
            (
                EXAM_ROW,
                exam.exam_id,
                exam.probability,
                exam.threshold,
                "" if exam.positive is None else ("BAC" if exam.positive else "no BAC"),
                use,
            )
        )
    attributes = {
        EXAM_ATTRIBUTE: exam.exam_id if exam else "",
        "MicrocalcAI.Verdict": exam.verdict if exam else "",
        "MicrocalcAI.Model": exam.model if exam else views[0].model,
    }
    return write_result_table(table_node, COLUMNS, rows, attributes)


def exam_table(scene):
    return find_role(scene, "vtkMRMLTableNode", EXAM_TABLE_ROLE)


def view_volume(scene, image_id: str, server_url: Optional[str] = None):
    """The scene's volume of a datastore image (the user's own, or one the exam loaded)."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node.GetAttribute(ROLE_ATTRIBUTE) == EXAM_MAP_ROLE:
            continue
        if node.GetAttribute(IMAGE_ID_ATTRIBUTE) == image_id and (
            server_url is None or node.GetAttribute("MicrocalcAI.Server") in (None, server_url)
        ):
            return node
    return None


def load_view(scene, path: str, image_id: str, server_url: str, view: str):
    """A downloaded view as a volume, marked with its datastore id and its view name."""
    volume = load_volume(scene, path, name=f"{image_id} ({view})" if view else image_id)
    mark_from_server(volume, image_id, server_url)
    volume.SetAttribute(ROLE_ATTRIBUTE, EXAM_VIEW_ROLE)
    return volume


def map_node(scene, volume_node):
    """The exam map lying over `volume_node` (None when there is none)."""
    if volume_node is None:
        return None
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if (
            node.GetAttribute(ROLE_ATTRIBUTE) == EXAM_MAP_ROLE
            and node.GetAttribute(SOURCE_VOLUME_ATTRIBUTE) == volume_node.GetID()
        ):
            return node
    return None


def update_view_map(scene, volume_node, view: ViewResult):
    """The view's map as a volume over the whole view: its IJK-to-RAS is the view's own composed
    with the map's pixel grid from the NRRD header (origin and step in the view's stored pixels),
    so a map at the view's resolution has exactly the view's geometry. None without a map: then
    an older answer's map of this view is removed, so it is never shown over the new answer."""
    if view.saliency is None or view.geometry is None:
        stale = map_node(scene, volume_node)
        if stale is not None:
            scene.RemoveNode(stale)
        return None
    from slicer.util import updateVolumeFromArray

    node = map_node(scene, volume_node)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MicrocalcAI map")
        node.SetAttribute(ROLE_ATTRIBUTE, EXAM_MAP_ROLE)
    node.SetName(f"MicrocalcAI map {view.view or view.image_id} ({view.model}, {view.geometry.method})")
    updateVolumeFromArray(node, np.ascontiguousarray(view.saliency, dtype=np.float32))
    node.SetIJKToRASMatrix(
        numpy_to_vtk_matrix(saliency_ijk_to_ras(volume_node, view.geometry.origin_xy, view.geometry.step_xy))
    )
    node.SetAttribute(VIEW_ATTRIBUTE, view.view)
    node.SetAttribute(IMAGE_ID_ATTRIBUTE, view.image_id)
    style_map_node(scene, node, volume_node)
    return node


def show_view(scene, volume_node, opacity: float, visible: bool) -> int:
    """The view in the slice views' background and its map (if any) over it."""
    return show_in_slice_views(scene, volume_node, map_node(scene, volume_node), opacity, visible)


def forget_exam(scene, keep: Optional[list] = None) -> None:
    """Remove the exam's table, its maps and the views it loaded (the user's own volumes stay).
    With `keep` (the view volumes of the exam now read): only what earlier exams left, i.e. the
    views they loaded that are not kept and the maps not lying over a kept view; the table stays,
    to be rewritten."""
    kept = {node.GetID() for node in keep or []}
    if keep is None:
        show_in_slice_views(scene, None, None, visible=False)
    stale = []
    for class_name, roles in (
        ("vtkMRMLScalarVolumeNode", (EXAM_MAP_ROLE, EXAM_VIEW_ROLE)),
        ("vtkMRMLTableNode", (EXAM_TABLE_ROLE,) if keep is None else ()),
    ):
        for index in range(scene.GetNumberOfNodesByClass(class_name)):
            node = scene.GetNthNodeByClass(index, class_name)
            role = node.GetAttribute(ROLE_ATTRIBUTE)
            over = node.GetAttribute(SOURCE_VOLUME_ATTRIBUTE) if role == EXAM_MAP_ROLE else node.GetID()
            if role in roles and over not in kept:
                stale.append(node)
    for node in stale:
        scene.RemoveNode(node)

"""Show a classification in the scene: a results table and a saliency overlay.

Both are single nodes found by a role attribute and updated in place, so classifying again
(or a hundred times) never piles up nodes. Everything is plain MRML: the same code drives the
Slicer application's slice views and trame-slicer's.
"""

from typing import Optional

import numpy as np

from .classify import Classification
from .errors import LogicError
from .geometry import numpy_to_vtk_matrix, saliency_ijk_to_ras
from .volumes import find_role, singleton

TABLE_ROLE = "results"
SALIENCY_ROLE = "saliency"
EXAM_MAP_ROLE = "exam-map"  # a whole-view map of an exam (exam_results.py), one per view
MAP_ROLES = (SALIENCY_ROLE, EXAM_MAP_ROLE)
COLOR_ROLE = "saliency-colors"
SOURCE_VOLUME_ATTRIBUTE = "MicrocalcAI.SourceVolume"
COLUMNS = ("Model", "Version", "P(malignant)", "Threshold", "Decision", "Use")
# short enough to stay in view in a narrow module panel; the header's tooltip says the rest
DEMONSTRATION = "demonstration"
USE_DESCRIPTION = "'demonstration': a model trained on synthetic (phantom) mammograms, not for real images"
COLUMN_DESCRIPTIONS = {"Use": USE_DESCRIPTION}  # header tooltips, for every table that has the column
DEFAULT_OPACITY = 0.5
# Map values below this stay transparent, so the mammogram shows through where the model
# did not look.
SALIENCY_FLOOR = 0.2


def update_results_table(scene, result: Classification, volume_node=None):
    """One row per member model and one for the ensemble (or the single model asked)."""
    table_node = singleton(scene, "vtkMRMLTableNode", TABLE_ROLE, "MicrocalcAI results")
    attributes = {
        "MicrocalcAI.Roi": f"{result.roi.x:.1f},{result.roi.y:.1f},{result.roi.size}",
        "MicrocalcAI.ImageId": result.image_id or "",
    }
    if volume_node is not None:
        attributes[SOURCE_VOLUME_ATTRIBUTE] = volume_node.GetID()
    rows = [
        (
            r.model,
            r.version,
            r.probability,
            r.threshold,
            r.decision,
            DEMONSTRATION if r.demonstration else "",
        )
        for r in result.rows
    ]
    return write_result_table(table_node, COLUMNS, rows, attributes)


def write_result_table(table_node, names, rows, attributes: dict):
    """Replace the node's table by `rows` of (name, id, probability, threshold, decision, *texts)
    under the column `names` (one text column per name after the fifth), locked (results are
    read, not edited), with `attributes` and the columns' COLUMN_DESCRIPTIONS set, in one
    modification."""
    import vtk

    columns = [vtk.vtkStringArray(), vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkDoubleArray()]
    columns += [vtk.vtkStringArray() for _ in names[4:]]
    for array, name in zip(columns, names):
        array.SetName(name)
    for name, identifier, probability, threshold, *texts in rows:
        columns[0].InsertNextValue(name)
        columns[1].InsertNextValue(identifier)
        columns[2].InsertNextValue(probability)
        columns[3].InsertNextValue(float("nan") if threshold is None else threshold)
        for array, text in zip(columns[4:], texts):
            array.InsertNextValue(text or "")
    was_modifying = table_node.StartModify()
    try:
        table = table_node.GetTable()
        while table.GetNumberOfColumns():
            table.RemoveColumn(0)
        for array in columns:
            table.AddColumn(array)
        for name in names:
            if name in COLUMN_DESCRIPTIONS:
                table_node.SetColumnDescription(name, COLUMN_DESCRIPTIONS[name])
        table_node.SetLocked(True)
        for key, value in attributes.items():
            table_node.SetAttribute(key, value)
        table_node.Modified()
    finally:
        table_node.EndModify(was_modifying)
    return table_node


def table_rows(table_node):
    """The table as a list of dicts (for the web page, the tests and the self-test)."""
    table = table_node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    return [
        {
            name: table.GetValue(r, c).ToString()
            if table.GetColumn(c).IsA("vtkStringArray")
            else table.GetValue(r, c).ToDouble()
            for c, name in enumerate(names)
        }
        for r in range(table.GetNumberOfRows())
    ]


def saliency_color_node(scene):
    """A warm colour table ('hot': black-red-yellow-white) whose low end is transparent."""
    node = find_role(scene, "vtkMRMLColorTableNode", COLOR_ROLE)
    if node is not None:
        return node
    import slicer

    node = slicer.vtkMRMLColorTableNode()
    node.SetName("MicrocalcAI saliency")
    node.SetAttribute("MicrocalcAI.Role", COLOR_ROLE)
    node.SetTypeToUser()
    node.SetNumberOfColors(256)
    # The 'hot' ramp in closed form (red rises first, then green, then blue): three lines
    # instead of a matplotlib dependency that Slicer does not ship.
    t = np.linspace(0.0, 1.0, 256)
    red, green, blue = np.clip(t * 3, 0, 1), np.clip(t * 3 - 1, 0, 1), np.clip(t * 3 - 2, 0, 1)
    alpha = np.clip((t - SALIENCY_FLOOR) / 0.2, 0, 1)
    for index in range(256):
        node.SetColor(
            index, "", float(red[index]), float(green[index]), float(blue[index]), float(alpha[index])
        )
    scene.AddNode(node)
    return node


def update_saliency_node(scene, volume_node, result: Classification):
    """The saliency map as a scalar volume lying exactly over its ROI (None without a map)."""
    if result.saliency is None or result.saliency_geometry is None:
        return None
    from slicer.util import updateVolumeFromArray

    geometry = result.saliency_geometry
    node = singleton(scene, "vtkMRMLScalarVolumeNode", SALIENCY_ROLE, "MicrocalcAI saliency")
    node.SetName("MicrocalcAI saliency ({}, {})".format(result.model, geometry.method or "map"))
    updateVolumeFromArray(node, np.ascontiguousarray(result.saliency, dtype=np.float32))
    node.SetIJKToRASMatrix(
        numpy_to_vtk_matrix(saliency_ijk_to_ras(volume_node, geometry.origin_xy, geometry.step_xy))
    )
    style_map_node(scene, node, volume_node)
    return node


def style_map_node(scene, node, volume_node) -> None:
    """A map volume over `volume_node`: follows its transform, hidden from node menus, drawn with
    the saliency colours from the floor up (the ROI map and the exam's whole-view maps alike)."""
    import slicer

    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    node.SetAttribute(SOURCE_VOLUME_ATTRIBUTE, volume_node.GetID())
    # Not an image to choose or edit: kept out of the Mammogram selector and other node menus.
    node.SetHideFromEditors(True)
    display = node.GetDisplayNode()
    if display is None:
        display = slicer.vtkMRMLScalarVolumeDisplayNode()
        scene.AddNode(display)
        node.SetAndObserveDisplayNodeID(display.GetID())
    display.SetAndObserveColorNodeID(saliency_color_node(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)  # maps are normalised: fixed window keeps runs comparable
    display.AutoThresholdOff()
    display.SetLowerThreshold(SALIENCY_FLOOR)
    display.SetUpperThreshold(1.0)
    display.ApplyThresholdOn()
    node.Modified()


def show_in_slice_views(
    scene, volume_node, saliency_node, opacity: float = DEFAULT_OPACITY, visible: bool = True
) -> int:
    """Background = the mammogram (when given), foreground = the map, in every slice view.

    Only the module's own map is ever taken off a view: a foreground the user chose (another
    overlay) stays, and with no map to show nothing else changes. Returns how many slice views
    were set (0 where the scene has none, as in batch use).
    """
    if not 0.0 <= opacity <= 1.0:
        raise LogicError(f"The saliency opacity must be between 0 and 1 (got {opacity}).")
    show = visible and saliency_node is not None
    count = scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")
    for index in range(count):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        was_modifying = composite.StartModify()
        if volume_node is not None:
            composite.SetBackgroundVolumeID(volume_node.GetID())
        if show:
            composite.SetForegroundVolumeID(saliency_node.GetID())
            composite.SetForegroundOpacity(opacity)
        elif _is_saliency(scene, composite.GetForegroundVolumeID()):
            composite.SetForegroundVolumeID(None)
        composite.EndModify(was_modifying)
    return count


def _is_saliency(scene, node_id) -> bool:
    node = scene.GetNodeByID(node_id) if node_id else None
    return node is not None and node.GetAttribute("MicrocalcAI.Role") in MAP_ROLES


def forget_results_of_other_images(scene, volume_node) -> bool:
    """Remove the map and the results table when they belong to another image than
    `volume_node` (switching images must never leave the old map over the new one)."""
    node = saliency_node(scene)
    table = find_role(scene, "vtkMRMLTableNode", TABLE_ROLE)
    shown_id = volume_node.GetID() if volume_node is not None else None
    stale = [
        n
        for n in (node, table)
        if n is not None and n.GetAttribute(SOURCE_VOLUME_ATTRIBUTE) not in (None, shown_id)
    ]
    if node in stale:
        show_in_slice_views(scene, None, None, visible=False)
    for n in stale:
        scene.RemoveNode(n)
    return bool(stale)


def saliency_node(scene) -> Optional[object]:
    return find_role(scene, "vtkMRMLScalarVolumeNode", SALIENCY_ROLE)

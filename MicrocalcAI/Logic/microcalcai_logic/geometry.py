"""Where an ROI lies in the image's stored pixels, and where a saliency map lies in RAS.

Pixel coordinates follow the server's contract (docs/server-api.md): x = column = I,
y = row = J of the volume's IJK grid (Slicer keeps a 2D image's stored row order), pixel
centres at integers. Every mapping goes through the volume's own IJK-to-RAS matrix, so
spacing, origin, direction cosines and flipped axes are all honoured, and through the
volume's parent transform when it has one (linear only).
"""

import math
from collections.abc import Sequence

import numpy as np

from .contract import PixelRoi
from .errors import LogicError


def vtk_to_numpy_matrix(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def numpy_to_vtk_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def parent_to_world(node) -> np.ndarray:
    """4x4 matrix from a transformable node's local RAS to world RAS (identity without a parent)."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise LogicError(
            f"'{node.GetName()}' is under a non-linear transform: harden the transform on it (Data module) "
            "before classifying."
        )
    import vtk

    matrix = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(matrix)
    return vtk_to_numpy_matrix(matrix)


def ijk_to_ras(volume_node) -> np.ndarray:
    """The volume's local IJK-to-RAS matrix (without its parent transform)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return vtk_to_numpy_matrix(matrix)


def ijk_to_world(volume_node) -> np.ndarray:
    return parent_to_world(volume_node) @ ijk_to_ras(volume_node)


def world_to_pixel(volume_node, points_ras: Sequence[Sequence[float]]) -> np.ndarray:
    """(n, 3) world RAS points -> (n, 3) continuous IJK (x, y, k) of the volume."""
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    homogeneous = np.c_[points, np.ones(len(points))]
    return (np.linalg.inv(ijk_to_world(volume_node)) @ homogeneous.T).T[:, :3]


def pixel_to_world(volume_node, points_xy: Sequence[Sequence[float]]) -> np.ndarray:
    """(n, 2) pixel (x, y) on the image plane (k = 0) -> (n, 3) world RAS."""
    points = np.asarray(points_xy, dtype=float).reshape(-1, 2)
    homogeneous = np.c_[points, np.zeros(len(points)), np.ones(len(points))]
    return (ijk_to_world(volume_node) @ homogeneous.T).T[:, :3]


def pixel_spacing_mm(volume_node) -> tuple[float, float]:
    """World size of one pixel step along x (columns) and y (rows), whatever the direction."""
    matrix = ijk_to_world(volume_node)
    return float(np.linalg.norm(matrix[:3, 0])), float(np.linalg.norm(matrix[:3, 1]))


def image_size(volume_node) -> tuple[int, int]:
    """(columns, rows) of a 2D scalar volume; a clear error for anything else."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None:
        raise LogicError("Select a volume that holds an image (the selected one has no pixels).")
    cols, rows, slices = image.GetDimensions()
    if slices != 1:
        raise LogicError(
            f"'{volume_node.GetName()}' has {slices} slices: MicrocalcAI classifies 2D mammograms, "
            "load a single image."
        )
    return cols, rows


def roi_from_markups(volume_node, roi_node) -> PixelRoi:
    """The square pixel ROI that covers a markups ROI box as seen on the image.

    The box (possibly rotated, under transforms) is projected onto the image plane; the
    result is centred on the box's centre and as large as the box's larger side in pixels.
    """
    if roi_node is None:
        raise LogicError("Place an ROI box (or a point) on the image first.")
    if roi_node.GetNumberOfDefinedControlPoints() < 1 or min(roi_node.GetSize()[:2]) <= 0:
        raise LogicError(f"The ROI '{roi_node.GetName()}' has not been placed yet: draw it on the image.")
    object_to_world = vtk_to_numpy_matrix(roi_node.GetObjectToWorldMatrix())
    half = np.asarray(roi_node.GetSize(), dtype=float) / 2.0
    corners = np.array(
        [
            [sx * half[0], sy * half[1], sz * half[2], 1.0]
            for sx in (-1, 1)
            for sy in (-1, 1)
            for sz in (-1, 1)
        ]
    )
    corners_world = (object_to_world @ corners.T).T[:, :3]
    corners_px = world_to_pixel(volume_node, corners_world)
    lo, hi = corners_px[:, :2].min(axis=0), corners_px[:, :2].max(axis=0)
    # Markups store positions in single precision: snap to 1/100 pixel so a box placed over
    # an ROI reads back as exactly that ROI (x = 37.5 must not become 37.49999 and round down).
    centre = np.round((lo + hi) / 2.0, 2)
    size = max(1, int(math.ceil(round(float((hi - lo).max()), 2))))
    roi = PixelRoi(float(centre[0]), float(centre[1]), size)
    check_roi_overlaps(volume_node, roi)
    return roi


def roi_from_point(volume_node, point_ras: Sequence[float], size_mm: float) -> PixelRoi:
    """A square ROI of `size_mm` millimetres centred on a point placed on the image."""
    if point_ras is None:
        raise LogicError("Place a point (or an ROI box) on the image first.")
    if not size_mm or size_mm <= 0:
        raise LogicError(f"The ROI size must be a positive number of millimetres (got {size_mm}).")
    # Snap to 1/100 pixel, as for ROI boxes: a point placed on a pixel centre stays on it.
    x, y = (round(float(v), 2) for v in world_to_pixel(volume_node, [point_ras])[0][:2])
    sx, sy = pixel_spacing_mm(volume_node)
    # Mammograms have square pixels; for the odd anisotropic file the geometric mean keeps
    # the ROI's area in mm^2 right.
    size = max(1, int(round(size_mm / math.sqrt(sx * sy))))
    roi = PixelRoi(float(x), float(y), size)
    check_roi_overlaps(volume_node, roi)
    return roi


def check_roi_overlaps(volume_node, roi: PixelRoi) -> None:
    """The server pads an ROI that overhangs the border; one that misses the image is an error."""
    cols, rows = image_size(volume_node)
    x0, y0 = roi.origin_xy()
    if x0 + roi.size <= 0 or y0 + roi.size <= 0 or x0 >= cols or y0 >= rows:
        raise LogicError(
            f"The ROI (centre x={roi.x:.0f}, y={roi.y:.0f}, {roi.size} pixels) lies outside the image "
            f"'{volume_node.GetName()}' ({cols} x {rows} pixels): "
            "place it on the breast."
        )


def map_to_source(origin_xy: Sequence[float], step_xy: Sequence[float]) -> np.ndarray:
    """4x4 from map IJK (i, j, k) to source pixel IJK: x = x0 + i*sx, y = y0 + j*sy."""
    transform = np.eye(4)
    transform[0, 0], transform[1, 1] = float(step_xy[0]), float(step_xy[1])
    transform[0, 3], transform[1, 3] = float(origin_xy[0]), float(origin_xy[1])
    return transform


def saliency_ijk_to_ras(
    volume_node, origin_xy: Sequence[float], step_xy: Sequence[float] = (1.0, 1.0)
) -> np.ndarray:
    """IJK-to-RAS for a saliency map so that it lies exactly over its ROI.

    Expressed in the volume's local RAS: give the map node the volume's parent transform and
    the two stay together when the volume is moved.
    """
    return ijk_to_ras(volume_node) @ map_to_source(origin_xy, step_xy)


def roi_box_world(volume_node, roi: PixelRoi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World centre, axis directions (3x3 columns: x, y, normal) and size (mm) of a pixel ROI.

    Used to place a markups ROI box exactly over an ROI the server proposes.
    """
    matrix = ijk_to_world(volume_node)
    # Centred on (x, y) itself: reading the box back gives the same ROI (an even-sized crop is
    # half a pixel off its centre, the box is not, so a round trip never drifts).
    centre = pixel_to_world(volume_node, [(roi.x, roi.y)])[0]
    axes = matrix[:3, :3].copy()
    lengths = np.linalg.norm(axes, axis=0)
    lengths[lengths == 0] = 1.0
    directions = axes / lengths
    size = np.array([roi.size * lengths[0], roi.size * lengths[1], max(lengths[2], 1e-3)])
    return centre, directions, size


def place_roi_node(roi_node, volume_node, roi: PixelRoi) -> None:
    """Put a markups ROI box over a pixel ROI, aligned with the image's axes."""
    centre, directions, size = roi_box_world(volume_node, roi)
    # A flipped axis makes the direction matrix left-handed; a box's frame must be a rotation.
    if np.linalg.det(directions) < 0:
        directions[:, 2] = -directions[:, 2]
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = directions
    object_to_node[:3, 3] = centre
    was_modifying = roi_node.StartModify()
    try:
        if roi_node.GetParentTransformNode() is not None:
            roi_node.SetAndObserveTransformNodeID(None)
        roi_node.SetAndObserveObjectToNodeMatrix(numpy_to_vtk_matrix(object_to_node))
        roi_node.SetSize(float(size[0]), float(size[1]), float(size[2]))
    finally:
        roi_node.EndModify(was_modifying)

"""ROI and saliency geometry on real MRML nodes, without a server: IJK <-> RAS with spacing,
origin, flipped axes and rotations, markups ROI boxes, points with a size in millimetres."""

import numpy as np
import pytest
from microcalcai_logic import LogicError, PixelRoi
from microcalcai_logic import geometry as g
from slicer_test_helpers import GEOMETRIES, make_volume

ROWS, COLS = 300, 200


@pytest.fixture(params=sorted(GEOMETRIES))
def volume(request, scene):
    return make_volume(
        scene, np.zeros((ROWS, COLS), np.uint16), name=request.param, **GEOMETRIES[request.param]
    )


def test_pixel_world_round_trip_honours_spacing_origin_and_direction(volume):
    geometry = GEOMETRIES[volume.GetName()]
    pixels = np.array([[0, 0], [COLS - 1, 0], [0, ROWS - 1], [17.25, 203.5]])
    world = g.pixel_to_world(volume, pixels)
    # Independent of the Logic: origin + direction . (spacing * index).
    expected = (
        geometry["origin"]
        + (geometry["directions"] @ (np.c_[pixels, np.zeros(4)] * [*geometry["spacing"], 1]).T).T
    )
    np.testing.assert_allclose(world, expected, atol=1e-9)
    np.testing.assert_allclose(g.world_to_pixel(volume, world)[:, :2], pixels, atol=1e-9)


@pytest.mark.parametrize(
    "roi", [PixelRoi(100.0, 150.0, 64), PixelRoi(37.5, 12.0, 31), PixelRoi(190.0, 290.0, 50)]
)
def test_markups_roi_box_round_trips_to_the_same_pixel_roi(scene, volume, roi):
    roi_node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    g.place_roi_node(roi_node, volume, roi)
    back = g.roi_from_markups(volume, roi_node)
    assert back == roi
    # The box's world size is the ROI in millimetres along the image's own axes.
    sx, sy = g.pixel_spacing_mm(volume)
    np.testing.assert_allclose(
        sorted(roi_node.GetSize()[:2]), sorted([roi.size * sx, roi.size * sy]), rtol=1e-9
    )


def test_roi_box_under_a_parent_transform_is_read_in_world(scene, volume):
    from microcalcai_logic.geometry import numpy_to_vtk_matrix

    roi_node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    g.place_roi_node(roi_node, volume, PixelRoi(80.0, 120.0, 40))
    # Move both the image and the box by the same rigid transform: the pixel ROI must not change.
    shift = np.eye(4)
    shift[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    shift[:3, 3] = [25.0, -3.0, 7.0]
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "move")
    transform.SetMatrixTransformToParent(numpy_to_vtk_matrix(shift))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    roi_node.SetAndObserveTransformNodeID(transform.GetID())
    back = g.roi_from_markups(volume, roi_node)
    assert (back.x, back.y, back.size) == (pytest.approx(80.0), pytest.approx(120.0), 40)
    # Only the image moved: the box now covers other pixels (or misses the image).
    roi_node.SetAndObserveTransformNodeID(None)
    try:
        moved = g.roi_from_markups(volume, roi_node)
    except LogicError:
        moved = None
    assert moved is None or abs(moved.x - 80.0) > 1 or abs(moved.y - 120.0) > 1


def test_rotated_roi_box_is_covered_by_its_pixel_square(scene):
    volume = make_volume(scene, np.zeros((ROWS, COLS), np.uint16), spacing=(0.5, 0.5))
    roi_node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi_node.SetCenter(50.0, 75.0, 0.0)
    roi_node.SetSize(10.0, 10.0, 1.0)
    roi = g.roi_from_markups(volume, roi_node)
    assert (roi.x, roi.y, roi.size) == (pytest.approx(100.0), pytest.approx(150.0), 20)
    from microcalcai_logic.geometry import numpy_to_vtk_matrix

    turned = np.eye(4)
    turned[:3, :3] = np.array(
        [[np.cos(np.pi / 4), -np.sin(np.pi / 4), 0], [np.sin(np.pi / 4), np.cos(np.pi / 4), 0], [0, 0, 1]]
    )
    turned[:3, 3] = [50.0, 75.0, 0.0]
    roi_node.SetAndObserveObjectToNodeMatrix(numpy_to_vtk_matrix(turned))
    # A 45-degree square of side 20 px needs a 20*sqrt(2) px axis-aligned square to cover it.
    assert g.roi_from_markups(volume, roi_node).size == int(np.ceil(20 * np.sqrt(2)))


def test_point_with_size_in_mm(scene, volume):
    centre = g.pixel_to_world(volume, [(120.0, 40.0)])[0]
    roi = g.roi_from_point(volume, centre, size_mm=5.0)
    sx, sy = g.pixel_spacing_mm(volume)
    assert roi.x == pytest.approx(120.0) and roi.y == pytest.approx(40.0)
    assert roi.size == round(5.0 / np.sqrt(sx * sy))


def test_saliency_map_lies_exactly_over_its_roi(volume):
    roi = PixelRoi(101.4, 57.0, 48)
    x0, y0 = roi.origin_xy()
    assert (x0, y0) == (101 - 24, 57 - 24)
    map_to_world = g.parent_to_world(volume) @ g.saliency_ijk_to_ras(volume, (x0, y0), (1.0, 1.0))
    corners_map = np.array([[0, 0, 0, 1], [47, 0, 0, 1], [0, 47, 0, 1], [47, 47, 0, 1]], dtype=float)
    corners_world = (map_to_world @ corners_map.T).T[:, :3]
    expected = g.pixel_to_world(volume, [(x0, y0), (x0 + 47, y0), (x0, y0 + 47), (x0 + 47, y0 + 47)])
    np.testing.assert_allclose(corners_world, expected, atol=1e-9)
    # A coarser map (step 2) over the same ROI covers the same pixels.
    coarse = g.parent_to_world(volume) @ g.saliency_ijk_to_ras(volume, (x0, y0), (2.0, 2.0))
    np.testing.assert_allclose(
        (coarse @ [23, 23, 0, 1])[:3], g.pixel_to_world(volume, [(x0 + 46, y0 + 46)])[0], atol=1e-9
    )


def test_roi_outside_the_image_is_a_clear_error(scene, volume):
    far = g.pixel_to_world(volume, [(COLS + 500.0, ROWS + 500.0)])[0]
    with pytest.raises(LogicError, match="outside the image"):
        g.roi_from_point(volume, far, size_mm=5.0)
    with pytest.raises(LogicError, match="positive number of millimetres"):
        g.roi_from_point(volume, far, size_mm=0)
    with pytest.raises(LogicError, match="not been placed"):
        g.roi_from_markups(volume, scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "empty"))


def test_roi_overhanging_the_border_is_accepted(volume):
    # The server pads overhanging ROIs; only one that misses the image is refused.
    corner = g.pixel_to_world(volume, [(0.0, 0.0)])[0]
    roi = g.roi_from_point(volume, corner, size_mm=40 * np.sqrt(np.prod(g.pixel_spacing_mm(volume))))
    assert roi.origin_xy() == (-20, -20)


def test_3d_volume_is_refused(scene):
    volume = make_volume(scene, np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(LogicError, match="3 slices"):
        g.image_size(volume)

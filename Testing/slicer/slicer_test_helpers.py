"""Helpers shared by the Slicer module's tests (real MRML nodes from slicer-core)."""

import numpy as np


def make_volume(scene, pixels, spacing=(1.0, 1.0), origin=(0.0, 0.0, 0.0), directions=None, name="image"):
    """A 2D scalar volume node with the given geometry; `directions` is 3x3 (columns: I, J, K)."""
    from slicer.util import updateVolumeFromArray

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    updateVolumeFromArray(node, np.asarray(pixels))
    node.SetSpacing(spacing[0], spacing[1], 1.0)
    node.SetOrigin(*origin)
    if directions is not None:
        node.SetIJKToRASDirections([list(row) for row in np.asarray(directions, dtype=float)])
    return node


def rotation_z(degrees):
    angle = np.radians(degrees)
    return np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])


# Geometries a mammogram volume meets in practice: plain pixels; DICOM's LPS flip of both
# in-plane axes with non-unit spacing and an origin; a single flipped axis (left-handed);
# an arbitrary in-plane rotation with anisotropic spacing.
GEOMETRIES = {
    "identity": dict(spacing=(1.0, 1.0), origin=(0.0, 0.0, 0.0), directions=np.eye(3)),
    "lps-flip": dict(
        spacing=(0.07, 0.07), origin=(-31.5, 120.25, 4.0), directions=np.diag([-1.0, -1.0, 1.0])
    ),
    "one-flipped-axis": dict(
        spacing=(0.1, 0.05), origin=(12.0, -7.5, 0.0), directions=np.diag([1.0, -1.0, 1.0])
    ),
    "rotated": dict(spacing=(0.2, 0.1), origin=(5.0, 6.0, -2.0), directions=rotation_z(30.0)),
}

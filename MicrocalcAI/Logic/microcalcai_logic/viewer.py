"""Showing one mammogram at a time: opening it (a file or a datastore image), its grey-scale
display, mammography window/level presets, and the ROI box or point a person places on it.

Front ends that show one image at a time (the web page; the Slicer widget when it opens an image
for the user) call these so that both behave the same. Plain MRML, no Qt, no torch.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import LogicError
from .volumes import (
    IMAGE_ID_ATTRIBUTE,
    ROLE_ATTRIBUTE,
    ensure_grey_display,
    find_role,
    load_volume,
    singleton,
)

IMAGE_ROLE = "image"
ROI_ROLE = "roi"  # the same box Next sample places (active_learning.ROI_ROLE)
POINT_ROLE = "point"
# Window/level presets as percentiles of the breast's intensities: mammograms come with 10 to 16
# bits and any offset, so fixed numbers would suit one detector only. The breast is what lies
# above the darkest 2% of the image's range (air and collimation are darker).
WINDOW_PRESETS = {
    "Default": None,  # the file's own window (DICOM VOI) or Slicer's automatic one
    "Full range": (0.0, 100.0),  # of the whole image, air included
    "Fatty breast": (2.0, 85.0),
    "Dense breast": (40.0, 99.8),
    "Calcifications": (85.0, 99.98),
}
DEFAULT_WINDOW_ATTRIBUTE = "MicrocalcAI.DefaultWindowLevel"


@dataclass(frozen=True)
class ServerImage:
    image_id: str
    name: str
    labeled: bool


def prepare_display(volume_node) -> None:
    """A grey-scale display with the file's window, remembered as the 'Default' preset.

    Slicer's volume reader leaves the colour table unset when it runs without the application's
    colour logic (slicer-core, trame-slicer), and a slice view then draws nothing.
    """
    display = ensure_grey_display(volume_node)
    if volume_node.GetAttribute(DEFAULT_WINDOW_ATTRIBUTE) is None:
        window, level = display.GetWindow(), display.GetLevel()
        if window <= 0:
            low, high = _percentiles(volume_node, (1.0, 99.5))
            window, level = max(high - low, 1e-6), (high + low) / 2.0
        volume_node.SetAttribute(DEFAULT_WINDOW_ATTRIBUTE, f"{window!r},{level!r}")
        set_window_level(volume_node, window, level)


def _percentiles(volume_node, percents):
    from slicer.util import arrayFromVolume

    pixels = np.asarray(arrayFromVolume(volume_node), dtype=np.float64).ravel()
    if pixels.size == 0:
        raise LogicError(f"'{volume_node.GetName()}' has no pixels.")
    low, high = float(pixels.min()), float(pixels.max())
    breast = pixels[pixels > low + 0.02 * (high - low)]
    if breast.size < 0.01 * pixels.size:  # a nearly empty image: use every pixel
        breast = pixels
    return [float(v) for v in np.percentile(breast, percents)]


def window_presets() -> list:
    return list(WINDOW_PRESETS)


def preset_window_level(volume_node, preset: str) -> tuple:
    """(window, level) of a named preset for this image."""
    if preset not in WINDOW_PRESETS:
        raise LogicError(f"Unknown window preset '{preset}': choose one of {', '.join(WINDOW_PRESETS)}.")
    percents = WINDOW_PRESETS[preset]
    if percents is None:
        prepare_display(volume_node)
        window, level = (float(v) for v in volume_node.GetAttribute(DEFAULT_WINDOW_ATTRIBUTE).split(","))
        return window, level
    if preset == "Full range":
        low, high = intensity_range(volume_node)
    else:
        low, high = _percentiles(volume_node, percents)
    return max(high - low, 1e-6), (high + low) / 2.0


def apply_preset(volume_node, preset: str) -> tuple:
    window, level = preset_window_level(volume_node, preset)
    set_window_level(volume_node, window, level)
    return window, level


def set_window_level(volume_node, window: float, level: float) -> None:
    """Brightness (level) and contrast (window) in the image's own intensity units."""
    if not window or window <= 0:
        raise LogicError(f"The window (contrast) must be a positive number (got {window}).")
    display = volume_node.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(float(window), float(level))


def intensity_range(volume_node) -> tuple:
    """(min, max) of the image's pixel values: the bounds of a brightness/contrast control."""
    low, high = volume_node.GetImageData().GetScalarRange()
    return float(low), float(high)


# -- opening one image ---------------------------------------------------------------------------
def _replace_image(logic, volume_node, keep_box: bool = False) -> None:
    """Make `volume_node` the image shown: earlier images, their overlay and marks are removed
    (with `keep_box`, the ROI box stays: Next sample has just placed it on the new image)."""
    scene = logic.scene
    stale = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node is not volume_node:
            stale.append(node)
    for class_name in ("vtkMRMLMarkupsROINode", "vtkMRMLMarkupsFiducialNode"):
        if keep_box and class_name == "vtkMRMLMarkupsROINode":
            continue
        for index in range(scene.GetNumberOfNodesByClass(class_name)):
            stale.append(scene.GetNthNodeByClass(index, class_name))
    for node in stale:
        scene.RemoveNode(node)
    if volume_node.GetAttribute(ROLE_ATTRIBUTE) is None:
        volume_node.SetAttribute(ROLE_ATTRIBUTE, IMAGE_ROLE)
    prepare_display(volume_node)
    logic.volume, logic.last, logic.exam = volume_node, None, None  # the exam's views went too
    if not keep_box:
        logic.roi = None


def adopt_sample(logic) -> None:
    """After `MicrocalcAILogic.next_sample`: show only the sample, with the ROI box it placed."""
    if logic.volume is None:
        raise LogicError("No sample is loaded.")
    _replace_image(logic, logic.volume, keep_box=True)
    image_id = shown_image_id(logic.volume)
    if image_id:
        logic.volume.SetName(image_id)  # loaded beside the previous sample of that name


def open_image_file(logic, path: str, name: Optional[str] = None):
    """Load a DICOM, PNG, PGM or NRRD file as the image shown (replacing the previous one)."""
    volume = load_volume(logic.scene, path, name=name)
    from .geometry import image_size

    try:
        image_size(volume)
    except LogicError:
        logic.scene.RemoveNode(volume)
        raise
    _replace_image(logic, volume)
    return volume


def server_images(logic) -> list:
    """The images of the server's datastore, by id, with whether they already carry a label."""
    listing = logic.require_client().datastore()
    objects = listing.get("objects") if isinstance(listing, dict) else None
    images = []
    for image_id, entry in sorted((objects or {}).items()):
        entry = entry or {}
        info = entry.get("image") or {}
        name = str(info.get("name") or image_id) if isinstance(info, dict) else str(image_id)
        labels = entry.get("labels") or {}
        images.append(ServerImage(image_id=str(image_id), name=name, labeled=bool(labels)))
    return images


def open_server_image(logic, image_id: str):
    """Download a datastore image and show it; classification and labels then refer to its id."""
    from .datastore import open_image

    volume = open_image(logic.require_client(), logic.scene, image_id, logic.cache_folder)
    _replace_image(logic, volume)
    volume.SetName(image_id)  # loaded beside the previous image of that name, which is gone now
    return volume


def shown_image_id(volume_node) -> Optional[str]:
    return volume_node.GetAttribute(IMAGE_ID_ATTRIBUTE) if volume_node is not None else None


# -- the marks a person places -------------------------------------------------------------------
def roi_box_node(scene):
    """The one ROI box of the scene (Next sample places its proposal in the same node)."""
    node = singleton(scene, "vtkMRMLMarkupsROINode", ROI_ROLE, "MicrocalcAI ROI")
    _outline_only(node)
    return node


def point_node(scene):
    """The one point list used for 'point + size' ROIs; it keeps a single point."""
    node = singleton(scene, "vtkMRMLMarkupsFiducialNode", POINT_ROLE, "MicrocalcAI point")
    node.SetMaximumNumberOfControlPoints(1)
    _outline_only(node)
    return node


def _outline_only(node) -> None:
    """Marks that leave the calcifications and the saliency overlay visible: an unfilled yellow
    outline, no name label."""
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is None:
        return
    display.SetFillVisibility(False)
    display.SetPointLabelsVisibility(False)
    display.SetPropertiesLabelVisibility(False)
    display.SetSelectedColor(1.0, 0.83, 0.0)
    display.SetColor(1.0, 0.83, 0.0)


def placed_box(scene):
    """The ROI box if it has been placed, else None."""
    node = find_role(scene, "vtkMRMLMarkupsROINode", ROI_ROLE)
    if node is None or node.GetNumberOfDefinedControlPoints() < 1 or min(node.GetSize()[:2]) <= 0:
        return None
    return node


def remove_marks(scene, keep_box: bool = False, keep_point: bool = False) -> None:
    for class_name, role, keep in (
        ("vtkMRMLMarkupsROINode", ROI_ROLE, keep_box),
        ("vtkMRMLMarkupsFiducialNode", POINT_ROLE, keep_point),
    ):
        node = find_role(scene, class_name, role)
        if node is not None and not keep:
            scene.RemoveNode(node)

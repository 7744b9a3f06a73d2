"""`microcalcai inspect` and `microcalcai crop` through the real command-line entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from microcalcai.cli.main import main
from microcalcai.io import read_image
from microcalcai.io.reader import INSPECT_KEYS
from microcalcai.roi import crop_roi


@pytest.fixture
def mammogram(write_dicom):
    pixels = np.random.default_rng(2).integers(0, 4096, (120, 90)).astype(np.uint16)
    return write_dicom(
        pixels,
        "mg.dcm",
        bits_stored=12,
        spacing_mm=(0.1, 0.1),
        spacing_tag="ImagerPixelSpacing",
        laterality="L",
        view="MLO",
        window=(2048, 4096),
        transfer_syntax="rle",
    )


def test_inspect_json_has_exactly_the_documented_keys(mammogram, capsys):
    assert main(["inspect", str(mammogram), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # The keys the issue specifies, in its order.
    issue_keys = "modality, rows, columns, bits_stored, photometric, presentation_intent, pixel_spacing_mm, "
    issue_keys += "spacing_source, laterality, view"
    assert tuple(info) == INSPECT_KEYS == tuple(issue_keys.split(", "))
    assert info == {
        "modality": "MG",
        "rows": 120,
        "columns": 90,
        "bits_stored": 12,
        "photometric": "MONOCHROME2",
        "presentation_intent": "FOR PRESENTATION",
        "pixel_spacing_mm": [0.1, 0.1],
        "spacing_source": "ImagerPixelSpacing",
        "laterality": "L",
        "view": "MLO",
    }


def test_inspect_text(mammogram, capsys):
    assert main(["inspect", str(mammogram)]) == 0
    out = capsys.readouterr().out
    assert (
        "pixel_spacing_mm     0.1 x 0.1 (row x column)" in out
        and "spacing_source       ImagerPixelSpacing" in out
    )


def test_crop_to_npy_is_the_library_crop(mammogram, tmp_path, capsys):
    out = tmp_path / "roi.npy"
    assert (
        main(["crop", str(mammogram), "--center", "40,60", "--size", "32", "--out", str(out), "--json"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    saved = np.load(out)
    want = crop_roi(read_image(mammogram), (40, 60), size_px=32)
    assert saved.dtype == np.float32 and saved.shape == (32, 32)
    assert np.array_equal(saved, want.pixels)
    assert 0.0 <= saved.min() and saved.max() <= 1.0
    assert summary["size_px"] == 32 and summary["to_source"] == want.to_source.tolist()
    assert summary["spacing_mm"] == [0.1, 0.1] and summary["padded"] is False


def test_crop_in_mm_to_png(mammogram, tmp_path, capsys):
    out = tmp_path / "roi.png"
    assert (
        main(
            [
                "crop",
                str(mammogram),
                "--center",
                "5,5",
                "--size-mm",
                "3",
                "--spacing-mm",
                "0.05",
                "--pad-mode",
                "edge",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "60 x 60 pixels" in capsys.readouterr().out and "padded (edge)" in "padded (edge)"
    with Image.open(out) as png:
        assert png.size == (60, 60) and png.mode.startswith("I")
        assert png.info["dpi"][0] == pytest.approx(25.4 / 0.05, rel=1e-3)
        values = np.asarray(png) / 65535.0
    want = crop_roi(read_image(mammogram), (5, 5), size_mm=3, spacing_mm=0.05, pad_mode="edge").pixels
    np.testing.assert_allclose(values, want, atol=1 / 65535 + 1e-7)


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["--center", "500,60", "--size", "32"], 1, "ROI centre x=500, y=60 is outside the image"),
        (["--center", "40,60", "--size", "0"], 2, "argument --size: must be greater than 0"),
        (["--center", "40,60", "--size", "-3"], 2, "argument --size: must be greater than 0"),
        (["--center", "40,60", "--size-mm", "0"], 2, "argument --size-mm: must be greater than 0"),
        (["--center", "40", "--size", "8"], 2, "argument --center: expected X,Y"),
        (["--center", "40,60"], 2, "give the ROI size"),
        (["--center", "40,60", "--size", "8", "--spacing-mm", "0.1"], 2, "--spacing-mm needs --size-mm"),
    ],
)
def test_crop_errors_exit_non_zero_with_one_message(mammogram, tmp_path, capsys, argv, code, needle):
    out = tmp_path / "roi.npy"
    with pytest.raises(SystemExit) if code == 2 else _no_raise() as info:
        result = main(["crop", str(mammogram), *argv, "--out", str(out)])
    result = info.value.code if code == 2 else result
    assert result == code
    assert needle in capsys.readouterr().err
    assert not out.exists()


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_crop_refuses_other_output_types(mammogram, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["crop", str(mammogram), "--center", "1,1", "--size", "4", "--out", str(tmp_path / "roi.jpg")])
    assert info.value.code == 2 and "must end in .npy or .png" in capsys.readouterr().err


def test_console_script_reports_bad_files_on_stderr(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image\n")
    done = subprocess.run(
        [sys.executable, "-m", "microcalcai", "inspect", str(bad), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"microcalcai inspect: error: {bad}: not an image this tool reads (first bytes b'not an i'); "
        "give a DICOM, PNG, TIFF, PGM or NRRD mammogram"
    ]


def test_crop_preview_outlines_the_roi(mammogram, tmp_path, capsys):
    preview = tmp_path / "preview.png"
    argv = ["crop", str(mammogram), "--center", "60,30", "--size", "20", "--out", str(tmp_path / "r.npy")]
    assert main([*argv, "--preview", str(preview), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["preview"] == str(preview)
    with Image.open(preview) as png:
        rgb = np.asarray(png.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 120) & (rgb[..., 2] < 120)
    ys, xs = np.nonzero(red)
    assert red.sum() > 40  # the outline is drawn ...
    assert xs.max() < rgb.shape[1] / 2  # ... on the overview, the left panel
    with pytest.raises(SystemExit):
        main([*argv, "--preview", str(tmp_path / "p.jpg")])


def test_crop_display_options_reach_the_reader(write_dicom, tmp_path):
    stored = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096
    path = write_dicom(stored, "two.dcm", bits_stored=12, window=[(1000, 500), (3000, 2000)])
    out = tmp_path / "roi.npy"
    base = ["crop", str(path), "--center", "32,32", "--size", "16", "--out", str(out)]
    results = {}
    for extra in ([], ["--window-index", "1"], ["--voi", "none"]):
        assert main([*base, *extra]) == 0
        results[" ".join(extra)] = np.load(out)
    want = {
        "": read_image(path).pixels,
        "--window-index 1": read_image(path, window_index=1).pixels,
        "--voi none": stored / 4095.0,
    }
    for key, pixels in results.items():
        np.testing.assert_allclose(pixels, want[key][24:40, 24:40], atol=2e-6)
    assert not np.allclose(results[""], results["--window-index 1"])

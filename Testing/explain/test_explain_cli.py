"""`microcalcai explain` on a real PNG mammogram and on a manifest with calcification masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from microcalcai.cli.main import main
from microcalcai.explain.outputs import read_map_nrrd

ROWS, COLS = 180, 240
CLUSTERS = ((60.0, 50.0), (190.0, 130.0))


@pytest.fixture(scope="module")
def image_and_mask(tmp_path_factory):
    """A 16-bit PNG 'mammogram' with two calcification clusters and its label mask."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from blobs import make_crops

    folder = tmp_path_factory.mktemp("explain-cli")
    background = make_crops(2, size=max(ROWS, COLS), seed=5)[0][0][:ROWS, :COLS]
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    mask = np.zeros((ROWS, COLS), np.uint8)
    pixels = background.copy()
    for label, (cx, cy) in enumerate(CLUSTERS, start=1):
        for dx, dy in ((0, 0), (3, 1), (-2, 3)):
            r2 = (xx - cx - dx) ** 2 + (yy - cy - dy) ** 2
            pixels += 0.45 * np.exp(-r2 / (2 * 1.2**2))
            mask[r2 <= 2.5**2] = label
    dpi = 25.4 / 0.07  # 0.07 mm pixels, stored in the PNG's pHYs chunk
    Image.fromarray((np.clip(pixels, 0, 1) * 65535).astype(np.uint16)).save(
        folder / "image.png", dpi=(dpi, dpi)
    )
    Image.fromarray(mask).save(folder / "mask.png")
    rows = ["patient_id,image_path,roi_x,roi_y,label,finding,roi_size,mask_path,split"]
    rows += [
        f"P1,image.png,{cx + 6},{cy - 5},malignant,calcification,48,mask.png,test" for cx, cy in CLUSTERS
    ]
    rows.append("P1,image.png,150,40,benign,calcification,48,mask.png,test")  # no calcification inside
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_explain_one_image_with_an_ensemble(tmp_path, image_and_mask, ensemble_dir, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            "--model",
            str(ensemble_dir),
            "--image",
            str(image_and_mask / "image.png"),
            "--roi",
            "60,50,48",
            "--roi",
            "10,170,40",
            "--method",
            "gradcam++",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "saliency.json").read_text())
    assert summary["rois"] == 2 and summary["method"] == "gradcam++"
    first, second = summary["roi"]
    for row in (first, second):
        for kind in ("nrrd", "npy", "overlay", "context", "members"):
            assert (out / row[f"file_{kind}"]).stat().st_size > 0, kind
    data, header = read_map_nrrd(out / first["file_nrrd"])
    assert data.shape == (48, 48) and 0 <= data.min() and data.max() <= 1
    np.testing.assert_allclose(header["space origin"], [60 - 24, 50 - 24])
    # The second ROI overhangs the bottom-left corner: its origin lies outside the image.
    data, header = read_map_nrrd(out / second["file_nrrd"])
    assert data.shape == (40, 40)
    np.testing.assert_allclose(header["space origin"], [10 - 20, 170 - 20])
    assert (out / "montage.png").is_file()
    assert "P(malignant) =" in capsys.readouterr().out
    # Run again into the same folder with one ROI: the other ROI's files go, and the files of
    # the folder's owner that no run listed stay.
    (out / "notes.txt").write_text("mine")
    argv = ["explain", "--model", str(ensemble_dir), "--image", str(image_and_mask / "image.png")]
    assert main([*argv, "--roi", "60,50,48", "--out", str(out), "--no-progress"]) == 0
    again = json.loads((out / "saliency.json").read_text())
    kept = {again["roi"][0][f"file_{kind}"] for kind in ("nrrd", "npy", "overlay", "context", "members")}
    gone = {second[f"file_{kind}"] for kind in ("nrrd", "npy", "overlay", "context", "members")}
    assert all((out / name).is_file() for name in kept) and not any((out / name).exists() for name in gone)
    assert (out / "notes.txt").read_text() == "mine"
    # A run that fails (here: an unknown layer, found once the first ROI is computed) leaves the
    # earlier result whole.
    assert (
        main([*argv, "--roi", "10,170,40", "--layer", "no.such.layer", "--out", str(out), "--no-progress"])
        == 1
    )
    assert all((out / name).is_file() for name in kept) and (out / "summary.csv").is_file()


def test_explain_a_manifest_scores_localisation(tmp_path, image_and_mask, lite0_dir, capsys):
    out = tmp_path / "batch"
    code = main(
        [
            "explain",
            "--model",
            str(lite0_dir),
            "--manifest",
            str(image_and_mask / "manifest.csv"),
            "--out",
            str(out),
            "--target",
            "predicted",
            "--no-context",
            "--nrrd-units",
            "mm",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ROI" in captured.err  # the progress bar
    import pandas as pd

    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 3
    scored = table.dropna(subset=["energy_in_mask"])
    assert len(scored) == 2  # the third ROI has no calcification in its mask
    assert ((scored["energy_in_mask"] >= 0) & (scored["energy_in_mask"] <= 1)).all()
    assert set(scored["pointing_hit"]) <= {0, 1}
    assert (scored["mask_area_share"] > 0).all()
    assert "localisation on 2 ROI(s)" in captured.out
    assert not list(out.glob("*_context.png"))
    data, header = read_map_nrrd(out / table["file_nrrd"][0])
    assert header["space units"] == ["mm", "mm"]
    np.testing.assert_allclose(np.diag(header["space directions"]), [0.07, 0.07], rtol=1e-3)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--roi", "5000,40,48"], "outside the image"),
        (["--roi", "60,50", "--method", "gradcam+++"], "gradcam++"),
        (["--roi", "60,50", "--layer", "blocks.99"], "valid layer names"),
        ([], "needs at least one --roi"),
    ],
)
def test_explain_bad_input_is_one_clear_message(tmp_path, image_and_mask, lite0_dir, capsys, extra, message):
    code = main(
        [
            "explain",
            "--model",
            str(lite0_dir),
            "--image",
            str(image_and_mask / "image.png"),
            "--out",
            str(tmp_path / "bad"),
            "--no-progress",
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err


def test_explain_roi_syntax_is_a_usage_error(tmp_path, lite0_dir, capsys):
    with pytest.raises(SystemExit) as info:
        main(
            ["explain", "--model", str(lite0_dir), "--image", "x.png", "--roi", "12", "--out", str(tmp_path)]
        )
    assert info.value.code == 2 and "X,Y" in capsys.readouterr().err

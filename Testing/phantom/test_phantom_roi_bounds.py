"""Every ROI lies wholly inside its image: no crop of a calcification or a normal ROI is padded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from microcalcai.errors import InputError
from microcalcai.phantom import generate_dataset

CASES = [
    # spot fields barely larger than the ROI (where large clusters used to push ROIs off the field)
    dict(full_field=False, field_size=144, roi_size=96, spacing_mm=0.1),
    dict(full_field=False, field_size=100, roi_size=96, spacing_mm=0.1),
    dict(full_field=False, field_size=64, roi_size=64, spacing_mm=0.2),
    dict(full_field=False, roi_size=80, spacing_mm=0.07),
    # full fields with ROIs of several centimetres
    dict(full_field=True, roi_size=256, spacing_mm=0.2, bilateral=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_roi_lies_inside_its_image(tmp_path, case, seed):
    patients = 2 if case["full_field"] else 5
    result = generate_dataset(
        tmp_path / "set", patients=patients, seed=seed, negatives=True, progress=False, **case
    )
    frame = pd.read_csv(result.manifest_path)
    assert (frame.finding == "calcification").sum() >= 2
    roi = case["roi_size"]
    for row in frame.itertuples():
        cols, rows = Image.open(result.out_dir / row.mask_path).size  # the image's shape
        x0, y0 = row.roi_x - roi // 2, row.roi_y - roi // 2
        assert 0 <= x0 and x0 + roi <= cols, (row.roi_id, row.roi_x, cols)
        assert 0 <= y0 and y0 + roi <= rows, (row.roi_id, row.roi_y, rows)
        # the ROI file is that window of the image, not a padded crop
        mask = np.asarray(Image.open(result.out_dir / row.mask_path))[y0 : y0 + roi, x0 : x0 + roi]
        assert np.load(result.out_dir / row.roi_path).shape == (roi, roi)
        if row.finding == "calcification":
            assert (mask == row.finding_id).any(), row.roi_id  # the finding is in its ROI
        else:
            assert not mask.any(), row.roi_id


def test_a_spot_field_smaller_than_the_roi_is_refused(tmp_path):
    with pytest.raises(InputError, match="field_size=90.*roi_size=96"):
        generate_dataset(
            tmp_path / "set", patients=1, seed=0, full_field=False, field_size=90, roi_size=96, progress=False
        )
    assert not (tmp_path / "set").exists()

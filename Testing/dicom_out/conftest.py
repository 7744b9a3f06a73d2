"""Sources, models and validators for the DICOM result tests.

Sources are real DICOM files: MG images written by the project's writer (a phantom-like
background with a cluster of bright specks) and the real CBIS-DDSM mammograms. Validation is
by the standard's own tools: dicom3tools' `dciodvfy` and dcmtk's `dsrdump`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROWS, COLS = 320, 256
CLUSTER = (130, 170)  # x, y
sys.path.insert(0, str(Path(__file__).parent))


def speck_image(seed: int = 3) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    background = gaussian_filter(rng.normal(size=(ROWS, COLS)), 6)
    image = 0.3 + 0.3 * (background - background.min()) / np.ptp(background)
    cx, cy = CLUSTER
    for _ in range(10):
        y, x = cy + int(rng.integers(-15, 16)), cx + int(rng.integers(-15, 16))
        image[y - 1 : y + 2, x - 1 : x + 2] = 0.95
    return (np.clip(image, 0, 1) * 4095).astype(np.uint16)


@pytest.fixture(scope="session")
def mg_source(tmp_path_factory) -> Path:
    from microcalcai.io import write_mg_dicom

    path = tmp_path_factory.mktemp("dicom-out-sources") / "P7_L_CC.dcm"
    return write_mg_dicom(
        path,
        speck_image(),
        spacing_mm=(0.07, 0.07),
        laterality="L",
        view="CC",
        patient_id="P7",
        patient_name="Phantom^Seven",
        chest_wall="left",
        bits_stored=12,
    )


def _model(folder: Path, name: str, seed: int, threshold: float, task: str = "roi") -> Path:
    import torch

    from microcalcai.models import card_for, create_model, save_model

    torch.manual_seed(seed)
    module = create_model("tf_efficientnet_lite0", "none")
    card = card_for("tf_efficientnet_lite0", name=name, input_size=64, threshold=threshold)
    card.crop = {"task": task, "roi_size": 64}
    return save_model(module.eval(), card, folder / name)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict:
    from microcalcai.models.ensemble import save_ensemble

    root = tmp_path_factory.mktemp("dicom-out-models")
    a, b = _model(root, "lite-a", 0, 0.45), _model(root, "lite-b", 1, 0.55)
    ensemble = save_ensemble([a, b], root / "ens", threshold=0.5)
    whole = _model(root, "lite-whole", 2, 0.5, task="whole_image")
    return {"a": a, "b": b, "ensemble": ensemble, "whole": whole}

"""The localisation benchmark's own parts (benchmarks/bench_explain_localisation.py, also run as
bench_explain.py --part localisation): the layer-grid ceiling, the time/step-budgeted training
(through train.loop) with batch-norm re-estimation, and a resumable run that writes one JSON file
per architecture and skips finished ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from blobs import make_crops


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_explain_localisation")


def test_grid_ceiling_falls_with_coarser_maps(bench):
    _, masks, labels = make_crops(8, size=96, seed=3)
    masks = masks[labels == 1]
    area = masks.mean()
    full = bench.coarse_mask_energy(masks, (96, 96))
    fine = bench.coarse_mask_energy(masks, (24, 24))
    coarse = bench.coarse_mask_energy(masks, (6, 6))
    assert full == pytest.approx(1.0, abs=1e-6)  # the mask itself: all its energy inside
    assert full > fine > coarse > area  # a coarse grid smears the mask, but beats a uniform map


class _SmallBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


def test_train_for_stops_at_the_step_cap_and_re_estimates_batch_norm(bench):
    crops, _, labels = make_crops(40, size=32, seed=4)
    model = _SmallBN()
    model, steps, seconds = bench.train_for(
        model, crops, labels, seconds=60, lr=1e-3, max_steps=3, batch_size=8
    )
    assert steps == 3 and seconds < 60
    assert not model.training
    with torch.no_grad():
        features = model.conv(torch.from_numpy(crops[:128])[:, None])
    # cumulative average of the per-batch means over the training crops, not a momentum average
    expected = torch.stack([b.mean((0, 2, 3)) for b in features.split(16)]).mean(0)
    assert torch.allclose(model.norm.running_mean, expected, atol=1e-5)


def test_localisation_run_writes_per_architecture_results_and_resumes(bench, tmp_path, monkeypatch):
    crops, masks, labels = make_crops(24, size=96, seed=5)
    ids = np.repeat(np.arange(8).astype(str), 3)
    np.savez_compressed(tmp_path / "rois-80-96.npz", crops=crops, masks=masks, labels=labels, ids=ids)
    argv = [
        "--results", str(tmp_path), "--figure", str(tmp_path / "loc.png"),
        "--archs", "mobilenetv3_large_100", "--max-steps", "1", "--max-scored", "2",
        "--loc-methods", "gradcam", "eigencam", "--scorecam-rois", "0",
    ]  # fmt: skip
    args = bench.build_parser().parse_args(argv)
    table = bench.run_localisation(args)

    row = json.loads((tmp_path / "mobilenetv3_large_100.json").read_text())
    assert row["train_steps"] == 1 and row["weights"] == "random"
    assert row["input"] == 192 and row["map"] == [6, 6] and row["layer"] == "blocks"
    assert set(row["methods"]) == {"gradcam", "eigencam"}
    for scores in row["methods"].values():
        assert scores["n"] == 2 and 0.0 <= scores["energy"] <= 1.0 and 0.0 <= scores["pointing"] <= 1.0
        assert scores["energy_ratio"] == pytest.approx(scores["energy"] / scores["area"])
    assert "| mobilenetv3_large_100 (random) | 192 px, `blocks` 6x6 | 1 steps" in table
    assert (tmp_path / "loc.png").stat().st_size > 0

    def must_not_train(*_):
        raise AssertionError("a finished architecture was trained again")

    monkeypatch.setattr(bench, "run_localisation_arch", must_not_train)
    assert "mobilenetv3_large_100 (random)" in bench.run_localisation(args)
    # other settings are another experiment: not mixed into the table, and listed as not run
    other = bench.build_parser().parse_args([*argv, "--report-only", "--tolerance", "7"])
    assert "Not run: mobilenetv3_large_100." in bench.run_localisation(other)

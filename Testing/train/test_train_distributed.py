"""DistributedDataParallel on the CPU: two processes under torchrun with the gloo backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from microcalcai.models import read_card


def test_two_process_gloo_training_writes_one_model(phantom_manifest, tmp_path, tiny):
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "microcalcai.cli.main",
        "train",
        "--recipe",
        "kang2021",
        "--data",
        str(phantom_manifest),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    for item in tiny:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    run = out / "tf_efficientnet_lite0"
    card = read_card(run / "model")
    assert card.val_metrics["world_size"] == 2
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2], "only rank 0 writes, once per epoch"
    # one summary line printed (rank 0 only)
    assert done.stdout.count("validation AUC") == 1

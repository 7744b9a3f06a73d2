"""Training over HTTP: stop leaves the served model untouched; a finished run publishes by the rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from server_helpers import ROI_SIZE, error_detail, wait_until

from microcalcai.models import load_model
from microcalcai.models.registry import create_model
from microcalcai.train.recipes import load_recipe

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _stats(http, server, model):
    return http.get(f"{server.url}/info/", timeout=30).json()["train_stats"][model]


def _served_answer(http, server, model: str) -> dict:
    return http.post(
        f"{server.url}/infer/{model}",
        params={"image": "P1_R_MLO", "output": "json"},
        data={"params": json.dumps({"roi": {"x": 100, "y": 150, "size": ROI_SIZE}})},
        files={"_": ("", b"")},
        timeout=60,
    ).json()


def _status(http, server):
    return http.get(f"{server.url}/train/", timeout=30).json()


def test_stop_training_leaves_served_model_untouched(server, http):
    before = http.get(f"{server.url}/info/", timeout=30).json()["models"]["tiny-b"]
    started = http.post(
        f"{server.url}/train/tiny-b",
        json={"max_epochs": 200, "include_manifest_labels": True, "val_fraction": 0.5},
        timeout=30,
    )
    assert started.status_code == 200, started.text
    assert started.json()["status"] in ("SUBMITTED", "RUNNING")
    wait_until(lambda: _stats(http, server, "tiny-b").get("state") == "running", 240, "the training to run")
    # A second training while one runs is refused: 409 with a JSON message saying how to stop it.
    second = http.post(f"{server.url}/train/tiny-a", json={}, timeout=30)
    assert second.status_code == 409 and "DELETE /train/" in error_detail(second)
    stopped = http.delete(f"{server.url}/train/", timeout=30)
    assert stopped.status_code == 200
    wait_until(
        lambda: (
            _status(http, server)["status"] == "STOPPED"
            or _status(http, server)["status"] == "STOP"
            or _stats(http, server, "tiny-b")["state"] == "stopped"
        ),
        60,
        "the stop",
    )
    stats = wait_until(
        lambda: (s := _stats(http, server, "tiny-b"))["state"] == "stopped" and s, 30, "stopped state"
    )
    assert stats["versions"] == ["1"] and stats["served_version"] == "1"
    after = http.get(f"{server.url}/info/", timeout=30).json()["models"]["tiny-b"]
    assert after["version"] == before["version"] == "1" and after["threshold"] == before["threshold"]
    answer = _served_answer(http, server, "tiny-b")
    assert answer["version"] == "1"


def test_training_runs_to_the_end_and_publishes_by_validation_auc(server, http):
    started = http.post(
        f"{server.url}/train/tiny-a",
        json={
            "max_epochs": 2,
            "include_manifest_labels": True,
            "val_fraction": 0.5,
            "publish_if": "not_worse",
        },
        timeout=30,
    )
    assert started.status_code == 200, started.text
    status = wait_until(
        lambda: (s := _status(http, server))["status"] in ("DONE", "ERROR") and s, 300, "training end"
    )
    assert status["status"] == "DONE", "\n".join(status.get("details", []))
    # The answer is for a client: the training's log lines come without tracebacks or server paths.
    shown = json.dumps(status)
    assert "Traceback" not in shown and str(server.workspace) not in shown and server.studies not in shown
    stats = _stats(http, server, "tiny-a")
    assert stats["state"] == "done" and stats["epoch"] == 2 and stats["progress"] == 1.0
    assert stats["n_val"] > 0 and stats["n_train"] > 0
    # The run started halfway between the served weights and ImageNet's (shrink 0.5, perturb 0.5
    # toward imagenet) in the layers it trains, at the recipe's learning rate (lr_scale 1).
    run_dir = Path(server.workspace) / "models" / "tiny-a" / stats["run_dir"]
    run = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert run["optimizer"]["lr"] == pytest.approx(load_recipe("phantom")["optimizer"]["lr"])
    assert Path(run["weights"]).resolve() == (run_dir / "start").resolve()
    assert stats["start"]["start"] == "0.5 x tiny-a version 1 + 0.5 x imagenet weights"
    start = load_model(run_dir / "start").module.state_dict()
    served = load_model(Path(server.workspace) / "models" / "tiny-a" / "versions" / "1").module.state_dict()
    imagenet = create_model("tf_efficientnet_lite0", "imagenet").state_dict()
    stem, trained = "conv_stem.weight", "blocks.3.0.conv_pw.weight"  # the phantom recipe freezes 2 stages
    torch.testing.assert_close(start[stem], served[stem])
    torch.testing.assert_close(start[trained], 0.5 * served[trained] + 0.5 * imagenet[trained])
    published = stats["new_val_auc"] >= stats["base_val_auc"]
    assert stats["published"] is published
    info = http.get(f"{server.url}/info/", timeout=30).json()
    if published:
        assert stats["versions"] == ["1", "2"] and info["models"]["tiny-a"]["version"] == "2"
        card = load_model(Path(server.workspace) / "models" / "tiny-a" / "versions" / "2").card
        assert card.weights_init["retrained_from"]["version"] == "1"
        assert card.weights_init["retrained_from"]["shrink"] == 0.5
        assert "Youden" in info["models"]["tiny-a"]["threshold_method"]
        assert info["models"]["ensemble"]["member_versions"]["tiny-a"] == "2"
    else:
        assert stats["versions"] == ["1"] and info["models"]["tiny-a"]["version"] == "1"
    answer = _served_answer(http, server, "tiny-a")
    assert answer["version"] == info["models"]["tiny-a"]["version"]

"""Hosting models in a workspace: names, versions, no duplicate versions, the ensemble's members."""

from __future__ import annotations

import json
import shutil

from server_helpers import tiny_model


def test_install_names_versions_and_ensemble(tmp_path):
    from microcalcai.models.artifact import read_card
    from microcalcai.models.ensemble import read_ensemble
    from microcalcai.server.hosted import ModelStore
    from microcalcai.server.workspace import build_ensemble, install_model

    built = tiny_model(tmp_path / "built", "trained-somewhere", seed=0)
    workspace = tmp_path / "ws"
    assert install_model(workspace, built, name="reader-a") == "reader-a"
    assert install_model(workspace, built, name="reader-a") == "reader-a"  # same weights: no new version
    assert (
        install_model(workspace, tiny_model(tmp_path / "built", "other", seed=1), name="reader-b")
        == "reader-b"
    )
    store = ModelStore(workspace / "models")
    assert store.model_names() == ["reader-a", "reader-b"] and store.versions("reader-a") == ["1"]
    card = read_card(store.current_dir("reader-a"))
    assert (card.name, card.version) == ("reader-a", "1")
    assert card.weights_sha256 == read_card(built).weights_sha256

    build_ensemble(workspace, threshold=0.4, threshold_method="test")
    ensemble, members = read_ensemble(store.current_dir("ensemble"))
    assert ensemble.member_names == ["reader-a", "reader-b"] and ensemble.threshold == 0.4
    assert json.loads((store.folder("ensemble") / "current").read_text()) == 1
    # serve --demonstration with the same ensemble folder, started again and again: no new version
    # (an ensemble is never marked a demonstration, so the mark cannot be what is missing)
    shipped = tmp_path / "shipped-ensemble"
    shutil.copytree(store.current_dir("ensemble"), shipped)
    for _ in range(2):
        assert install_model(workspace, shipped, demonstration=True) == "ensemble"
    assert store.versions("ensemble") == ["1"]


def test_whole_image_models_are_hosted_beside_roi_models_but_not_in_the_ensemble(tmp_path):
    """A whole-image (BAC) model gets its own task kind; the ensemble, training and active
    learning keep to the ROI models; --demonstration marks a hosted copy's card (a second start
    with the same folder adds a version only to mark it). A tile model is served as one too."""
    from server_helpers import tile_model, whole_image_model

    from microcalcai.models.artifact import read_card
    from microcalcai.models.ensemble import read_ensemble
    from microcalcai.server.hosted import ModelStore, describe
    from microcalcai.server.workspace import build_ensemble, install_model

    workspace = tmp_path / "ws"
    bac = whole_image_model(tmp_path / "built", "bac")
    card = json.loads((bac / "model.json").read_text())
    card.update(demonstration=False, intended_use="")  # as `microcalcai train` writes it
    (bac / "model.json").write_text(json.dumps(card))
    install_model(workspace, tiny_model(tmp_path / "built", "roi-a", seed=0))
    install_model(workspace, tiny_model(tmp_path / "built", "roi-b", seed=1))
    assert install_model(workspace, bac) == "bac"
    assert install_model(workspace, tile_model(tmp_path / "built", "bac-tiles")) == "bac-tiles"
    store = ModelStore(workspace / "models")
    assert [store.task(n) for n in store.model_names()] == ["whole_image", "whole_image", "roi", "roi"]
    assert store.roi_model_names() == ["roi-a", "roi-b"]
    assert store.whole_image_names() == ["bac", "bac-tiles"]
    assert describe(store.current_dir("bac-tiles"))["scoring"] == "tiles"
    assert describe(store.current_dir("bac"))["demonstration"] is False

    assert install_model(workspace, bac, demonstration=True) == "bac"
    assert store.versions("bac") == ["1", "2"] and read_card(store.current_dir("bac")).demonstration
    hosted = describe(store.current_dir("bac"))
    assert hosted["task"] == "whole_image" and hosted["demonstration"] is True
    assert hosted["intended_use"].startswith("demonstration model trained on synthetic")
    assert install_model(workspace, bac, demonstration=True) == "bac" and store.versions("bac") == ["1", "2"]

    build_ensemble(workspace, threshold=0.5, threshold_method="test")
    ensemble, _ = read_ensemble(store.current_dir("ensemble"))
    assert ensemble.member_names == ["roi-a", "roi-b"] and store.task("ensemble") == "roi"

    # Active learning with the model a client has selected: a whole-image model is ignored where
    # the ensemble scores (entropy), refused where one member must (BALD); an unknown name is
    # refused whatever the method.
    import pytest

    from microcalcai.server.errors import NotFound
    from microcalcai.server.strategies import scoring_member

    assert scoring_member(store, "entropy", "bac") is None
    assert scoring_member(store, "entropy", "ensemble") is None
    assert scoring_member(store, "bald", "roi-b") == "roi-b"
    with pytest.raises(NotFound, match="not a hosted ROI model"):
        scoring_member(store, "bald", "bac")
    for method in ("entropy", "bald"):
        with pytest.raises(NotFound, match="not hosted here"):
            scoring_member(store, method, "nosuch")


def test_a_publish_whose_ensemble_rebuild_fails_serves_nothing_new(tmp_path):
    """Publishing a member and rebuilding the ensemble over it is all or nothing: when the rebuild
    fails (here: the new version is a whole-image model, which leaves the ensemble one member),
    the member's earlier version is served again and the new folder is gone."""
    from types import SimpleNamespace

    from server_helpers import host_tiny_models, whole_image_model

    from microcalcai.models.artifact import read_card
    from microcalcai.server.hosted import ENSEMBLE, ModelStore
    from microcalcai.server.train_task import FineTuneTask
    from microcalcai.server.training_guard import TrainingRun

    workspace = tmp_path / "ws"
    host_tiny_models(workspace, tmp_path / "built")
    store = ModelStore(workspace / "models")
    ensemble_card = json.loads((store.current_dir(ENSEMBLE) / "ensemble.json").read_text())
    served = SimpleNamespace(get=lambda name: SimpleNamespace(card=ensemble_card))
    app = SimpleNamespace(store=store, served=served, workspace=workspace)
    task = FineTuneTask("tiny-a", app)
    run = TrainingRun(workspace, store, "tiny-a", {})
    before = {name: (store.current_version(name), store.versions(name)) for name in store.names()}

    new = whole_image_model(tmp_path / "retrained", "tiny-a")
    try:
        task._publish(new, run, store.current_dir("tiny-a"), {"source": "served"})
    except Exception as exc:
        assert "at least two" in str(exc)
    else:
        raise AssertionError("the ensemble rebuild over one member should have failed")
    after = {name: (store.current_version(name), store.versions(name)) for name in store.names()}
    assert after == before
    assert store.roi_model_names() == ["tiny-a", "tiny-b"]
    assert read_card(store.current_dir("tiny-a")).version == "1"


def test_a_publish_cut_between_its_two_switches_is_finished_at_the_next_start(tmp_path):
    """A kill after a training served its member's new version but before the ensemble over it
    was rebuilt leaves the ensemble on the earlier version: the next start rebuilds it, keeping
    its threshold. An ensemble that already combines the served versions is left alone."""
    from server_helpers import host_tiny_models

    from microcalcai.models.artifact import read_card
    from microcalcai.models.ensemble import read_ensemble
    from microcalcai.server.hosted import ENSEMBLE, ModelStore
    from microcalcai.server.workspace import rebuild_stale_ensemble, rename_card

    workspace = tmp_path / "ws"
    host_tiny_models(workspace, tmp_path / "built")
    store = ModelStore(workspace / "models")
    assert rebuild_stale_ensemble(workspace) is False and store.versions(ENSEMBLE) == ["1"]
    threshold = read_ensemble(store.current_dir(ENSEMBLE))[0].threshold

    # What the training had done when it was killed: version 2 of tiny-a written and served.
    retrained = tiny_model(tmp_path / "retrained", "tiny-a", seed=7)
    shutil.copytree(retrained, store.version_dir("tiny-a", "2"))
    rename_card(store.version_dir("tiny-a", "2"), "tiny-a", "2")
    store.publish("tiny-a", "2")

    assert rebuild_stale_ensemble(workspace) is True
    card, members = read_ensemble(store.current_dir(ENSEMBLE))
    assert store.versions(ENSEMBLE) == ["1", "2"] and card.threshold == threshold
    held = {read_card(m).name: read_card(m).weights_sha256 for m in members}
    assert held["tiny-a"] == read_card(store.current_dir("tiny-a")).weights_sha256
    assert rebuild_stale_ensemble(workspace) is False and store.versions(ENSEMBLE) == ["1", "2"]

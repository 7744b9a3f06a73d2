"""Hosting models in a workspace: names, versions, no duplicate versions, the ensemble's members."""

from __future__ import annotations

import json

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

"""Recipes are YAML files with checked settings; the command line overrides them."""

from __future__ import annotations

import pytest

from microcalcai.errors import InputError
from microcalcai.train.recipes import available_recipes, load_recipe


def test_the_seed_study_recipes_load_with_their_published_settings():
    assert {"kang2021", "arlan2025", "shia2025", "mobini2024"} <= set(available_recipes())
    kang = load_recipe("kang2021")
    assert kang["optimizer"] == {
        "name": "adam",
        "lr": 1e-4,
        "betas": [0.9, 0.999],
        "weight_decay": 5e-4,
        "momentum": 0.9,
    }
    assert kang["early_stopping"]["patience"] == 20 and kang["select_best"] == "val_auc"
    assert kang["augment"]["rotate_degrees"] == [1, 359] and kang["augment"]["shift_px"] == 30
    assert kang["archs"] == [
        "resnet101",
        "legacy_xception",
        "inception_v3",
        "inception_resnet_v2",
        "densenet201",
    ]
    arlan = load_recipe("arlan2025")
    assert [s["name"] for s in arlan["stages"]] == ["intermediate", "target"]
    shia = load_recipe("shia2025")
    assert shia["folds"] == 5 and {"resnet50", "resnet101", "efficientnet_b4"} <= set(shia["archs"])
    mobini = load_recipe("mobini2024")
    assert len(mobini["archs"]) == 11 and mobini["task"] == "whole_image"


def test_overrides_with_dotted_keys(tmp_path):
    recipe = load_recipe(
        "kang2021", ["optimizer.lr=3e-4", "archs=[resnet50, xception]", "imbalance=balanced_sampler"]
    )
    assert recipe["optimizer"]["lr"] == pytest.approx(3e-4)
    assert recipe["archs"] == ["resnet50", "legacy_xception"]
    own = tmp_path / "mine.yaml"
    own.write_text("name: mine\narchs: [mobilenetv2_100]\nepochs: 5\n")
    assert load_recipe(own)["epochs"] == 5


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimiser.lr=1", "unknown setting 'optimiser'"),
        ("imbalance=oversample", "imbalance is 'oversample'"),
        ("archs=[alexnet]", "unknown architecture"),
        ("folds=1", "folds must be 0"),
        ("lr", "KEY=VALUE"),
        ("early_stopping=3", "must be a mapping"),
        ("min_epoch_images=-5", "min_epoch_images must be a whole number"),
        ("average_epochs=0", "average_epochs must be a whole number of epochs"),
        ("average_epochs=2.5", "average_epochs must be a whole number of epochs"),
        ("average_epochs=.nan", "average_epochs must be a whole number of epochs"),
        ("average_epochs=.inf", "average_epochs must be a whole number of epochs"),
        ("select_best=mean", "select_best is 'mean'"),
        ("num_workers=-1", "num_workers must be 'auto'"),
        ("num_workers=many", "num_workers must be 'auto'"),
        ("num_workers=true", "num_workers must be 'auto'"),
        ("num_workers=2.5", "num_workers must be 'auto'"),
    ],
)
def test_bad_settings_are_named(override, message):
    with pytest.raises(InputError, match=message):
        load_recipe("kang2021", [override])


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(InputError, match="kang2021"):
        load_recipe("kang2099")


def test_mixed_precision_and_channels_last_follow_the_device():
    from microcalcai.train.loop import FitConfig

    recipe = load_recipe("kang2021")
    on_gpu = FitConfig.from_recipe(recipe, batch_size=8, device="cuda:0")
    on_cpu = FitConfig.from_recipe(recipe, batch_size=8, device="cpu")
    assert on_gpu.mixed_precision and on_gpu.channels_last
    assert not on_cpu.mixed_precision and not on_cpu.channels_last
    forced_off = FitConfig.from_recipe(
        load_recipe("kang2021", ["mixed_precision=false"]), batch_size=8, device="cuda"
    )
    assert not forced_off.mixed_precision and forced_off.channels_last


def test_loader_workers_augment_beside_a_gpu_and_stay_out_of_a_cpus_way(monkeypatch):
    from microcalcai.train.loop import MAX_AUTO_WORKERS, FitConfig, loader_workers

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    recipe = load_recipe("phantom")
    assert recipe["num_workers"] == "auto"
    assert FitConfig.from_recipe(recipe, batch_size=8, device="cpu").num_workers == 0
    assert FitConfig.from_recipe(recipe, batch_size=8, device="cuda").num_workers >= 0
    assert loader_workers("auto", True, cpus=16) == MAX_AUTO_WORKERS
    assert loader_workers("auto", True, cpus=4) == 3  # one core left to the training process
    assert loader_workers("auto", True, cpus=1) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four processes share the CPUs
    assert loader_workers("auto", True, cpus=16) == 3
    assert loader_workers(2, False, cpus=16) == 2  # a number is taken as given, on a CPU too
    forced = FitConfig.from_recipe(load_recipe("phantom", ["num_workers=3"]), batch_size=8, device="cpu")
    assert forced.num_workers == 3


def test_phantom_recipe_trains_cheaply_on_a_cpu():
    """The default models' recipe: channels_last on the CPU too and the first stages frozen
    (benchmarks/RESULTS.md, AUC per CPU-second)."""
    from microcalcai.train.loop import FitConfig

    config = FitConfig.from_recipe(load_recipe("phantom"), batch_size=32, device="cpu")
    assert config.channels_last and not config.mixed_precision
    assert config.freeze_blocks == 2
    # retrainings on a few dozen labels still take enough optimizer steps
    assert config.min_epoch_images >= 256
    assert FitConfig.from_recipe(load_recipe("kang2021"), batch_size=8, device="cpu").freeze_blocks == 0


def test_phantom_recipe_keeps_the_average_of_its_last_half_of_epochs():
    from microcalcai.train.loop import FitConfig, _averaged_count

    config = FitConfig.from_recipe(load_recipe("phantom"), batch_size=32, device="cpu", epochs=10)
    assert config.select_best == "average" and _averaged_count(config) == 5
    assert (
        _averaged_count(FitConfig.from_recipe(load_recipe("phantom"), batch_size=32, device="cpu", epochs=5))
        == 3
    )
    # the published recipes keep the epoch of the best validation AUC, as the studies did
    assert load_recipe("kang2021")["select_best"] == "val_auc"

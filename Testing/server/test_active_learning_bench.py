"""The active-learning benchmark's own parts (benchmarks/bench_active_learning.py): labels needed
to reach random's final AUC, the confidence band over seeds, the summary and figure written from
the per-run JSON files, and which records a resumed run keeps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_active_learning")


def test_labels_to_reach_interpolates_between_rounds(bench):
    labels = [20, 40, 60, 80]
    assert bench.labels_to_reach(labels, np.array([0.6, 0.7, 0.8, 0.9]), 0.75) == pytest.approx(50.0)
    assert bench.labels_to_reach(labels, np.array([0.8, 0.85, 0.9, 0.9]), 0.7) == 20.0  # from the start
    assert bench.labels_to_reach(labels, np.array([0.6, 0.62, 0.64, 0.66]), 0.7) is None  # never


def test_band_is_a_t_interval_over_seeds(bench):
    auc = np.array([[0.6, 0.7], [0.62, 0.74], [0.64, 0.78]])
    mean, low, high = bench.band(auc)
    assert mean == pytest.approx([0.62, 0.74])
    half = 4.302653 * np.array([0.02, 0.04]) / np.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert high - mean == pytest.approx(half, rel=1e-4) and mean - low == pytest.approx(half, rel=1e-4)
    one = bench.band(auc[:1])
    assert one[1] == pytest.approx(one[2])  # one seed: no band


def _run(out: Path, strategy: str, seed: int, aucs: list[float]) -> None:
    rounds = [
        {"labels": 20 + 20 * i, "test_auc": a, "round_s": 60.0, "load_average": [2.0, 2.0, 2.0]}
        for i, a in enumerate(aucs)
    ]
    path = out / "runs" / f"{strategy}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": {"strategy": strategy, "seed": seed}, "rounds": rounds}))


def test_report_summarises_runs_and_draws_the_figure(bench, tmp_path):
    for seed in (0, 1):
        _run(tmp_path, "random", seed, [0.6, 0.65, 0.7, 0.75])
        _run(tmp_path, "diverse", seed, [0.6, 0.72, 0.78, 0.8])
    _run(tmp_path, "entropy", 0, [0.6, 0.7])  # a run that stopped early
    figure = tmp_path / "figure.png"
    summary = bench.report(tmp_path, figure)
    assert figure.is_file() and figure.stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    random, diverse = summary["strategies"]["random"], summary["strategies"]["diverse"]
    assert summary["random_final_auc"] == pytest.approx(0.75)
    assert random["labels_to_random_final"] == 80.0 and random["share_of_random_labels"] == 1.0
    assert diverse["labels_to_random_final"] == pytest.approx(40 + 20 * (0.75 - 0.72) / (0.78 - 0.72))
    assert diverse["share_of_random_labels"] == pytest.approx(50 / 80, abs=1e-3)
    assert diverse["area_under_curve"] > random["area_under_curve"]
    assert summary["strategies"]["entropy"]["labels"] == [20, 40]
    assert summary["strategies"]["entropy"]["labels_to_random_final"] is None
    by_round = diverse["minus_random_by_round"]
    assert [row["labels"] for row in by_round] == [20, 40, 60, 80]
    assert [row["mean"] for row in by_round] == pytest.approx([0.0, 0.07, 0.08, 0.05])
    assert by_round[-1]["mean"] == diverse["final_minus_random"]["mean"]
    # a run that stopped early is compared over the rounds it reached, not dropped
    assert [row["labels"] for row in summary["strategies"]["entropy"]["minus_random_by_round"]] == [20, 40]
    assert summary["strategies"]["entropy"]["final_minus_random"] is None


def test_a_record_with_other_settings_is_not_resumed(bench, tmp_path):
    path = tmp_path / "run.json"
    config = {"strategy": "random", "seed": 0, "batch": 24}
    path.write_text(json.dumps({"config": config, "rounds": [{"labels": 32}]}))
    assert bench.load_record(path, config)["rounds"] == [{"labels": 32}]
    assert bench.load_record(path, {**config, "batch": 16}) is None
    assert bench.load_record(tmp_path / "missing.json", config) is None


def test_between_rounds_flags_only_a_drop_beyond_noise(bench):
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(120), np.ones(60)].astype(int)
    good = labels * 1.5 + rng.normal(0, 1, len(labels))  # AUC about 0.85
    worse = labels * 0.2 + rng.normal(0, 1, len(labels))  # about 0.55: far beyond noise
    jitter = good + rng.normal(0, 0.05, len(labels))  # the same model, a little retrained

    def rounds(*scores):
        return [
            {"labels": 20 * (i + 1), "served_version": str(i + 1), "test_probabilities": list(s)}
            for i, s in enumerate(scores)
        ]

    steady = {"config": {"seed": 0}, "test_labels": labels.tolist(), "rounds": rounds(good, jitter)}
    found = bench.between_rounds([steady])
    assert found["republished_pairs"] == 1 and found["drops_beyond_noise"] == []
    dropped = {"config": {"seed": 1}, "test_labels": labels.tolist(), "rounds": rounds(good, jitter, worse)}
    found = bench.between_rounds([dropped])
    assert found["republished_pairs"] == 2
    assert [d["labels"] for d in found["drops_beyond_noise"]] == [[40, 60]]
    assert found["largest_drop"] < -0.2
    kept = rounds(good, good)
    kept[1]["served_version"] = "1"  # not republished: nothing to compare
    assert bench.between_rounds(
        [{"config": {"seed": 2}, "test_labels": labels.tolist(), "rounds": kept}]
    ) == {
        "republished_pairs": 0,
        "drops_beyond_noise": [],
        "expected_by_chance": 0.0,
        "drops_beyond_noise_family_wise": [],
        "largest_drop": None,
    }
    assert [d["labels"] for d in found["drops_beyond_noise_family_wise"]] == [[40, 60]]  # far beyond


def test_a_marginal_drop_among_many_pairs_is_not_beyond_noise_family_wise(bench):
    """One pair in the 2.5% tail among ten: flagged pair by pair, not over the family (Holm)."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(120), np.ones(60)].astype(int)
    scores = [labels * 1.5 + rng.normal(0, 1, len(labels))]
    for _ in range(9):  # nine republications of much the same model
        scores.append(scores[-1] + rng.normal(0, 0.02, len(labels)))
    scores.append(scores[-1] + np.random.default_rng(1).normal(0, 0.7, len(labels)))  # a bit worse
    record = {
        "config": {"seed": 0},
        "test_labels": labels.tolist(),
        "rounds": [
            {"labels": 20 * (i + 1), "served_version": str(i + 1), "test_probabilities": list(s)}
            for i, s in enumerate(scores)
        ],
    }
    found = bench.between_rounds([record])
    assert found["republished_pairs"] == 10 and found["expected_by_chance"] == 0.25
    (marginal,) = found["drops_beyond_noise"]
    assert marginal["labels"] == [200, 220] and 0.001 < marginal["p_drop"] < 0.025
    assert marginal["p_drop_holm"] >= 0.025 and found["drops_beyond_noise_family_wise"] == []


def test_malignant_share_counts_the_strategys_own_choices(bench):
    record = {
        "rounds": [
            {"new": {"benign": 30, "malignant": 10}},  # the cold start, shared: left out
            {"new": {"benign": 6, "malignant": 4}},
            {"new": {"benign": 9, "malignant": 1}},
        ]
    }
    assert bench.malignant_share([record]) == pytest.approx(0.25)
    assert bench.malignant_share([{"rounds": [{"new": {"benign": 3, "malignant": 1}}]}]) is None


def test_label_noise_is_the_mean_p_times_1_minus_p_of_the_strategys_choices(bench):
    record = {
        "rounds": [
            {"picked_p_malignant": None},  # the cold start: random for every strategy, left out
            {"picked_p_malignant": [0.5, 0.0]},
            {"picked_p_malignant": [0.9, 0.1]},
        ]
    }
    noise = bench.label_noise([record])
    assert noise["rois"] == 4
    assert noise["mean_p_times_1_minus_p"] == pytest.approx((0.25 + 0 + 0.09 + 0.09) / 4)
    assert noise["share_between_0.35_and_0.65"] == pytest.approx(0.25)
    assert bench.label_noise([{"rounds": [{"picked_p_malignant": [0.5]}]}]) is None


def _label_doc(folder: Path, image: str, x: int, time: str) -> None:
    annotation = {"roi": {"x": x, "y": 48, "size": 96}, "label": "benign", "time": time}
    (folder / f"{image}.json").write_text(json.dumps({"image": image, "annotations": [annotation]}))


def _pool(out: Path, probabilities: list[float]) -> None:
    pool = out / "data" / "pool"
    pool.mkdir(parents=True)
    (pool / "manifest.csv").write_text(
        "image_path,roi_x,roi_y,roi_size,label,p_malignant\n"
        + "".join(f"images/P/IMG{i}.dcm,{10 + i},48,96,benign,{p}\n" for i, p in enumerate(probabilities))
    )


def test_backfill_gives_each_round_the_labels_saved_before_its_end(bench, tmp_path):
    _pool(tmp_path, [0.1, 0.2, 0.5, 0.7, 0.9])
    final = tmp_path / "work" / "entropy-seed0" / "studies" / "labels" / "final"
    final.mkdir(parents=True)
    _label_doc(final, "IMG0", 10, "2026-01-01T10:00:00Z")  # the cold start
    _label_doc(final, "IMG1", 11, "2026-01-01T10:05:00Z")  # round 1, saved at its very end
    _label_doc(final, "IMG2", 12, "2026-01-01T10:07:00Z")  # round 3 (round 2 added none)
    _label_doc(final, "IMG3", 13, "2026-01-01T10:08:00Z")
    _label_doc(final, "IMG4", 14, "2026-01-01T10:15:00Z")  # round 4
    ends = ["10:01", "10:05", "10:06", "10:09", "10:20"]
    new = [1, 1, 0, 2, 2]  # round 4 says 2 but its documents hold 1: left unfilled
    rounds = [
        {"round": i, "finished": f"2026-01-01T{end}:00Z", "new": {"benign": n, "malignant": 0}}
        for i, (end, n) in enumerate(zip(ends, new, strict=True))
    ]
    path = tmp_path / "runs" / "entropy-seed0.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"config": {"strategy": "entropy", "seed": 0}, "rounds": rounds}))
    bench.backfill_picked(tmp_path)
    filled = json.loads(path.read_text())["rounds"]
    assert filled[1]["picked_p_malignant"] == [0.2] and "label documents" in filled[1]["picked_from"]
    assert "picked_p_malignant" not in filled[2]  # no labels added: nothing to say
    assert sorted(filled[3]["picked_p_malignant"]) == [0.5, 0.7]
    assert "picked_p_malignant" not in filled[4]  # the count does not match: not guessed
    # picks recorded as the round ran are never replaced
    filled[1]["picked_p_malignant"] = [0.99]
    path.write_text(json.dumps({"config": {"strategy": "entropy", "seed": 0}, "rounds": filled}))
    bench.backfill_picked(tmp_path)
    assert json.loads(path.read_text())["rounds"][1]["picked_p_malignant"] == [0.99]


def test_report_puts_the_label_noise_beside_the_curves(bench, tmp_path):
    """Each strategy's noise over the rounds its curve shows, the pool's beside it, and the
    figure's second panel."""
    _pool(tmp_path, [0.0, 0.5, 0.1, 0.9])
    for seed in (0, 1):
        for strategy, picks in (("random", [0.0, 0.1]), ("entropy", [0.5, 0.5])):
            extra = seed == 1 and strategy == "entropy"  # a fourth round, beyond the curve
            rounds = [
                {
                    "labels": 20 + 20 * i,
                    "test_auc": 0.6 + 0.05 * i,
                    "round_s": 60.0,
                    "load_average": [2.0, 2.0, 2.0],
                    "picked_p_malignant": None if i == 0 else (picks if i < 3 else [0.0] * 50),
                }
                for i in range(4 if extra else 3)
            ]
            path = tmp_path / "runs" / f"{strategy}-seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"config": {"strategy": strategy, "seed": seed}, "rounds": rounds}))
    figure = tmp_path / "figure.png"
    summary = bench.report(tmp_path, figure)
    entropy = summary["strategies"]["entropy"]["label_noise_of_proposals"]
    random = summary["strategies"]["random"]["label_noise_of_proposals"]
    assert entropy["rois"] == 8 and entropy["mean_p_times_1_minus_p"] == pytest.approx(0.25)
    assert random["mean_p_times_1_minus_p"] == pytest.approx(0.09 / 2)
    assert summary["pool_label_noise"] == pytest.approx((0 + 0.25 + 0.09 + 0.09) / 4, abs=1e-4)
    from PIL import Image

    with Image.open(figure) as image:  # two panels, 11 x 4.5 in: the curves alone are 7 x 4.5
        assert image.size[0] > 2 * image.size[1]


def test_oracle_takes_unlabelled_rois_of_clear_truth_in_the_pools_class_mix(bench, tmp_path):
    """The diagnostic oracle: random's batch without its noisy labels, the class mix kept."""
    # 12 malignant ROIs (8 clear), 28 benign (20 clear); one clear benign ROI already labelled
    probabilities = [0.95] * 8 + [0.6] * 4 + [0.01] * 20 + [0.3] * 8
    labels = ["malignant"] * 12 + ["benign"] * 28
    rows = [
        {"image_path": f"images/P/IMG{i}.dcm", "roi_x": "48", "roi_y": "48", "roi_size": "96", "label": label,
         "p_malignant": str(p)}
        for i, (p, label) in enumerate(zip(probabilities, labels, strict=True))
    ]  # fmt: skip
    final = tmp_path / "studies" / "labels" / "final"
    final.mkdir(parents=True)
    _label_doc(final, "IMG12", 48, "2026-01-01T10:00:00Z")
    picked = bench.oracle_clean(tmp_path / "studies", {"pool": (tmp_path, rows)}, 10, seed=3)
    index = [int(s["id"][3:]) for s in picked]
    assert len(set(index)) == 10 and 12 not in index  # distinct, none labelled
    assert all(probabilities[i] * (1 - probabilities[i]) <= bench.CLEAN_NOISE for i in index)
    assert sum(labels[i] == "malignant" for i in index) == 3  # 12 of the 39 unlabelled: 3 of 10
    assert picked[0]["roi"] == {"x": 48, "y": 48, "size": 96}
    assert bench.oracle_clean(tmp_path / "studies", {"pool": (tmp_path, rows)}, 10, seed=3) == picked
    # two clear malignant ROIs where the share asks for 3: clear benign ones fill the batch
    for row in rows[2:8]:
        row["p_malignant"] = "0.6"
    short = bench.oracle_clean(tmp_path / "studies", {"pool": (tmp_path, rows)}, 10, seed=3)
    assert len(short) == 10 and sum(labels[int(s["id"][3:])] == "malignant" for s in short) == 2


def test_denoised_labels_are_the_likelier_class(bench):
    assert bench.likelier_class({"a": 0.51, "b": 0.5, "c": 0.02, "d": 0.97}) == {
        "a": "malignant",
        "b": "benign",  # a coin toss stays the common class
        "c": "benign",
        "d": "malignant",
    }
    assert bench.STRATEGIES["random-denoised"][0] == "random"  # random's own ROIs
    assert bench.STRATEGIES["oracle-clean"][0] is None  # picked by the annotator, not the server


def _drawn_lines(monkeypatch, method: str) -> list[float]:
    """Where the figure draws its vertical (axvline) or horizontal (axhline) lines."""
    import matplotlib.axes

    lines = []
    original = getattr(matplotlib.axes.Axes, method)
    monkeypatch.setattr(
        matplotlib.axes.Axes, method, lambda ax, at=0, *a, **k: lines.append(at) or original(ax, at, *a, **k)
    )
    return lines


def test_report_with_auto_marks_its_switch(bench, tmp_path, monkeypatch):
    """The figure marks where auto turns from uncertain to random: the server's own default."""
    from microcalcai.server.strategies import AUTO_SWITCH_LABELS

    for strategy in ("random", "auto"):
        _run(tmp_path, strategy, 0, [0.6, 0.7, 0.75])
    lines = _drawn_lines(monkeypatch, "axvline")
    summary = bench.report(tmp_path, tmp_path / "figure.png")
    assert AUTO_SWITCH_LABELS in lines
    assert [row["labels"] for row in summary["strategies"]["auto"]["minus_random_by_round"]] == [20, 40, 60]


def _args(bench, *argv):
    return bench.parse_args(list(argv))


def test_the_cpu_variant_is_what_the_recorded_runs_used(bench):
    """A cpu-variant config holds no field the records written before variants lack: they resume."""
    setup = _args(bench).setup
    assert setup["members"] == list(bench.MEMBERS) and setup["input_size"] == bench.INPUT_SIZE
    assert (setup["spacing_mm"], setup["roi_size"], setup["recipe"]) == (0.1, 96, None)
    args = _args(bench, "--batch", "60")
    data = {"pool": (None, [1] * 5), "test": (None, [1] * 3), "val": (None, [1] * 2)}
    config = bench.run_config(args, "random", 0, data)
    assert set(config) == {
        "strategy", "seed", "pool_rois", "test_rois", "validation_rois", "cold_start", "batch",
        "max_epochs", "retraining", "members", "input_size",
    }  # fmt: skip
    assert bench.train_overrides(setup, 0) == bench.COLD_START_TRAINING
    assert bench.train_overrides(setup, 1) is None  # the server's default retraining
    assert not bench.needs_hub(setup)


def test_the_gpu_variant_is_the_seed_studies_setting(bench):
    args = _args(bench, "--variant", "gpu")
    setup = args.setup
    assert setup["archs"] == list(bench.KANG_ARCHS)
    assert setup["members"] == [f"{arch}-a" for arch in bench.KANG_ARCHS]
    assert (setup["spacing_mm"], setup["roi_size"], setup["input_size"]) == (0.07, 512, 512)
    assert bench.needs_hub(setup)  # their ImageNet weights come from the timm hub
    data = {"pool": (None, [1] * 5), "test": (None, [1] * 3), "val": (None, [1] * 2)}
    config = bench.run_config(args, "auto", 1, data)
    assert config["recipe"] == "kang2021" and config["archs"] == list(bench.KANG_ARCHS)
    assert config["spacing_mm"] == 0.07 and config["roi_size"] == 512 and config["input_size"] == 512
    assert bench.train_overrides(setup, 2) == {"recipe": "kang2021"}
    assert bench.train_overrides(setup, 0) == {"recipe": "kang2021", **bench.COLD_START_TRAINING}


def test_a_variants_parts_can_be_changed(bench):
    args = _args(
        bench, "--variant", "gpu", "--arch", "xception", "xception", "densenet121", "--weights", "none",
        "--roi-size", "256", "--input-size", "299",
    )  # fmt: skip
    setup = args.setup
    assert setup["archs"] == ["legacy_xception", "legacy_xception", "densenet121"]  # aliases resolved
    assert setup["members"] == ["legacy_xception-a", "legacy_xception-b", "densenet121-a"]
    assert (setup["spacing_mm"], setup["roi_size"], setup["input_size"]) == (0.07, 256, 299)
    assert not bench.needs_hub(setup)
    # no ImageNet to shrink toward: a retraining starts from the served weights as they are
    assert bench.train_overrides(setup, 3) == {"recipe": "kang2021", "shrink": 1.0, "perturb": 0.0}
    from microcalcai.errors import InputError

    with pytest.raises(InputError, match="unknown architecture 'resnet7'"):
        _args(bench, "--arch", "resnet7")
    with pytest.raises(SystemExit, match="imagenet' or 'none'"):
        _args(bench, "--weights", "/some/file.pth")


def test_data_of_another_geometry_is_refused(bench, tmp_path):
    """An --out made for one variant is not silently reused by another: the crops would differ."""
    setup = _args(bench).setup
    folder, rows = bench.make_phantom(tmp_path / "pool", 3, 7, setup)
    assert rows and {r["roi_size"] for r in rows} == {"96"}
    with pytest.raises(SystemExit, match="another variant's data; give another --out"):
        bench.make_phantom(tmp_path / "pool", 3, 7, {**setup, "spacing_mm": 0.07, "roi_size": 512})


def test_report_gives_the_bayes_optimal_auc_and_the_setup(bench, tmp_path, monkeypatch):
    setup = _args(bench).setup
    folder, rows = bench.make_phantom(tmp_path / "data" / "test", 24, 9, setup)
    expected = bench.bayes_auc(rows)
    assert 0.5 < expected <= 1.0
    for strategy in ("random", "diverse"):
        _run(tmp_path, strategy, 0, [0.6, 0.7, 0.75])
    lines = _drawn_lines(monkeypatch, "axhline")
    summary = bench.report(tmp_path, tmp_path / "figure.png")
    assert summary["test_bayes_auc"] == expected  # from the test phantom's manifest
    assert expected in lines  # drawn beside the curves
    assert summary["setup"] == {}  # these records carry no settings
    for record in (tmp_path / "runs").glob("*.json"):
        saved = json.loads(record.read_text())
        saved.update(
            test_bayes_auc=0.9, machine="box", config={**saved["config"], "members": ["resnet101-a"]}
        )
        record.write_text(json.dumps(saved))
    summary = bench.report(tmp_path, None)
    assert summary["test_bayes_auc"] == 0.9  # a record's own value first
    assert summary["setup"] == {"members": ["resnet101-a"]} and summary["machines"] == ["box"]


def _small_variant(out: Path, archs: list[str], rounds: int) -> list[str]:
    """The gpu variant cut to a CPU's size: other architectures from random weights (no hub in
    tests), 64 px crops, one epoch a training, a pool of 40 patients, one seed of random."""
    return [
        "--variant", "gpu", "--arch", *archs, "--weights", "none",
        "--spacing-mm", "0.1", "--roi-size", "64", "--input-size", "64", "--max-epochs", "1",
        "--pool-patients", "40", "--test-patients", "24", "--val-patients", "16",
        "--cold-start", "20", "--batch", "8", "--rounds", str(rounds), "--seeds", "0",
        "--strategies", "random", "--threads", "1", "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.server
def test_a_variant_runs_its_own_members_and_recipe_through_the_real_server(bench, tmp_path):
    """The gpu variant's path on a CPU: other architectures (random weights: no hub in tests),
    small crops, Kang's recipe; the server hosts and retrains those members with that recipe."""
    out = tmp_path / "run"
    assert bench.main(_small_variant(out, ["mobilenetv2_100", "efficientnet_b0"], rounds=1)) == 0
    record = json.loads((out / "runs" / "random-seed0.json").read_text())
    assert record["config"]["members"] == ["mobilenetv2_100-a", "efficientnet_b0-a"]
    assert record["config"]["retraining"]["shrink"] == 1.0  # random weights: nothing to shrink toward
    assert [r["labels"] for r in record["rounds"]] == [20, 28]
    trained = record["rounds"][1]["trained"]
    assert set(trained) == {"mobilenetv2_100-a", "efficientnet_b0-a"}
    assert all(t["state"] == "done" for t in trained.values()), trained
    models = out / "work" / "random-seed0" / "workspace" / "models"
    for member, arch in (("mobilenetv2_100-a", "mobilenetv2_100"), ("efficientnet_b0-a", "efficientnet_b0")):
        run = sorted((models / member / "runs").iterdir())[-1]  # the round's retraining
        card = json.loads((run / arch / "model" / "model.json").read_text())
        assert card["arch"] == arch and card["input_size"] == 64
        assert card["recipe"]["name"] == "kang2021" and card["recipe"]["optimizer"]["lr"] == 1e-4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["setup"]["recipe"] == "kang2021" and summary["setup"]["roi_size"] == 64
    assert summary["test_bayes_auc"] == record["test_bayes_auc"] > 0.5
    assert (out / "active-learning.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.server
def test_kept_servers_start_once_a_run_and_all_stop_at_the_end(bench, tmp_path, monkeypatch):
    """--keep-servers: a run's server lives from round to round (a start costs tens of seconds
    a round); the cold start's is not kept, and none is left running when the benchmark ends."""
    started = []  # (run, its server's process id)

    def counted(args, work):
        server = real(args, work)
        started.append((work.name, server.process.pid))
        return server

    real = bench.new_server
    monkeypatch.setattr(bench, "new_server", counted)
    out = tmp_path / "run"
    argv = _small_variant(out, ["mobilenetv2_100", "mobilenetv2_100"], rounds=2) + ["--keep-servers"]
    assert bench.main(argv) == 0
    assert [name for name, _ in started] == ["cold-seed0", "random-seed0"]
    record = json.loads((out / "runs" / "random-seed0.json").read_text())
    assert [r["labels"] for r in record["rounds"]] == [20, 28, 36]
    # both later rounds trained through the one kept server
    assert all(t["state"] == "done" for r in record["rounds"][1:] for t in r["trained"].values())
    assert not bench.KEPT
    for _, pid in started:  # stopped by process id, not just forgotten
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

"""Parts of benchmarks/bench_selection_proxy.py: the draws and weights its strategies rest on."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def proxy(load_benchmark):
    return load_benchmark("bench_selection_proxy")


def test_gumbel_top_draws_in_proportion_to_weight(proxy):
    rng = np.random.default_rng(0)
    weight = np.array([1.0, 2.0, 7.0])
    counts = np.bincount([proxy.gumbel_top(np.log(weight), 1, rng)[0] for _ in range(6000)], minlength=3)
    assert np.allclose(counts / counts.sum(), weight / weight.sum(), atol=0.03)
    assert len(set(proxy.gumbel_top(np.log(np.ones(10)), 10, rng))) == 10  # without replacement


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    p = 1 / (1 + np.exp(-2 * x[:, 0]))
    return {
        "pool": x,
        "pool_raw": x,
        "pool_p": p,
        "pool_y": (rng.random(n) < p).astype(int),
        "test": x[:80],
        "test_y": (x[:80, 0] > 0).astype(int),
        "test_p": p[:80],
    }


def test_power_iw_weights_undo_the_tilt_toward_doubt(proxy):
    data = _data()
    labelled = np.zeros(len(data["pool"]), dtype=bool)
    labelled[:40] = True
    model = proxy.fit(data["pool"][:40], data["pool_y"][:40])
    picked, weight = proxy.choose("power-iw", data, labelled, model, 20, np.random.default_rng(1), 0)
    free = np.flatnonzero(~labelled)
    score = proxy.entropy(model.predict_proba(data["pool"][free])[:, 1])
    by_row = dict(zip(free, score, strict=True))
    expected = np.minimum(score.mean() / np.array([by_row[i] for i in picked]), proxy.WEIGHT_CAP)
    assert not labelled[picked].any() and len(set(picked)) == 20
    assert np.allclose(weight, expected)


def test_a_run_labels_a_batch_a_round_and_learns(proxy):
    curve = proxy.run("entropy", _data(), seed=0, cold=20, batch=20, upto=100)
    assert [n for n, _ in curve] == [20, 40, 60, 80, 100]
    assert curve[-1][1] > 0.8  # the signal is strong: a head on 100 labels must find it

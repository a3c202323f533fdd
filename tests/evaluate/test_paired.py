"""Paired ratio of two models' per-user metric values, with a bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.evaluate.paired import paired_ratio, paired_table


def _values(x: np.ndarray) -> dict[int, float]:
    return {u: float(v) for u, v in enumerate(x)}


def test_identical_models_have_ratio_one_and_a_point_interval() -> None:
    x = np.random.default_rng(0).random(300)
    r = paired_ratio(_values(x), _values(x), draws=500)
    assert r.ratio == pytest.approx(1.0)
    assert r.low == pytest.approx(1.0) and r.high == pytest.approx(1.0)
    assert r.p_below == 0.0 and r.n_users == 300


def test_a_consistently_better_model_has_an_interval_above_one() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(400)
    better = base + 0.05 + rng.normal(0, 0.02, 400)
    r = paired_ratio(_values(better), _values(base), draws=1000)
    assert r.ratio == pytest.approx(better.sum() / base.sum())
    assert 1.0 < r.low < r.ratio < r.high
    assert r.p_below == 0.0


def test_noise_around_the_same_mean_gives_an_interval_spanning_one() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(400)
    other = np.clip(base + rng.normal(0, 0.3, 400), 0, None)
    other *= base.sum() / other.sum()  # same mean, different users
    r = paired_ratio(_values(other), _values(base), draws=1000)
    assert r.low < 1.0 < r.high
    assert 0.1 < r.p_below < 0.9


def test_only_common_users_count_and_the_result_is_reproducible() -> None:
    a = {0: 1.0, 1: 0.5, 2: 0.0, 7: 1.0}
    b = {0: 0.5, 1: 0.5, 2: 0.5, 9: 0.0}
    r = paired_ratio(a, b, names=("a", "b"), metric="ndcg@10", draws=200, seed=3)
    assert r.n_users == 3 and r.ratio == pytest.approx(1.5 / 1.5)
    assert r == paired_ratio(a, b, names=("a", "b"), metric="ndcg@10", draws=200, seed=3)
    table = paired_table([r])
    assert "| a | b | ndcg@10 | 1.000x |" in table
    assert r.as_dict()["ci95"] == [r.low, r.high]


def test_no_common_user_or_zero_baseline_is_an_error() -> None:
    with pytest.raises(ValueError, match="no common user"):
        paired_ratio({0: 1.0}, {1: 1.0})
    with pytest.raises(ValueError, match="mean ndcg@10 is 0"):
        paired_ratio({0: 1.0}, {0: 0.0})

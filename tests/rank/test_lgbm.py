"""LightGBM LambdaRank ranker and rating regressor."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.errors import InputError
from lmrec.rank.lgbm import LGBMConfig, LGBMRanker, LGBMRating, ndcg_at, ndcg_per_group


def _groups(n_groups: int = 120, size: int = 20, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_groups * size, 4)).astype(np.float32)
    # relevance is non-linear in two features; the others are noise
    y = ((x[:, 0] > 0.8) & (x[:, 1] < 0.0)).astype(np.float32)
    return x, np.full(n_groups, size), y


def test_ndcg_counts_relevant_items_outside_the_candidates() -> None:
    scores = np.array([3.0, 2.0, 1.0])
    labels = np.array([1.0, 0.0, 0.0])
    assert ndcg_at(scores, np.array([3]), labels, np.array([1]), 10) == pytest.approx(1.0)
    # a second relevant item that the candidates missed still raises the ideal DCG
    half = ndcg_at(scores, np.array([3]), labels, np.array([2]), 10)
    assert half == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))


def test_ndcg_per_group_leaves_out_groups_without_relevant_items() -> None:
    scores = np.array([3.0, 2.0, 1.0, 5.0, 4.0, 0.5, 0.2])
    labels = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    sizes, n_rel = np.array([3, 2, 2]), np.array([1, 0, 1])
    per_group = ndcg_per_group(scores, sizes, labels, n_rel, 10)
    assert per_group == pytest.approx([1.0 / np.log2(3), 1.0])  # the middle group is left out
    assert ndcg_at(scores, sizes, labels, n_rel, 10) == pytest.approx(per_group.mean())
    assert ndcg_at(scores[:2], np.array([2]), labels[:2] * 0, np.array([0]), 10) == 0.0


@pytest.mark.parametrize("objective", ["lambdarank", "rank_xendcg"])
def test_ranker_learns_and_round_trips(objective: str) -> None:
    x, sizes, y = _groups()
    vx, vs, vy = _groups(seed=1)
    cfg = LGBMConfig(n_estimators=200, min_child_samples=5, num_threads=1, objective=objective)
    ranker = LGBMRanker(cfg).fit(x, sizes, y, (vx, vs, vy))
    n_rel = np.add.reduceat(vy, np.r_[0, np.cumsum(vs)[:-1]])
    learned = ndcg_at(ranker.predict(vx), vs, vy, n_rel, 10)
    noise = ndcg_at(vx[:, 3], vs, vy, n_rel, 10)
    assert learned > noise + 0.3
    assert 0 < ranker.fitted_params()["n_estimators"] <= 200
    assert f"objective={objective}" in ranker.to_string()
    again = LGBMRanker.from_string(cfg, ranker.to_string())
    np.testing.assert_allclose(again.predict(vx), ranker.predict(vx))
    with pytest.raises(InputError, match="disagree"):
        LGBMRanker(cfg).fit(x, sizes[:-1], y)


def test_rating_regressor_beats_the_mean_and_clips() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    y = np.clip(3 + x[:, 0] + 0.3 * rng.normal(size=2000), 1, 5)
    model = LGBMRating(LGBMConfig(n_estimators=100, num_threads=1)).fit(x[:1500], y[:1500])
    pred = model.predict(x[1500:])
    assert np.sqrt(np.mean((pred - y[1500:]) ** 2)) < 0.6 * np.std(y[1500:])
    assert pred.min() >= 1 and pred.max() <= 5
    with pytest.raises(InputError, match="NaN"):
        LGBMRating(LGBMConfig()).fit(x, np.full(2000, np.nan))


def test_cv_rounds_come_from_the_folds_and_refit_reproduces_them() -> None:
    x, sizes, y = _groups()
    folds = np.arange(len(sizes)) % 3
    cfg = LGBMConfig(n_estimators=60, min_child_samples=5, num_threads=1, rounds="cv")
    ranker = LGBMRanker(cfg).fit(x, sizes, y, folds=folds)
    assert ranker.cv_rounds is not None and 1 <= ranker.cv_rounds <= 60
    params = ranker.fitted_params()
    assert params == {"n_estimators": ranker.cv_rounds, "rounds": "fixed"}
    again = LGBMRanker(LGBMConfig(**{**cfg.model_dump(), **params})).fit(x, sizes, y)
    np.testing.assert_allclose(again.predict(x), ranker.predict(x))
    # one fold cannot cross-validate: early stopping on validation instead
    vx, vs, vy = _groups(seed=2)
    single = LGBMRanker(cfg).fit(x, sizes, y, (vx, vs, vy), folds=np.zeros(len(sizes)))
    assert single.cv_rounds is None and single.best_iteration is not None

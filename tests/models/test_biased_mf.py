"""The `biased-mf` rating predictor: accuracy on synthetic ratings, fallbacks, persistence."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import test_recommender_suite as suite

from lmrec.data.schema import Dataset
from lmrec.data.splits import Split, make_split
from lmrec.errors import ConfigError, InputError
from lmrec.evaluate.rating import evaluate_ratings
from lmrec.models.base import Recommender
from lmrec.models.biased_mf import BiasedMF

FAST: dict[str, Any] = {"factors": 4, "epochs": 40, "learning_rate": 0.02, "batch_size": 64}


def synthetic_ratings(
    n_users: int = 150, n_items: int = 100, density: float = 0.3, seed: int = 0
) -> Dataset:
    """Ratings ``3 + b_u + b_i + p_u . q_i + noise`` with rank-3 factors, on a 1..5 scale.

    IDs are shuffled strings, so index mistakes show.
    """
    rng = np.random.default_rng(seed)
    bu = rng.normal(0, 0.4, n_users)
    bi = rng.normal(0, 0.4, n_items)
    p = rng.normal(0, 0.7, (n_users, 3))
    q = rng.normal(0, 0.7, (n_items, 3))
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    r = 3.0 + bu[u] + bi[i] + np.einsum("bd,bd->b", p[u], q[i]) + rng.normal(0, 0.3, len(u))
    inter = pd.DataFrame(
        {"user_id": [f"user{x * 3 + 1}" for x in u], "item_id": [f"i{x * 7 + 2}" for x in i]}
    )
    inter["rating"] = np.clip(r, 1.0, 5.0)
    return Dataset.build(inter.sample(frac=1.0, random_state=seed))


@pytest.fixture(scope="module")
def split() -> Split:
    return make_split(synthetic_ratings(), "ratio", seed=1)


@pytest.fixture(scope="module")
def model(split: Split) -> BiasedMF:
    return BiasedMF(**FAST).fit(split.train)


def test_factors_beat_bias_only_and_global_mean(split: Split, model: BiasedMF) -> None:
    test = split.test.interactions
    mean_rmse = float(
        np.sqrt(np.mean((test["rating"] - split.train.interactions.rating.mean()) ** 2))
    )
    bias_only = BiasedMF(**{**FAST, "factors": 0}).fit(split.train)
    bias_rmse = evaluate_ratings(bias_only, split)["rmse"]
    mf_rmse = evaluate_ratings(model, split)["rmse"]
    assert bias_rmse < 0.9 * mean_rmse, (bias_rmse, mean_rmse)
    assert mf_rmse < 0.8 * bias_rmse, (mf_rmse, bias_rmse)
    assert bias_only.user_factors is not None and bias_only.user_factors.shape[1] == 0


def test_predictions_are_clipped_to_training_range(split: Split, model: BiasedMF) -> None:
    assert model.users is not None and model.items is not None
    u, i = np.meshgrid(np.arange(len(model.users)), np.arange(len(model.items)), indexing="ij")
    raw = model.score_idx(np.arange(len(model.users)))
    lo, hi = split.train.interactions.rating.min(), split.train.interactions.rating.max()
    assert raw.max() > hi and raw.min() < lo  # the data make unclipped scores overshoot
    pred = model.predict_idx(u.ravel(), i.ravel())
    np.testing.assert_allclose(pred, np.clip(raw.ravel(), lo, hi), atol=1e-5)


def test_deterministic_given_seed(split: Split, model: BiasedMF) -> None:
    again = BiasedMF(**FAST).fit(split.train)
    other = BiasedMF(**{**FAST, "seed": 7}).fit(split.train)
    users = list(split.test.interactions.user_id)
    items = list(split.test.interactions.item_id)
    np.testing.assert_array_equal(
        again.predict_ratings(users, items), model.predict_ratings(users, items)
    )
    assert not np.array_equal(
        other.predict_ratings(users, items), model.predict_ratings(users, items)
    )


def test_early_stopping_keeps_best_epoch(split: Split) -> None:
    # No regularisation, many factors, a large init: validation RMSE falls, then rises.
    cfg: dict[str, Any] = {
        "factors": 32,
        "learning_rate": 0.05,
        "regularization": 0.0,
        "init_std": 0.3,
        "batch_size": 64,
        "patience": 2,
    }
    m = BiasedMF(**cfg, epochs=200).fit(split.train, valid=split.valid)
    best = min(m.history, key=lambda h: h[1])
    assert best[0] > 1 and m.history[-1][1] > best[1]
    assert m.fitted_params() == {"epochs": best[0]}
    assert len(m.history) == best[0] + 2  # stopped `patience` epochs after the best
    assert evaluate_ratings(m, split, "valid")["rmse"] == pytest.approx(best[1], rel=1e-6)
    assert m.valid_matrix is None and m._valid is None  # validation data is not kept
    # validation draws no random numbers: refitting for the reported epochs gives the same model
    refit = BiasedMF(**cfg, **m.fitted_params()).fit(split.train)
    assert refit.fitted_params() == {}
    users, items = list(split.test.interactions.user_id), list(split.test.interactions.item_id)
    np.testing.assert_array_equal(
        refit.predict_ratings(users, items), m.predict_ratings(users, items)
    )


def test_defaults_with_early_stopping_learn_the_factors(split: Split) -> None:
    # Guards against stopping on the plateau before the factors grow (too small an init).
    bias_only = BiasedMF(**{**FAST, "factors": 0}).fit(split.train)
    m = BiasedMF().fit(split.train, valid=split.valid)
    assert m.best_epoch > 10
    assert evaluate_ratings(m, split)["rmse"] < 0.8 * evaluate_ratings(bias_only, split)["rmse"]


def test_save_load_reproduces_predictions(model: BiasedMF, split: Split, tmp_path: Path) -> None:
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, BiasedMF) and loaded.config == model.config
    users = [*split.test.interactions.user_id, "nobody"]
    items = [*split.test.interactions.item_id, "i2"]
    np.testing.assert_array_equal(
        loaded.predict_ratings(users, items), model.predict_ratings(users, items)
    )
    np.testing.assert_array_equal(loaded.score(users[:5]), model.score(users[:5]))
    assert loaded.rating_range == model.rating_range and loaded.mu == model.mu


def test_unknown_ids_fall_back_to_mean_plus_known_bias(model: BiasedMF) -> None:
    assert model.users is not None and model.items is not None
    assert model.user_bias is not None and model.item_bias is not None
    u, i = str(model.users.ids[0]), str(model.items.ids[0])
    pred = model.predict_ratings(["nobody", u, "nobody"], [i, "no-item", "no-item"])
    lo, hi = model.rating_range
    expected = [model.mu + model.item_bias[0], model.mu + model.user_bias[0], model.mu]
    np.testing.assert_allclose(pred, np.clip(expected, lo, hi), rtol=1e-6)
    np.testing.assert_array_equal(
        model.known_mask(["nobody", u, u], [i, "no-item", i]), [False, False, True]
    )


def test_user_without_training_ratings_gets_item_bias_fallback(split: Split) -> None:
    # A user-table entry with no training ratings is known by index but has nothing learned.
    inter = split.train.interactions
    cold = inter["user_id"].iloc[0]
    train = split.train.with_interactions(inter[inter["user_id"] != cold])
    m = BiasedMF(**FAST).fit(train)
    assert m.users is not None and m.items is not None and m.item_bias is not None
    assert cold in m.users  # still in the user table
    pred = m.predict_ratings([cold, cold], ["i2", "i9"])
    idx = m.items.index(["i2", "i9"])
    np.testing.assert_allclose(pred, np.clip(m.mu + m.item_bias[idx], *m.rating_range), rtol=1e-6)
    res = evaluate_ratings(m, Split(train, split.valid, split.train, "manual", None), "test")
    assert res["n_unknown"] == int((inter["user_id"] == cold).sum())


def test_needs_ratings(split: Split) -> None:
    no_rating = split.train.with_interactions(split.train.interactions.drop(columns="rating"))
    with pytest.raises(InputError, match=r"column 'rating'.*biased-mf needs explicit ratings"):
        BiasedMF(**FAST).fit(no_rating)


def test_nan_rating_names_the_column(split: Split) -> None:
    inter = split.train.interactions.copy()
    inter.loc[3, "rating"] = np.nan
    bad = replace(split.train, interactions=inter)  # bypasses Dataset.build's own check
    with pytest.raises(InputError, match=r"column 'rating'.*1 training rating\(s\) are NaN"):
        BiasedMF(**FAST).fit(bad)
    with pytest.raises(InputError, match=r"column 'rating'.*validation"):
        BiasedMF(**FAST).fit(split.train, valid=replace(split.valid, interactions=inter))


def test_bad_inputs(model: BiasedMF) -> None:
    with pytest.raises(InputError, match="one item per user"):
        model.predict_ratings(["a", "b"], ["c"])
    with pytest.raises(InputError, match="differ in shape"):
        model.predict_idx(np.array([0, 1]), np.array([0]))
    with pytest.raises(ConfigError, match="factors"):
        BiasedMF(factors=-1)
    assert len(list(itertools.product(*BiasedMF.search_space.values()))) <= 6


# -- the shared Recommender suite, run on biased-mf ------------------------------------------
def rated_clusters() -> Dataset:
    """`clustered_dataset` rated 5.0, plus 1.0 ratings of four other-cluster items per user."""
    data = suite.clustered_dataset()
    rng = np.random.default_rng(1)
    items = list(data.item_ids)
    half = len(items) // 2
    rows = []
    for uid in data.user_ids:
        other = (int(uid[1:]) // 7 + 1) % 2  # u{u*7+3}: u % 2 is the group
        for i in rng.choice(half, size=4, replace=False):
            rows.append((uid, items[other * half + i], 1.0, 0.0))
    dislikes = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    likes = data.interactions.assign(rating=5.0)
    return data.with_interactions(pd.concat([likes, dislikes], ignore_index=True))


SUITE: list[Callable[..., None]] = [
    suite.test_recommend_returns_external_ids_and_excludes_seen,
    suite.test_recommend_without_exclusion_can_return_seen,
    suite.test_k_larger_than_catalog,
    suite.test_candidates_restrict_ranking,
    suite.test_unknown_ids_raise,
    suite.test_unknown_user_can_fall_back_to_popular,
    suite.test_score_shape_and_item_subset,
    suite.test_save_load_without_training_data,
    suite.test_models_learn_the_clusters,
]


@pytest.fixture(scope="module")
def rated() -> Dataset:
    return rated_clusters()


@pytest.fixture(scope="module", params=[0, 8], ids=["bias-only", "factors-8"])
def suite_model(request: pytest.FixtureRequest, rated: Dataset) -> BiasedMF:
    return BiasedMF(factors=request.param, epochs=60, learning_rate=0.05, batch_size=32).fit(rated)


@pytest.mark.parametrize("check", SUITE, ids=[f.__name__[5:] for f in SUITE])
def test_shared_suite(
    check: Callable[..., None], suite_model: BiasedMF, rated: Dataset, tmp_path: Path
) -> None:
    if check is suite.test_models_learn_the_clusters and suite_model.config.factors == 0:
        pytest.skip("biases alone cannot tell the clusters apart")
    available = {"fitted": suite_model, "data": rated, "tmp_path": tmp_path}
    check(**{name: available[name] for name in inspect.signature(check).parameters})


def test_grid_search_selects_on_validation_rmse(split: Split) -> None:
    from lmrec.evaluate.protocol import select_config

    grid = [{**FAST, "factors": 0}, {**FAST, "factors": 4}]
    best, trials = select_config("biased-mf", split, grid=grid)
    assert all("rmse" in t for t in trials)
    assert best["factors"] == min(trials, key=lambda t: t["rmse"])["config"]["factors"] == 4

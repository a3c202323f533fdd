"""Rating-prediction metrics: `rating_metrics` and `evaluate_ratings`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from lmrec.data.schema import Dataset
from lmrec.data.splits import Split
from lmrec.errors import ConfigError, InputError
from lmrec.evaluate.rating import evaluate_ratings, rating_metrics


def test_rating_metrics_values() -> None:
    # errors 1, -2, 0, 1: rmse = sqrt(6 / 4), mae = 4 / 4
    res = rating_metrics(np.array([4.0, 1.0, 3.0, 5.0]), np.array([3.0, 3.0, 3.0, 4.0]))
    assert res == {"rmse": pytest.approx(math.sqrt(1.5)), "mae": pytest.approx(1.0), "n": 4}


@pytest.mark.parametrize(
    ("pred", "true", "match"),
    [
        ([1.0, np.nan], [1.0, 2.0], "1 predicted rating"),
        ([1.0, 2.0], [np.inf, 2.0], "1 true rating"),
        ([1.0, 2.0], [1.0, 2.0, 3.0], r"differ in shape: \(2,\) vs \(3,\)"),
        ([[1.0, 2.0]], [1.0, 2.0], "differ in shape"),
        ([], [], "empty"),
    ],
)
def test_rating_metrics_bad_input(pred: list[float], true: list[float], match: str) -> None:
    with pytest.raises(InputError, match=match):
        rating_metrics(np.array(pred), np.array(true))


class ItemMean:
    """Predicts an item's mean training rating, 3.0 for items it has not seen."""

    def __init__(self, train: Dataset) -> None:
        self.means = train.interactions.groupby("item_id")["rating"].mean().to_dict()
        self.calls: list[tuple[list[str], list[str]]] = []

    def predict_ratings(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        self.calls.append((list(users), list(items)))
        return np.array([self.means.get(i, 3.0) for i in items])


def _split() -> Split:
    def ds(rows: list[tuple[str, str, float]]) -> Dataset:
        return Dataset.build(pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]))

    train = ds([("a", "x", 4.0), ("a", "y", 2.0), ("b", "x", 5.0)])
    valid = ds([("b", "y", 2.0)])
    test = ds([("a", "x", 4.0), ("c", "y", 4.0), ("b", "z", 1.0)])  # c and z are unknown
    return Split(train, valid, test, "manual", None)


def test_evaluate_ratings_scores_every_test_row() -> None:
    split = _split()
    model = ItemMean(split.train)
    res = evaluate_ratings(model, split)
    # predictions 4.5, 2.0, 3.0 against 4, 4, 1: errors 0.5, -2, 2
    assert res["rmse"] == pytest.approx(math.sqrt((0.25 + 4 + 4) / 3))
    assert res["mae"] == pytest.approx(4.5 / 3)
    assert res["n"] == 3 and res["n_unknown"] == 2
    assert model.calls == [(["a", "c", "b"], ["x", "y", "z"])]
    assert evaluate_ratings(model, split, "valid") == {
        "rmse": pytest.approx(0.0),
        "mae": pytest.approx(0.0),
        "n": 1,
        "n_unknown": 0,
    }


def test_evaluate_ratings_uses_the_models_known_mask() -> None:
    class KnowsNothing(ItemMean):
        def known_mask(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
            return np.zeros(len(users), dtype=bool)

    split = _split()
    assert evaluate_ratings(KnowsNothing(split.train), split)["n_unknown"] == 3


def test_evaluate_ratings_errors() -> None:
    split = _split()
    model = ItemMean(split.train)
    with pytest.raises(ConfigError, match="stage"):
        evaluate_ratings(model, split, "holdout")
    unrated = Split(
        split.train,
        split.valid,
        split.test.with_interactions(split.test.interactions.drop(columns="rating")),
        "manual",
        None,
    )
    with pytest.raises(InputError, match=r"column 'rating'.*test interactions have no ratings"):
        evaluate_ratings(model, unrated)

    class Broken(ItemMean):
        def predict_ratings(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
            return np.full(len(users), np.nan)

    with pytest.raises(InputError, match="predicted rating"):
        evaluate_ratings(Broken(split.train), split)

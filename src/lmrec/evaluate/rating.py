"""Rating-prediction accuracy: RMSE and MAE of predicted against held-out explicit ratings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from lmrec.data.schema import ITEM, RATING, USER
from lmrec.data.splits import PARTS, Split
from lmrec.errors import ConfigError, InputError
from lmrec.evaluate import metrics


class RatingPredictor(Protocol):
    """Anything that predicts ratings for aligned ``(user, item)`` pairs of external IDs."""

    def predict_ratings(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray: ...


def rating_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and count of aligned predicted and true ratings.

    Returns:
        ``{"rmse": .., "mae": .., "n": ..}``.

    Raises:
        InputError: The arrays differ in shape, are empty, or hold NaN/inf values.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape:
        raise InputError(f"predicted and true ratings differ in shape: {p.shape} vs {t.shape}")
    if p.size == 0:
        raise InputError("no ratings to score (empty arrays)")
    for what, arr in (("predicted", p), ("true", t)):
        bad = int((~np.isfinite(arr)).sum())
        if bad:
            raise InputError(f"{bad} {what} rating(s) are NaN or infinite")
    return {**metrics.rating_metrics(p, t), "n": int(p.size)}


def evaluate_ratings(model: RatingPredictor, split: Split, stage: str = "test") -> dict[str, float]:
    """Score ``model``'s predictions of the ``stage`` interactions' ratings.

    Pairs whose user or item the model cannot place are still predicted (by the model's
    fallback) and counted in ``n_unknown``: the pairs where ``model.known_mask(users, items)``
    is False when the model has that method (as `BiasedMF`), otherwise the pairs whose user
    or item has no interaction in ``split.train``.

    Returns:
        ``{"rmse", "mae", "n", "n_unknown"}``.

    Raises:
        ConfigError: ``stage`` is not train, valid or test.
        InputError: The stage has no ratings, or the model predicted NaN/inf.
    """
    if stage not in PARTS:
        raise ConfigError(f"stage must be one of {', '.join(PARTS)}, got {stage!r}")
    part = split.parts()[stage]
    if not part.has(RATING):
        raise InputError(f"the {stage} interactions have no ratings to score", column=RATING)
    inter = part.interactions
    inter = inter[np.isfinite(inter[RATING].to_numpy(dtype=np.float64, na_value=np.nan))]
    users = [str(u) for u in inter[USER]]
    items = [str(i) for i in inter[ITEM]]
    pred = np.asarray(model.predict_ratings(users, items), dtype=np.float64)
    known_mask = getattr(model, "known_mask", None)
    if callable(known_mask):
        known = np.asarray(known_mask(users, items), dtype=bool)
    else:
        train = split.train.interactions
        known = inter[USER].isin(train[USER]).to_numpy() & inter[ITEM].isin(train[ITEM]).to_numpy()
    res = rating_metrics(pred, inter[RATING].to_numpy(dtype=np.float64))
    return {**res, "n_unknown": int((~known).sum())}

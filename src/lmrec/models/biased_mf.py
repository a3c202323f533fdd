"""Biased matrix factorisation for explicit ratings (Koren, Bell & Volinsky 2009; Funk 2006).

Predicts ``r_ui = mu + b_u + b_i + p_u . q_i``, the "SVD" of Surprise and the classic rating
baseline, fitted to the ``rating`` column by mini-batch SGD on the squared error with L2
penalties (one penalty per observed rating, as Funk's per-sample SGD). ``factors=0`` gives the
user + item bias baseline. As a `Recommender`, items are ranked by predicted rating.

Users or items without training ratings fall back to the parts of the model they have:
``mu + b_i`` for an unknown user, ``mu + b_u`` for an unknown item, ``mu`` for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from lmrec.data.schema import ITEM, RATING, USER, Dataset
from lmrec.errors import InputError
from lmrec.models.base import ModelConfig, Recommender, register


class BiasedMFConfig(ModelConfig):
    """Configuration of `BiasedMF`."""

    factors: int = Field(32, ge=0, description="Latent dimensions (0: user + item biases only).")
    epochs: int = Field(60, gt=0, description="SGD epochs (the most, when validation is given).")
    learning_rate: float = Field(0.01, gt=0, description="SGD step size.")
    regularization: float = Field(0.1, ge=0, description="L2 penalty on the factors.")
    bias_regularization: float = Field(0.02, ge=0, description="L2 penalty on the biases.")
    batch_size: int = Field(256, gt=0, description="Ratings per SGD step.")
    init_std: float = Field(0.1, ge=0, description="Std of the normal initial factors.")
    patience: int = Field(3, gt=0, description="Epochs without validation RMSE gain to stop.")
    seed: int = Field(2020, description="Random seed for initialisation and shuffling.")
    num_threads: int = Field(1, ge=0, description="BLAS threads while fitting (0: no limit).")


def _ratings(dataset: Dataset, what: str) -> np.ndarray:
    """The rating column as float64; `InputError` if it is missing or not finite."""
    if not dataset.has(RATING):
        raise InputError(
            f"biased-mf needs explicit ratings, but the {what} interactions have no "
            f"'{RATING}' column (use an implicit-feedback model such as als or bpr)",
            column=RATING,
        )
    r = dataset.interactions[RATING].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(r)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"biased-mf needs finite ratings; {int(bad.sum())} {what} rating(s) are NaN or "
            f"infinite (first at row {row})",
            column=RATING,
        )
    return r


@register
class BiasedMF(Recommender):
    """Rating predictor ``mu + b_u + b_i + p_u . q_i``, trained by mini-batch SGD.

    Attributes:
        mu: Global mean training rating.
        user_bias, item_bias: Learned biases (0 for IDs without training ratings).
        user_factors, item_factors: Learned factors (0 for IDs without training ratings).
        rating_range: ``(min, max)`` training rating; predictions are clipped to it.
        best_epoch: Epoch kept by early stopping (0 when no validation data was given).
        history: ``(epoch, validation RMSE)`` per epoch of the last early-stopped fit.
    """

    name = "biased-mf"
    Config = BiasedMFConfig
    # Ranking tuners select on NDCG; these grid points cover rank and shrinkage only.
    select_metric: ClassVar[str | None] = "rmse"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "factors": [16, 64],
        "regularization": [0.02, 0.05, 0.1],
    }
    config: BiasedMFConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.mu = 0.0
        self.rating_range = (0.0, 0.0)
        self.user_bias: np.ndarray | None = None
        self.item_bias: np.ndarray | None = None
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.best_epoch = 0
        self.history: list[tuple[int, float]] = []
        self._valid: Dataset | None = None  # held only while fitting

    # -- fitting -------------------------------------------------------------------------
    def fit(
        self,
        dataset: Dataset,
        valid: Dataset | None = None,
        valid_candidates: Sequence[str] | None = None,
    ) -> Self:
        """Fit on the ratings of ``dataset``; early-stop on ``valid``'s RMSE when given.

        Args:
            dataset: Training interactions with a finite ``rating`` column.
            valid: Held-out ratings; training stops after ``patience`` epochs without a
                lower RMSE and keeps the best epoch (reported by `fitted_params`).
            valid_candidates: Ignored (validation scores ratings, not rankings).

        Raises:
            InputError: A ``rating`` column is missing or has NaN/inf values.
        """
        # The base class passes validation data on only as a binary matrix, so keep the
        # ratings here for `_fit`.
        self._valid = valid
        try:
            return super().fit(dataset, valid=valid, valid_candidates=valid_candidates)
        finally:
            self._valid = None

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        assert self.users is not None and self.items is not None
        c = self.config
        ratings = _ratings(dataset, "training")
        u_all = self.users.lookup(dataset.interactions[USER].to_numpy())
        i_all = self.items.lookup(dataset.interactions[ITEM].to_numpy())
        valid = self._valid_arrays()
        with threadpool_limits(c.num_threads or None, "blas"):
            self._train(u_all, i_all, ratings, valid)

    def _valid_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Validation ``(user_idx, item_idx, rating)``, -1 for IDs unknown to the model."""
        if self._valid is None or self._valid.n_interactions == 0:
            return None
        assert self.users is not None and self.items is not None
        inter = self._valid.interactions
        return (
            self.users.lookup(inter[USER].to_numpy()),
            self.items.lookup(inter[ITEM].to_numpy()),
            _ratings(self._valid, "validation"),
        )

    def _train(
        self,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        assert self.users is not None and self.items is not None
        c = self.config
        rng = np.random.default_rng(c.seed)
        n_users, n_items, k = len(self.users), len(self.items), c.factors
        self.mu = float(ratings.mean())
        self.rating_range = (float(ratings.min()), float(ratings.max()))
        bu = np.zeros(n_users, dtype=np.float32)
        bi = np.zeros(n_items, dtype=np.float32)
        pu = (rng.standard_normal((n_users, k)) * c.init_std).astype(np.float32)
        qi = (rng.standard_normal((n_items, k)) * c.init_std).astype(np.float32)
        # SGD never touches IDs without ratings: zero factors make them take the fallback
        # path instead of predicting with random initial values.
        pu[np.bincount(users, minlength=n_users) == 0] = 0.0
        qi[np.bincount(items, minlength=n_items) == 0] = 0.0
        self.user_bias, self.item_bias, self.user_factors, self.item_factors = bu, bi, pu, qi
        resid = (ratings - self.mu).astype(np.float32)
        lr, reg = np.float32(c.learning_rate), np.float32(c.regularization)
        breg = np.float32(c.bias_regularization)
        best: tuple[np.ndarray, ...] | None = None
        best_rmse, bad = np.inf, 0
        self.history = []
        for epoch in range(1, c.epochs + 1):
            order = rng.permutation(len(resid))
            for start in range(0, len(order), c.batch_size):
                b = order[start : start + c.batch_size]
                u, i = users[b], items[b]
                p, q = pu[u], qi[i]
                err = resid[b] - bu[u] - bi[i] - np.einsum("bd,bd->b", p, q)
                # Summed per-rating gradients (Funk's SGD, one batch at a time); all updates
                # use the parameters from before the step.
                np.add.at(bu, u, lr * (err - breg * bu[u]))
                np.add.at(bi, i, lr * (err - breg * bi[i]))
                if k:
                    np.add.at(pu, u, lr * (err[:, None] * q - reg * p))
                    np.add.at(qi, i, lr * (err[:, None] * p - reg * q))
            if valid is None:
                continue
            rmse = float(np.sqrt(np.mean((self.predict_idx(valid[0], valid[1]) - valid[2]) ** 2)))
            self.history.append((epoch, rmse))
            if rmse < best_rmse:
                best_rmse, bad, self.best_epoch = rmse, 0, epoch
                best = (bu.copy(), bi.copy(), pu.copy(), qi.copy())
            else:
                bad += 1
                if bad >= c.patience:
                    break
        if best is not None:
            self.user_bias, self.item_bias, self.user_factors, self.item_factors = best
        else:
            self.best_epoch = 0

    def fitted_params(self) -> dict[str, Any]:
        return {"epochs": self.best_epoch} if self.best_epoch else {}

    # -- prediction ----------------------------------------------------------------------
    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._check()
        bu, bi, pu, qi = self.user_bias, self.item_bias, self.user_factors, self.item_factors
        assert bu is not None and bi is not None and pu is not None and qi is not None
        return bu, bi, pu, qi

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        # Unclipped, so that items predicted above the top of the scale keep their order.
        bu, bi, pu, qi = self._params()
        scores = pu[user_idx] @ qi.T
        scores += bi[None, :]
        scores += (self.mu + bu[user_idx])[:, None]
        return np.asarray(scores, dtype=np.float32)

    def predict_idx(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Clipped predicted ratings (float64) for aligned dense index pairs.

        Args:
            user_idx: Dense user indices; -1 for a user unknown to the model.
            item_idx: Dense item indices (same length); -1 for an unknown item.

        Unknown users (items) contribute no bias and no factors, so an unknown user gets
        ``mu + b_i``, an unknown item ``mu + b_u``, and both unknown ``mu``.
        """
        bu, bi, pu, qi = self._params()
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        if u.shape != i.shape:
            raise InputError(f"user and item indices differ in shape: {u.shape} vs {i.shape}")
        ku, ki = u >= 0, i >= 0
        uu, ii = np.where(ku, u, 0), np.where(ki, i, 0)
        dot = np.einsum("bd,bd->b", pu[uu].astype(np.float64), qi[ii].astype(np.float64))
        pred = (
            self.mu
            + np.where(ku, bu[uu], 0.0)
            + np.where(ki, bi[ii], 0.0)
            + np.where(ku & ki, dot, 0.0)
        )
        return np.clip(pred, *self.rating_range)

    def predict_ratings(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """Clipped predicted ratings (float64) for aligned ``(users[j], items[j])`` pairs.

        IDs unknown to the model do not raise: they fall back as in `predict_idx`.

        Raises:
            InputError: ``users`` and ``items`` differ in length.
        """
        umap, imap, _ = self._check()
        if len(users) != len(items):
            raise InputError(
                f"need one item per user, got {len(users)} users and {len(items)} items"
            )
        return self.predict_idx(umap.lookup(users), imap.lookup(items))

    def known_mask(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """Whether both the user and the item of each pair had training ratings.

        Pairs where this is False are predicted by the fallback of `predict_idx`.
        """
        umap, imap, seen = self._check()
        u, i = umap.lookup(users), imap.lookup(items)
        u_has = np.diff(seen.indptr) > 0
        i_has = np.bincount(seen.indices, minlength=len(imap)) > 0
        return (u >= 0) & (i >= 0) & u_has[np.maximum(u, 0)] & i_has[np.maximum(i, 0)]

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        bu, bi, pu, qi = self._params()
        return {
            "user_bias": bu,
            "item_bias": bi,
            "user_factors": pu,
            "item_factors": qi,
            "mu": np.array([self.mu], dtype=np.float64),
            "rating_range": np.array(self.rating_range, dtype=np.float64),
            "best_epoch": np.array([self.best_epoch], dtype=np.int64),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_bias = state["user_bias"]
        self.item_bias = state["item_bias"]
        self.user_factors = state["user_factors"]
        self.item_factors = state["item_factors"]
        self.mu = float(state["mu"][0])
        lo, hi = state["rating_range"]
        self.rating_range = (float(lo), float(hi))
        self.best_epoch = int(state["best_epoch"][0])

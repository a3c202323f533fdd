"""BPR matrix factorisation (Rendle et al., UAI 2009) with a choice of negative sampler.

``sampler="popularity"`` trains through `implicit`, whose BPR draws negatives in proportion to
item popularity (implicit issue #255). ``sampler="uniform"`` draws them uniformly among the
items the user has not interacted with, as the paper and RecBole do, and trains with
mini-batch Adam in vectorised NumPy. The validation grid covers both.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from tqdm.auto import tqdm

from lmrec.data.schema import Dataset
from lmrec.models.base import ModelConfig, register
from lmrec.models.early_stopping import EarlyStopping, validation_ndcg
from lmrec.models.implicit_mf import FactorModel


class BPRConfig(ModelConfig):
    """Configuration of `BPR`."""

    sampler: Literal["uniform", "popularity"] = Field(
        "uniform",
        description="Negative sampling: uniform (lmrec trainer) or popularity (implicit).",
    )
    factors: int = Field(64, gt=0, description="Latent dimensions.")
    learning_rate: float = Field(
        0.001, gt=0, description="Step size (Adam for uniform, SGD for popularity)."
    )
    regularization: float = Field(0.0, ge=0, description="L2 penalty on the factors in each step.")
    iterations: int = Field(
        200, gt=0, description="Epochs (the most, when validation data is given)."
    )
    eval_every: int = Field(
        5, gt=0, description="Epochs between validation checks (uniform sampler)."
    )
    patience: int = Field(3, gt=0, description="Checks without NDCG@10 gain before stopping.")
    batch_size: int = Field(2048, gt=0, description="Positive pairs per step (uniform sampler).")
    seed: int = Field(2020, description="Random seed for initialisation and sampling.")
    num_threads: int = Field(0, ge=0, description="Worker threads for implicit (0: all cores).")


class _Adam:
    """Dense Adam over one parameter array (as torch's, so rows without gradient still move)."""

    def __init__(self, shape: tuple[int, ...], lr: float) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, 0.9, 0.999, 1e-8
        self.m = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.t = 0

    def step(self, param: np.ndarray, grad: np.ndarray) -> None:
        self.t += 1
        self.m *= self.b1
        self.m += (1 - self.b1) * grad
        self.v *= self.b2
        self.v += (1 - self.b2) * grad * grad
        lr_t = self.lr * np.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        param -= lr_t * self.m / (np.sqrt(self.v) + self.eps)


class NegativeSampler:
    """Draws, per user, a uniform item the user has not interacted with.

    Rejection sampling, vectorised: membership is a binary search of ``user * n_items + item``
    in the sorted keys of the interaction matrix.
    """

    def __init__(self, matrix: sp.csr_matrix, rng: np.random.Generator) -> None:
        m = sp.csr_matrix(matrix)
        m.sort_indices()
        self.n_items = m.shape[1]
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        self.keys = rows * self.n_items + m.indices  # sorted: rows ascending, indices sorted
        self.rng = rng

    def __call__(self, users: np.ndarray, max_rounds: int = 100) -> np.ndarray:
        neg = self.rng.integers(0, self.n_items, size=len(users))
        todo = np.arange(len(users))
        for _ in range(max_rounds):
            want = users[todo] * self.n_items + neg[todo]
            pos = np.minimum(np.searchsorted(self.keys, want), len(self.keys) - 1)
            todo = todo[self.keys[pos] == want]
            if len(todo) == 0:
                break
            neg[todo] = self.rng.integers(0, self.n_items, size=len(todo))
        return neg


def _scatter_sum(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """Dense ``(n_rows, d)`` array with ``values`` summed into ``rows`` (a sparse product is
    several times faster than ``np.add.at``)."""
    ones = np.ones(len(rows), dtype=np.float32)
    scatter = sp.csr_matrix((ones, (rows, np.arange(len(rows)))), shape=(n_rows, len(rows)))
    return np.asarray(scatter @ values, dtype=np.float32)


@register
class BPR(FactorModel):
    """Pairwise-ranking matrix factorisation."""

    name = "bpr"
    Config = BPRConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "sampler": ["uniform"],
        "factors": [64],
        "learning_rate": [0.001, 0.002],
        "regularization": [0.0, 0.01],
    }
    config: BPRConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.best_iteration = 0

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        if self.config.sampler == "popularity":
            self._fit_implicit(matrix)
        else:
            self._fit_uniform(matrix)

    def _fit_implicit(self, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.config
        self._train(
            lambda: BayesianPersonalizedRanking(
                factors=c.factors,
                learning_rate=c.learning_rate,
                regularization=c.regularization,
                iterations=c.iterations,
                random_state=c.seed,
                num_threads=c.num_threads,
            ),
            matrix,
        )

    def _fit_uniform(self, matrix: sp.csr_matrix) -> None:
        c = self.config
        rng = np.random.default_rng(c.seed)
        n_users, n_items = matrix.shape
        # Xavier-normal initialisation, as RecBole's BPR.
        std_u = np.sqrt(2.0 / (n_users + c.factors))
        std_i = np.sqrt(2.0 / (n_items + c.factors))
        users_f = (rng.standard_normal((n_users, c.factors)) * std_u).astype(np.float32)
        items_f = (rng.standard_normal((n_items, c.factors)) * std_i).astype(np.float32)
        opt_u = _Adam(users_f.shape, c.learning_rate)
        opt_i = _Adam(items_f.shape, c.learning_rate)
        sampler = NegativeSampler(matrix, rng)
        coo = matrix.tocoo()
        pos_u, pos_i = coo.row.astype(np.int64), coo.col.astype(np.int64)
        n = len(pos_u)
        stopper = EarlyStopping(c.patience)
        best = (users_f.copy(), items_f.copy())
        for epoch in tqdm(range(1, c.iterations + 1), desc="bpr", leave=False, disable=n < 200_000):
            order = rng.permutation(n)
            for start in range(0, n, c.batch_size):
                b = order[start : start + c.batch_size]
                u, i = pos_u[b], pos_i[b]
                j = sampler(u)
                pu, qi, qj = users_f[u], items_f[i], items_f[j]
                x = np.einsum("bd,bd->b", pu, qi - qj)
                # d/dx of mean(-log sigmoid(x)) = -sigmoid(-x) / batch
                g = (-1.0 / (1.0 + np.exp(x)) / len(b)).astype(np.float32)[:, None]
                reg = c.regularization / len(b)  # the penalty is averaged like the loss
                grad_u = _scatter_sum(u, g * (qi - qj) + reg * pu, n_users)
                grad_i = _scatter_sum(
                    np.concatenate([i, j]),
                    np.concatenate([g * pu + reg * qi, -g * pu + reg * qj]),
                    n_items,
                )
                opt_u.step(users_f, grad_u)
                opt_i.step(items_f, grad_i)
            if self.valid_matrix is not None and (
                epoch % c.eval_every == 0 or epoch == c.iterations
            ):
                self.user_factors, self.item_factors = users_f, items_f
                improved, stop = stopper.update(epoch, validation_ndcg(self, self.valid_matrix))
                if improved:
                    best = (users_f.copy(), items_f.copy())
                if stop:
                    break
        if self.valid_matrix is not None:
            users_f, items_f = best
            self.best_iteration = stopper.best_step
        self.user_factors = users_f
        self.item_factors = items_f

    def fitted_params(self) -> dict[str, Any]:
        return {"iterations": self.best_iteration} if self.best_iteration else {}

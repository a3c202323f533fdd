"""Matrix factorisation through the `implicit` library: ALS (Hu et al. 2008).

Only the learned factors are kept, so saved models load without `implicit` objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from lmrec.data.schema import Dataset
from lmrec.models.base import ModelConfig, Recommender, register


class ALSConfig(ModelConfig):
    """Configuration of `ALS`."""

    factors: int = Field(64, gt=0, description="Latent dimensions.")
    regularization: float = Field(10.0, ge=0, description="L2 regularisation of the factors.")
    alpha: float = Field(1.0, gt=0, description="Confidence scale for observed interactions.")
    iterations: int = Field(15, gt=0, description="ALS sweeps.")
    seed: int = Field(2020, description="Random seed for the initial factors.")
    num_threads: int = Field(0, ge=0, description="Worker threads (0: all cores).")


class FactorModel(Recommender):
    """Scores are dot products of user and item factors."""

    def __init__(self, config: ModelConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        assert self.user_factors is not None and self.item_factors is not None
        return np.asarray(self.user_factors[user_idx] @ self.item_factors.T, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        assert self.user_factors is not None and self.item_factors is not None
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors = state["user_factors"]
        self.item_factors = state["item_factors"]

    def _train(self, make: Callable[[], Any], matrix: sp.csr_matrix) -> None:
        # implicit parallelises itself; a multi-threaded BLAS underneath only oversubscribes
        # (implicit checks this when the model is built, so build it inside the limit too).
        with threadpool_limits(1, "blas"):
            model = make()
            model.fit(matrix, show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)


@register
class ALS(FactorModel):
    """Implicit-feedback ALS with confidence 1 + alpha * x."""

    name = "als"
    Config = ALSConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "factors": [32, 64, 128],
        "regularization": [3.0, 10.0, 30.0],
        "alpha": [1.0, 2.0],
    }
    config: ALSConfig

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        self._train(
            lambda: AlternatingLeastSquares(
                factors=c.factors,
                regularization=c.regularization,
                alpha=c.alpha,
                iterations=c.iterations,
                random_state=c.seed,
                num_threads=c.num_threads,
            ),
            matrix,
        )

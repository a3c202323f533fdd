"""EASE (Steck, WWW 2019): a closed-form linear item-item autoencoder.

B = I - P / diag(P) with P = (X^T X + lambda I)^-1 and diag(B) = 0; scores are X_u B. The same
closed form as RecBole's ``EASE``; only the regularisation is tuned (on validation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.schema import Dataset
from lmrec.errors import ConfigError
from lmrec.models.base import ModelConfig, Recommender, register


def ease_weights(
    matrix: sp.csr_matrix, reg_weight: float, diag_extra: np.ndarray | float = 0.0
) -> np.ndarray:
    """EASE's item-item weights B (float64, zero diagonal) for a user x item matrix.

    ``diag_extra`` adds to the regularised Gram diagonal per item, e.g. EDLAE's dropout
    emphasis ``p / (1 - p) * diag(X^T X)`` (Steck, NeurIPS 2020).
    """
    n = matrix.shape[1]
    gram = (matrix.T @ matrix).toarray().astype(np.float64)
    gram[np.diag_indices(n)] += reg_weight + diag_extra
    # G is symmetric positive definite: a Cholesky inverse is faster and stabler than inv.
    chol = scipy.linalg.cho_factor(gram, overwrite_a=True)
    p = scipy.linalg.cho_solve(chol, np.eye(n), overwrite_b=True)
    b = -p / np.diag(p)
    b[np.diag_indices(n)] = 0.0
    return b


class EASEConfig(ModelConfig):
    """Configuration of `EASE`."""

    reg_weight: float = Field(
        250.0, gt=0, description="L2 regularisation lambda (RecBole's default)."
    )
    max_items: int = Field(
        40_000, gt=0, description="Refuse catalogs larger than this (dense n^2 memory)."
    )


@register
class EASE(Recommender):
    """Embarrassingly shallow autoencoder over the binary interaction matrix."""

    name = "ease"
    Config = EASEConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "reg_weight": [10.0, 50.0, 100.0, 250.0, 500.0, 1000.0]
    }
    config: EASEConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        self.weights: np.ndarray | None = None

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        n = matrix.shape[1]
        if n > self.config.max_items:
            raise ConfigError(
                f"EASE needs a dense {n}x{n} matrix; catalog exceeds max_items="
                f"{self.config.max_items} (use itemknn, als or bpr)"
            )
        # C order: scipy's sparse @ dense copies a Fortran-ordered operand on every call
        self.weights = np.ascontiguousarray(
            ease_weights(matrix, self.config.reg_weight), dtype=np.float32
        )

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        assert self.weights is not None and self.seen is not None
        hist = self.seen[user_idx]
        return np.asarray(hist @ self.weights, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        assert self.weights is not None
        return {"weights": self.weights}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights = np.ascontiguousarray(state["weights"])

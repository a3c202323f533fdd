"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmrec.data.schema import Dataset
from lmrec.models.base import ModelConfig, Recommender, register


class PopularityConfig(ModelConfig):
    """Popularity has nothing to tune."""


@register
class Popularity(Recommender):
    """Scores each item by its number of training interactions (distinct users)."""

    name = "pop"
    Config = PopularityConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        self.counts: np.ndarray | None = None

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        self.counts = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        assert self.counts is not None
        return np.broadcast_to(self.counts, (len(user_idx), len(self.counts))).copy()

    def _state(self) -> dict[str, np.ndarray]:
        assert self.counts is not None
        return {"counts": self.counts}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.counts = state["counts"]

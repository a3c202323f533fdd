"""Item-based k-nearest-neighbours with shrunk cosine similarity (Sarwar et al. 2001).

sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink); each item keeps its ``k`` most similar
items, as RecBole's ``ItemKNN`` does; a user's score for j is the sum of sim(i, j) over items
i in their history.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from tqdm.auto import tqdm

from lmrec.data.schema import Dataset
from lmrec.models.base import ModelConfig, Recommender, register


class ItemKNNConfig(ModelConfig):
    """Configuration of `ItemKNN`."""

    k: int = Field(100, gt=0, description="Neighbours kept per item.")
    shrink: float = Field(
        0.0, ge=0, description="Added to the cosine denominator; damps rare pairs."
    )
    block_size: int = Field(2048, gt=0, description="Items per block when computing similarities.")


def topk_similarity(matrix: sp.csr_matrix, k: int, shrink: float, block: int) -> sp.csr_matrix:
    """Item x item shrunk-cosine similarities, keeping the top ``k`` per column.

    Computed a block of columns at a time so memory stays O(n_items * block).
    """
    x = sp.csc_matrix(matrix, dtype=np.float32)
    n = x.shape[1]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0), dtype=np.float64)).ravel()
    xt = x.T.tocsr()
    rows_out, cols_out, vals_out = [], [], []
    starts = range(0, n, block)
    for start in tqdm(starts, desc="itemknn", disable=len(starts) < 4, leave=False):
        stop = min(start + block, n)
        dots = (xt @ x[:, start:stop]).toarray()  # (n, b)
        denom = np.outer(norms, norms[start:stop]) + shrink + 1e-6
        sim = (dots / denom).astype(np.float32)
        sim[np.arange(start, stop), np.arange(stop - start)] = 0.0  # no self-similarity
        kk = min(k, n - 1)
        if kk <= 0:
            continue
        top = np.argpartition(-sim, kk - 1, axis=0)[:kk]  # (kk, b) row indices
        vals = np.take_along_axis(sim, top, axis=0)
        cols = np.broadcast_to(np.arange(start, stop), top.shape)
        keep = vals > 0
        rows_out.append(top[keep])
        cols_out.append(cols[keep])
        vals_out.append(vals[keep])
    if not rows_out:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=(n, n),
        dtype=np.float32,
    )


class ItemSimilarityModel(Recommender):
    """Base of item-kNN models whose score is ``history @ similarity`` (item x item)."""

    similarity: sp.csr_matrix | None

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        assert self.similarity is not None and self.seen is not None
        return np.asarray((self.seen[user_idx] @ self.similarity).toarray(), dtype=np.float32)

    def _similarity_state(self) -> dict[str, np.ndarray]:
        s = self.similarity
        assert s is not None
        return {"sim_data": s.data, "sim_indices": s.indices, "sim_indptr": s.indptr}

    def _set_similarity_state(self, state: dict[str, np.ndarray]) -> None:
        n = len(state["sim_indptr"]) - 1
        self.similarity = sp.csr_matrix(
            (state["sim_data"], state["sim_indices"], state["sim_indptr"]), shape=(n, n)
        )


@register
class ItemKNN(ItemSimilarityModel):
    """Item-kNN collaborative filtering."""

    name = "itemknn"
    Config = ItemKNNConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "k": [20, 50, 100, 200],
        "shrink": [0.0, 10.0, 100.0],
    }
    config: ItemKNNConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: object) -> None:
        super().__init__(config, **overrides)
        self.similarity: sp.csr_matrix | None = None

    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        c = self.config
        self.similarity = topk_similarity(matrix, c.k, c.shrink, c.block_size)

    def _state(self) -> dict[str, np.ndarray]:
        return self._similarity_state()

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._set_similarity_state(state)

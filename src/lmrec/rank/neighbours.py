"""Item-neighbour features of (user, item) pairs: closest history item and rating-aware sums.

Item-kNN sums similarities over the whole history; a ranker also profits from the *closest*
history item (one strong neighbour is a different signal from many weak ones) and from how the
user rated the neighbours (a watched-and-disliked neighbour is evidence against).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmrec.models.itemknn import topk_similarity
from lmrec.models.topk import gather


class NeighbourFeatures:
    """Shrunk-cosine item neighbours of the fit data and the user's ratings of them."""

    def __init__(self, k: int = 100, shrink: float = 10.0) -> None:
        self.k, self.shrink = k, shrink
        self.sim = sp.csr_matrix((0, 0), dtype=np.float32)
        self.centered: sp.csr_matrix | None = None

    def fit(self, seen: sp.csr_matrix, ratings: sp.csr_matrix | None) -> NeighbourFeatures:
        """``ratings``: the user x item rating matrix (same pattern as ``seen``), if any."""
        self.sim = topk_similarity(seen, self.k, self.shrink, 2048)  # sim[j, i]: j near i
        self._link()
        self.centered = None
        if ratings is not None and ratings.nnz:
            r = sp.csr_matrix(ratings, dtype=np.float64)
            counts = np.maximum(np.diff(r.indptr), 1)
            means = np.asarray(r.sum(axis=1)).ravel() / counts
            c = r.copy()
            c.data = c.data - np.repeat(means, np.diff(r.indptr))
            self.centered = sp.csr_matrix(c, dtype=np.float32)
        return self

    def transform(
        self, seen: sp.csr_matrix, users: np.ndarray, pair_user: np.ndarray, pair_item: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Features of pairs; ``users`` are the block's user indices, ``pair_user`` rows in it."""
        hist = sp.csr_matrix(seen[users], dtype=np.float32)
        max_sim = np.zeros(len(pair_item), dtype=np.float32)
        for row in np.unique(pair_user):
            items = hist.indices[hist.indptr[row] : hist.indptr[row + 1]]
            sel = np.flatnonzero(pair_user == row)
            if len(items) == 0 or len(sel) == 0:
                continue
            block = self.sim[items][:, pair_item[sel]]
            max_sim[sel] = block.max(axis=0).toarray().ravel()
        sums = gather(hist @ self.sim, pair_user, pair_item)
        out = {"nbr:max_sim": max_sim, "nbr:n_close": self._count_close(hist, pair_user, pair_item)}
        if self.centered is not None:
            cen = sp.csr_matrix(self.centered[users])
            dev = gather(cen @ self.sim, pair_user, pair_item)
            out["nbr:rating_dev"] = (dev / np.maximum(sums, 1e-6)).astype(np.float32)
        return out

    def _count_close(
        self, hist: sp.csr_matrix, pair_user: np.ndarray, pair_item: np.ndarray
    ) -> np.ndarray:
        """How many history items have the candidate among their neighbours."""
        return gather(hist @ self.linked, pair_user, pair_item).astype(np.float32)

    def _link(self) -> None:
        self.linked = sp.csr_matrix(self.sim, dtype=np.float32, copy=True)
        self.linked.data[:] = 1.0

    def state(self) -> dict[str, np.ndarray]:
        out = {"sim_data": self.sim.data, "sim_indices": self.sim.indices,
               "sim_indptr": self.sim.indptr, "sim_shape": np.asarray(self.sim.shape)}  # fmt: skip
        if self.centered is not None:
            c = self.centered
            out.update({"cen_data": c.data, "cen_indices": c.indices, "cen_indptr": c.indptr,
                        "cen_shape": np.asarray(c.shape)})  # fmt: skip
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> NeighbourFeatures:
        def csr(p: str) -> sp.csr_matrix:
            shape = tuple(int(v) for v in state[f"{p}_shape"])
            return sp.csr_matrix(
                (state[f"{p}_data"], state[f"{p}_indices"], state[f"{p}_indptr"]), shape=shape
            )

        self.sim = csr("sim")
        self._link()
        self.centered = csr("cen") if "cen_data" in state else None
        return self

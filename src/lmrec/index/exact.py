"""Exact cosine search: blocked matrix products and the library's exact top-k.

Queries are scored against blocks of stored vectors (``queries x block`` score matrices of at
most `MAX_CELLS` float32 cells, ~128 MB; the top-k takes one working copy more, so a search
stays near 256 MB above the store). Each block's top-k is merged into a running top-k. Equal
scores come out in insertion order (lower slot first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmrec.errors import ConfigError
from lmrec.index.base import VectorIndex
from lmrec.models.topk import topk

#: Largest score block (queries x vectors) materialised at once, in float32 cells (~128 MB).
MAX_CELLS = 32_000_000


def exact_search(
    vecs: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    rows: np.ndarray | None = None,
    invalid: np.ndarray | None = None,
    excl: Sequence[np.ndarray] | None = None,
    max_cells: int = MAX_CELLS,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of ``queries`` against rows of ``vecs``.

    Args:
        vecs: ``(n, dim)`` stored vectors.
        queries: ``(n_q, dim)`` queries.
        k: Results per query.
        rows: Sorted row numbers of ``vecs`` to search (None: all rows). Blocks of them are
            gathered one at a time.
        invalid: Sorted row numbers never to return (used when ``rows`` is None).
        excl: Per query, sorted row numbers to skip (a subset of ``rows`` when given).
        max_cells: Bound on the cells of one score block.

    Returns:
        ``(n_q, k)`` row numbers (-1 padded) and float32 scores (``-inf`` padded), best first,
        ties by lower row number.
    """
    n_q = len(queries)
    n = len(vecs) if rows is None else len(rows)
    best_i = np.full((n_q, k), -1, dtype=np.int64)
    best_v = np.full((n_q, k), -np.inf, dtype=np.float32)
    if n == 0 or n_q == 0:
        return best_i, best_v
    # Work in "column" space 0..n-1 (positions in ``rows``); map back at the end.
    if rows is not None:
        excl = [np.searchsorted(rows, e) for e in excl] if excl is not None else None
        invalid = None
    ex_rows = ex_cols = None
    if excl is not None:
        ex_rows = np.repeat(np.arange(n_q), [len(e) for e in excl])
        ex_cols = np.concatenate([np.asarray(e, dtype=np.int64) for e in excl])
    block = max(1, min(n, max_cells // min(n_q, 64)))  # vectors per block
    if rows is not None:  # a gathered block is a copy too: bound it like a score block
        block = max(1, min(block, max_cells // vecs.shape[1]))
    q_step = max(1, min(n_q, max_cells // block))
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        part = vecs[i0:i1] if rows is None else vecs[rows[i0:i1]]
        dead = None
        if invalid is not None:
            lo, hi = np.searchsorted(invalid, [i0, i1])
            dead = invalid[lo:hi] - i0
        for q0 in range(0, n_q, q_step):
            q1 = min(n_q, q0 + q_step)
            scores = queries[q0:q1] @ part.T
            if dead is not None and len(dead):
                scores[:, dead] = -np.inf
            if ex_rows is not None and ex_cols is not None:
                lo, hi = np.searchsorted(ex_rows, [q0, q1])
                r, c = ex_rows[lo:hi], ex_cols[lo:hi]
                m = (c >= i0) & (c < i1)
                scores[r[m] - q0, c[m] - i0] = -np.inf
            idx, val = topk(scores, k)
            idx = np.where(idx >= 0, idx + i0, -1)
            if i0 > 0:  # merge: earlier blocks first, so ties still go to lower positions
                cat_i = np.concatenate([best_i[q0:q1], idx], axis=1)
                j, val = topk(np.concatenate([best_v[q0:q1], val], axis=1), k)
                idx = np.where(j >= 0, np.take_along_axis(cat_i, np.maximum(j, 0), 1), -1)
            best_i[q0:q1, : idx.shape[1]] = idx
            best_v[q0:q1, : val.shape[1]] = val
    if rows is not None:
        best_i = np.where(best_i >= 0, rows[np.maximum(best_i, 0)], -1)
    return best_i, best_v


class ExactIndex(VectorIndex):
    """Exact (brute-force) cosine search; the ground truth for `AnnIndex`.

    Args:
        dim: Dimension of every vector.
        max_cells: Bound on one score block (queries x vectors), in float32 cells.
    """

    index_type = "exact"

    def __init__(self, dim: int, max_cells: int = MAX_CELLS) -> None:
        super().__init__(dim)
        if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
            raise ConfigError(f"max_cells must be a positive integer, got {max_cells!r}")
        self.max_cells = max_cells

    def _config(self) -> dict[str, int]:
        return {"max_cells": self.max_cells}

    def _search_slots(
        self, q: np.ndarray, k: int, excl: list[np.ndarray] | None, cand: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n = self._n_slots
        dead = np.flatnonzero(~self._live[:n]) if len(self) < n else None
        return exact_search(
            self._vecs[:n], q, k, rows=cand, invalid=dead, excl=excl, max_cells=self.max_cells
        )

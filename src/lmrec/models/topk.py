"""Vectorised top-k selection over a block of scores, with exclusions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Largest score block (users x items) materialised at once, in float32 cells (~256 MB).
MAX_BLOCK_CELLS = 64_000_000


def user_batch_size(n_items: int, max_cells: int = MAX_BLOCK_CELLS) -> int:
    """How many users to score at once so one dense block stays under ``max_cells``."""
    return max(1, min(4096, max_cells // max(n_items, 1)))


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix | None) -> None:
    """Set ``scores[i, j] = -inf`` wherever ``exclude[i, j]`` is stored (in place)."""
    if exclude is None or exclude.nnz == 0:
        return
    coo = exclude.tocoo()
    scores[coo.row, coo.col] = -np.inf


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` best scores per row, best first.

    Results are deterministic for the same input; among the selected entries, equal scores are
    ordered by column index. Entries that are ``-inf`` (excluded) come out as index -1.
    """
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        empty = np.empty((scores.shape[0], 0))
        return empty.astype(np.int64), empty.astype(scores.dtype)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    # lexsort: primary key -score, secondary key column index (stable, deterministic ties)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    idx = np.where(np.isneginf(vals), -1, idx)
    return idx.astype(np.int64), vals

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

    Equal scores are ordered by column index, so results are deterministic. Entries that are
    ``-inf`` (excluded) never come out: their slots hold index -1 and value ``-inf``.
    """
    n_rows, n = scores.shape
    k = min(k, n)
    out_idx = np.full((n_rows, max(k, 0)), -1, dtype=np.int64)
    out_val = np.full((n_rows, max(k, 0)), -np.inf, dtype=scores.dtype)
    if k <= 0 or n_rows == 0:
        return out_idx, out_val
    # The k-th largest value per row bounds the winners; np.partition on values alone is about
    # twice as fast as argpartition, and only the few entries at or above it are then sorted.
    kth = np.partition(scores, n - k, axis=1)[:, n - k]
    winners = (scores >= kth[:, None]) & ~np.isneginf(scores)
    # A row whose k-th value is shared by a great many items (e.g. all-zero scores) would make
    # the sort below huge: keep only its first k tied columns, which is the stable order anyway.
    counts = winners.sum(axis=1)
    for r in np.flatnonzero(counts > 4 * k + 64):
        tied = np.flatnonzero(scores[r] == kth[r])
        need = k - int((scores[r] > kth[r]).sum())
        winners[r, tied[need:]] = False
    rows, cols = np.nonzero(winners)
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))  # by row, then score descending, then column
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = rank < k
    out_idx[rows[keep], rank[keep]] = cols[keep]
    out_val[rows[keep], rank[keep]] = vals[keep]
    return out_idx, out_val
